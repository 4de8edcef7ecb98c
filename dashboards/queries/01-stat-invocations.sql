-- Invocations in the time range: one report record per finished invocation.
-- Index: the partial index (function_name, ts) WHERE kind = 'report', one partition per month in range.
SELECT count(*) AS invocations
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)

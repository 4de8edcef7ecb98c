-- Share of invocations that failed (status = 'error'), in percent; empty when there were none.
SELECT (100 * count(*) FILTER (WHERE status = 'error'))::float8 / nullif(count(*), 0) AS "error rate"
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)

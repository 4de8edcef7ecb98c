-- Invocations per interval, split into successes and errors (stacked).
SELECT
  $__timeGroupAlias(ts, $__interval),
  count(*) FILTER (WHERE status = 'success') AS success,
  count(*) FILTER (WHERE status = 'error') AS error
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)
GROUP BY 1
ORDER BY 1

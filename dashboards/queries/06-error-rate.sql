-- Error rate per interval: failed invocations / all invocations, in percent.
SELECT
  $__timeGroupAlias(ts, $__interval),
  (100 * count(*) FILTER (WHERE status = 'error'))::float8 / count(*) AS "error rate"
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)
GROUP BY 1
ORDER BY 1

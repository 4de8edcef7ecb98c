-- Cold-start rate per interval: invocations that were the first of a runtime process, in percent.
SELECT
  $__timeGroupAlias(ts, $__interval),
  (100 * count(*) FILTER (WHERE cold_start))::float8 / count(*) AS "cold start rate"
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)
GROUP BY 1
ORDER BY 1

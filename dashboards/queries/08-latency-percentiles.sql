-- Handler duration percentiles per interval (ms): p50, p95, p99 with percentile_cont's linear interpolation.
SELECT
  $__timeGroupAlias(ts, $__interval),
  percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms) AS p50,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)
GROUP BY 1
ORDER BY 1

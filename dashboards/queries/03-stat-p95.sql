-- 95th percentile of handler duration (linear interpolation between the closest ranks, like percentile_cont).
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)

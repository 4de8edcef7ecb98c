-- Init duration of the cold starts per interval (ms): process start to the end of init, average and maximum.
SELECT
  $__timeGroupAlias(ts, $__interval),
  avg(init_duration_ms) AS "init duration (avg)",
  max(init_duration_ms) AS "init duration (max)"
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND cold_start
  AND function_name IN ($function)
GROUP BY 1
ORDER BY 1

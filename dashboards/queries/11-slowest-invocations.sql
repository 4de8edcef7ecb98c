-- The 20 slowest invocations in the time range; click a row to see that request's log records below.
SELECT
  ts AS "time",
  function_name AS "function",
  request_id,
  duration_ms,
  status,
  error_type,
  cold_start,
  init_duration_ms,
  max_memory_used_mb
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)
ORDER BY duration_ms DESC, ts, request_id
LIMIT 20

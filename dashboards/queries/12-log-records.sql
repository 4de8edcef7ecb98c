-- Log records of the selected functions, or of one request id when the "Request id" box is filled: the newest
-- 1000, shown in time order (records of one request: by timestamp, then by their sequence number).
-- With a request id the planner folds the constant test away and uses the (request_id, ts) index.
SELECT "time", level, kind, "function", request_id, message, error_type, duration_ms, record_id
FROM (
  SELECT
    ts AS "time",
    level,
    kind,
    function_name AS "function",
    request_id,
    message,
    error_type,
    duration_ms,
    record_id
  FROM logs
  WHERE $__timeFilter(ts)
    AND function_name IN ($function)
    AND ('$request_id' = '' OR request_id = '$request_id')
  ORDER BY ts DESC, length(record_id) DESC, record_id DESC
  LIMIT 1000
) AS newest
ORDER BY "time", length(record_id), record_id

-- Failed invocations by errorType (your exception's class name, or Runtime.X for runtime faults), most frequent first.
SELECT
  error_type AS "error type",
  count(*) AS errors
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND status = 'error'
  AND function_name IN ($function)
GROUP BY error_type
ORDER BY errors DESC, error_type

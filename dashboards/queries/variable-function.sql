-- Values of the "function" variable: the functions that reported an invocation in the time range.
SELECT DISTINCT function_name
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IS NOT NULL
ORDER BY 1

-- Share of invocations that were cold starts (the first invocation of a runtime process), in percent.
SELECT (100 * count(*) FILTER (WHERE cold_start))::float8 / nullif(count(*), 0) AS "cold starts"
FROM logs
WHERE $__timeFilter(ts)
  AND kind = 'report'
  AND function_name IN ($function)

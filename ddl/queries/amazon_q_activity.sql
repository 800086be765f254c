-- Query: amazon_q_activity
-- Question: What did Amazon Q Developer do on people's behalf? Calls whose user agent
--   carries the Q Developer markers (exec-env/AmazonQ-For-CLI from the Q CLI's AWS CLI
--   calls, AmazonQ-For-IDE from the IDE plugins), by principal, client, and reads versus
--   writes (readonly), with how many calls failed.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per (principal, client, access, API), writes first.
SELECT
  useridentity_arn AS principal_arn,
  CASE WHEN useragent LIKE '%AmazonQ-For-CLI%' THEN 'cli' ELSE 'ide' END AS client,
  CASE WHEN readonly THEN 'read' WHEN NOT readonly THEN 'write' ELSE 'unknown' END AS access,
  eventsource,
  eventname,
  count(*) AS calls,
  count_if(errorcode IS NOT NULL) AS failed,
  min(eventtime) AS first_at,
  max(eventtime) AS last_at
FROM {database}.{cloudtrail_readready}
WHERE (useragent LIKE '%AmazonQ-For-CLI%' OR useragent LIKE '%AmazonQ-For-IDE%')
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
GROUP BY 1, 2, 3, 4, 5
ORDER BY access DESC, principal_arn, client, eventsource, eventname

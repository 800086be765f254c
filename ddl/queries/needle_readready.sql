-- Query: needle_readready
-- Question: Cost hygiene, readready side of the pair: find the few events of one API call
--   (and optionally one caller) in a range of delivery days. The same question as
--   needle_raw; here Athena reads two small ORC columns of the selected partitions
--   instead of decompressing and parsing all their JSON. Compare "Data scanned".
-- Parameters:
--   :event_name  string                the eventName to find, e.g. StopLogging
--   :from_day    date                  first delivery day (dt) searched
--   :to_day      date                  last delivery day (dt) searched
--   :user_arn    string = null         only calls by this principal ARN (null: anyone)
-- Returns: one row per matching event, oldest first (same columns as needle_raw).
SELECT
  eventid,
  eventtime,
  eventname,
  useridentity_arn AS principal_arn,
  sourceipaddress AS source_ip,
  awsregion AS region,
  account,
  dt
FROM {database}.{cloudtrail_readready}
WHERE dt BETWEEN CAST(:from_day AS varchar) AND CAST(:to_day AS varchar)
  AND eventname = :event_name
  AND (:user_arn IS NULL OR useridentity_arn = :user_arn)
ORDER BY eventtime, eventid

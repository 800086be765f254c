-- Query: needle_raw
-- Question: Cost hygiene, raw side of the pair: the needle_readready question asked of the
--   raw CloudTrail table. Same rows (except events the raw files hold twice, which readready
--   stores once per partition, and records quarantined as unusable), but Athena must
--   decompress and parse every JSON object of the selected partitions.
-- Parameters:
--   :event_name  string                the eventName to find, e.g. StopLogging
--   :from_day    date                  first delivery day (dt) searched
--   :to_day      date                  last delivery day (dt) searched
--   :user_arn    string = null         only calls by this principal ARN (null: anyone)
-- Returns: one row per matching event, oldest first (same columns as needle_readready).
SELECT
  eventid,
  CAST(from_iso8601_timestamp(eventtime) AS timestamp) AS eventtime,
  eventname,
  useridentity.arn AS principal_arn,
  sourceipaddress AS source_ip,
  awsregion AS region,
  account,
  dt
FROM {database}.{cloudtrail_raw}
WHERE dt BETWEEN CAST(:from_day AS varchar) AND CAST(:to_day AS varchar)
  AND eventname = :event_name
  AND (:user_arn IS NULL OR useridentity.arn = :user_arn)
ORDER BY eventtime, eventid

-- Query: connect_deleter_activity
-- Question: After an Amazon Connect instance was deleted, what else did the principal who
--   deleted it do? For every successful DeleteInstance in the window, every later event
--   (any service, any region of the lake) by the same principal ARN, up to :to_time.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  deletions at or after this time (UTC)
--   :to_time    timestamp = now                   deletions and activity before this time
--   :account    string    = null                  only deletions in this account (null: all)
-- Returns: one row per (deletion, later event), by deletion then event time.
WITH deletions AS (
  SELECT
    json_extract_scalar(requestparameters, '$.InstanceId') AS deleted_instance_id,
    coalesce(recipientaccountid, account) AS deleted_in_account,
    awsregion AS deleted_in_region,
    eventtime AS deleted_at,
    useridentity_arn AS principal_arn,
    eventid AS deletion_eventid
  FROM {database}.{cloudtrail_readready}
  WHERE eventsource = 'connect.amazonaws.com'
    AND eventname = 'DeleteInstance'
    AND errorcode IS NULL
    AND useridentity_arn IS NOT NULL
    AND eventtime >= :from_time AND eventtime < :to_time
    AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
    AND (:account IS NULL OR coalesce(recipientaccountid, account) = :account)
)
SELECT
  d.deleted_instance_id,
  d.deleted_in_account,
  d.deleted_in_region,
  d.deleted_at,
  d.principal_arn,
  e.eventtime,
  e.eventsource,
  e.eventname,
  coalesce(e.recipientaccountid, e.account) AS account,
  e.awsregion AS region,
  e.sourceipaddress AS source_ip,
  e.readonly,
  e.errorcode,
  e.requestparameters,
  e.eventid
FROM deletions d
JOIN {database}.{cloudtrail_readready} e
  ON e.useridentity_arn = d.principal_arn
 AND e.eventtime >= d.deleted_at
 AND e.eventid <> d.deletion_eventid
WHERE e.eventtime < :to_time
  AND e.dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY d.deleted_at, d.deletion_eventid, e.eventtime, e.eventid

-- Query: connect_instance_deletions
-- Question: Which Amazon Connect instances were deleted (DeleteInstance on
--   connect.amazonaws.com), in which account and region, and who deleted them: the
--   principal's ARN, type and account, the source IP, the time and the request parameters.
--   Failed attempts are listed too (errorcode set, e.g. AccessDeniedException); a NULL
--   errorcode means the instance was deleted.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
--   :account    string    = null                  only this account id (null: every account)
--   :region     string    = null                  only this region (null: every region)
-- Returns: one row per DeleteInstance call, oldest first.
SELECT
  coalesce(recipientaccountid, account) AS account,
  awsregion AS region,
  json_extract_scalar(requestparameters, '$.InstanceId') AS instance_id,
  eventtime,
  useridentity_arn AS principal_arn,
  useridentity_type AS principal_type,
  useridentity_accountid AS principal_account,
  sourceipaddress AS source_ip,
  useragent AS user_agent,
  requestparameters,
  errorcode,
  errormessage,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE eventsource = 'connect.amazonaws.com'
  AND eventname = 'DeleteInstance'
  AND eventtime >= :from_time AND eventtime < :to_time
  -- partition pruning: an event is delivered on its day or later, at most a day early
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
  AND (:account IS NULL OR coalesce(recipientaccountid, account) = :account)
  AND (:region IS NULL OR awsregion = :region)
ORDER BY eventtime, eventid

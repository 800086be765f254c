-- Query: user_activity
-- Question: Everything one user did: every event whose caller is that user, given as an
--   ARN (arn:aws:iam::111122223333:user/alice, arn:aws:sts::...:assumed-role/Role/session)
--   or a name (an IAM user name, or a role name: then every session of that role).
-- Parameters:
--   :user       string                            user or role name, or ARN
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per event, oldest first.
SELECT
  eventtime,
  eventsource,
  eventname,
  coalesce(recipientaccountid, account) AS account,
  awsregion AS region,
  sourceipaddress AS source_ip,
  useragent AS user_agent,
  readonly,
  errorcode,
  useridentity_arn AS principal_arn,
  requestparameters,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE (useridentity_arn = :user
       OR useridentity_username = :user
       OR useridentity_sessioncontext_sessionissuer_arn = :user
       OR useridentity_sessioncontext_sessionissuer_username = :user)
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY eventtime, eventid

-- Query: console_logins_without_mfa
-- Question: Which successful console sign-ins did not use MFA (additionalEventData.MFAUsed
--   is 'No')? For federated and assumed-role sign-ins MFA happens at the identity provider,
--   so principal_type tells the IAM users and root users that matter most.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per sign-in, oldest first.
SELECT
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  useridentity_type AS principal_type,
  coalesce(useridentity_arn, useridentity_username) AS principal,
  sourceipaddress AS source_ip,
  json_extract_scalar(additionaleventdata, '$.LoginTo') AS login_to,
  useragent AS user_agent,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE eventsource = 'signin.amazonaws.com'
  AND eventname = 'ConsoleLogin'
  AND json_extract_scalar(responseelements, '$.ConsoleLogin') = 'Success'
  AND lower(json_extract_scalar(additionaleventdata, '$.MFAUsed')) = 'no'
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY eventtime, eventid

-- Query: failed_console_logins
-- Question: Which console sign-ins failed (ConsoleLogin with result 'Failure' or an error
--   message), for which identity, from which IP, and why?
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per failed sign-in, oldest first.
SELECT
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  useridentity_type AS principal_type,
  coalesce(useridentity_arn, useridentity_username) AS principal,
  sourceipaddress AS source_ip,
  errormessage,
  json_extract_scalar(additionaleventdata, '$.MFAUsed') AS mfa_used,
  useragent AS user_agent,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE eventsource = 'signin.amazonaws.com'
  AND eventname = 'ConsoleLogin'
  AND (json_extract_scalar(responseelements, '$.ConsoleLogin') = 'Failure' OR errormessage IS NOT NULL)
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY eventtime, eventid

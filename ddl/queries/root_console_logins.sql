-- Query: root_console_logins
-- Question: Who signed in to the console as an account's root user in the last N hours,
--   from where, with or without MFA, and did it succeed? Failed root sign-ins are listed
--   too (result 'Failure').
-- Parameters:
--   :hours  int       = 24   how many hours back from :now to look
--   :now    timestamp = now  the end of the window (UTC); set it to replay an incident
-- Returns: one row per root ConsoleLogin event, newest first.
SELECT
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  useridentity_arn AS principal_arn,
  sourceipaddress AS source_ip,
  useragent AS user_agent,
  json_extract_scalar(responseelements, '$.ConsoleLogin') AS result,
  json_extract_scalar(additionaleventdata, '$.MFAUsed') AS mfa_used,
  errormessage,
  awsregion AS region,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE eventsource = 'signin.amazonaws.com'
  AND eventname = 'ConsoleLogin'
  AND useridentity_type = 'Root'
  AND eventtime > :now - :hours * INTERVAL '1' HOUR
  AND eventtime <= :now
  AND dt >= date_format(:now - (:hours + 24) * INTERVAL '1' HOUR, '%Y-%m-%d')
ORDER BY eventtime DESC, eventid

-- Alert: root_console_signin
-- Severity: high
-- Description: Someone signed in to the console as an account's root user (or tried to).
--   Root should be used almost never; every sign-in deserves a look.
-- Key: eventid
-- Message: Root console sign-in ({result}) to account {account} from {source_ip}, MFA used: {mfa_used}
SELECT
  eventid,
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  sourceipaddress AS source_ip,
  coalesce(json_extract_scalar(responseelements, '$.ConsoleLogin'), errormessage) AS result,
  coalesce(json_extract_scalar(additionaleventdata, '$.MFAUsed'), 'unknown') AS mfa_used,
  useridentity_arn AS principal_arn
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'signin.amazonaws.com'
  AND eventname = 'ConsoleLogin'
  AND useridentity_type = 'Root'

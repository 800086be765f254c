-- Alert: console_signin_without_mfa
-- Severity: medium
-- Description: A successful console sign-in by an IAM user or root that did not use MFA
--   (additionalEventData.MFAUsed is 'No'). Federated and SSO sign-ins do MFA at the
--   identity provider and are not reported.
-- Key: eventid
-- Message: Console sign-in without MFA by {principal} ({principal_type}) in account {account} from {source_ip}
SELECT
  eventid,
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  useridentity_type AS principal_type,
  coalesce(useridentity_arn, useridentity_username) AS principal,
  sourceipaddress AS source_ip
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'signin.amazonaws.com'
  AND eventname = 'ConsoleLogin'
  AND useridentity_type IN ('IAMUser', 'Root')
  AND json_extract_scalar(responseelements, '$.ConsoleLogin') = 'Success'
  AND lower(json_extract_scalar(additionaleventdata, '$.MFAUsed')) = 'no'

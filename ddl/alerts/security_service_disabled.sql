-- Alert: security_service_disabled
-- Severity: high
-- Description: A GuardDuty detector deleted or disabled, or Security Hub disabled: the
--   detection services themselves turned off.
-- Key: eventid
-- Message: {eventname} ({eventsource}) by {principal} in account {account} {region} ({outcome})
SELECT
  eventid,
  eventtime,
  eventsource,
  eventname,
  coalesce(useridentity_arn, useridentity_principalid, 'unknown') AS principal,
  coalesce(recipientaccountid, account) AS account,
  awsregion AS region,
  coalesce(errorcode, 'succeeded') AS outcome
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND ((eventsource = 'guardduty.amazonaws.com'
        AND (eventname IN ('DeleteDetector', 'DisassociateFromMasterAccount', 'DisassociateFromAdministratorAccount')
             OR (eventname = 'UpdateDetector'
                 AND lower(json_extract_scalar(requestparameters, '$.enable')) = 'false')))
       OR (eventsource = 'securityhub.amazonaws.com'
           AND eventname IN ('DisableSecurityHub', 'DisableImportFindingsForProduct')))

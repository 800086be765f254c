-- Alert: root_access_key_created
-- Severity: high
-- Description: An access key created for the root user (by root, for itself: CreateAccessKey
--   without a userName). Root keys cannot be limited by any policy.
-- Key: eventid
-- Message: Access key {access_key} created for the root user of account {account} from {source_ip} ({outcome})
SELECT
  eventid,
  eventtime,
  coalesce(recipientaccountid, useridentity_accountid, account) AS account,
  coalesce(json_extract_scalar(responseelements, '$.accessKey.accessKeyId'), 'none') AS access_key,
  sourceipaddress AS source_ip,
  coalesce(errorcode, 'succeeded') AS outcome
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'iam.amazonaws.com'
  AND eventname = 'CreateAccessKey'
  AND useridentity_type = 'Root'
  AND json_extract_scalar(requestparameters, '$.userName') IS NULL

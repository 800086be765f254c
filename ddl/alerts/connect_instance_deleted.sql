-- Alert: connect_instance_deleted
-- Severity: medium
-- Description: An Amazon Connect instance deleted: the contact centre, its users, flows
--   and recordings' configuration gone.
-- Key: eventid
-- Message: Amazon Connect instance {instance} deleted by {principal} in account {account} {region} ({outcome})
SELECT
  eventid,
  eventtime,
  coalesce(json_extract_scalar(requestparameters, '$.InstanceId'),
           json_extract_scalar(requestparameters, '$.instanceId'), 'unknown') AS instance,
  coalesce(useridentity_arn, useridentity_principalid, 'unknown') AS principal,
  coalesce(recipientaccountid, account) AS account,
  awsregion AS region,
  coalesce(errorcode, 'succeeded') AS outcome
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'connect.amazonaws.com'
  AND eventname = 'DeleteInstance'

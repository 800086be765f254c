-- Alert: cloudtrail_tampering
-- Severity: high
-- Description: CloudTrail logging stopped, a trail deleted or reconfigured, or its event
--   selectors changed: what an intruder does before acting unseen. Failed attempts count too.
-- Key: eventid
-- Message: {eventname} on trail {trail} by {principal} in account {account} ({outcome})
SELECT
  eventid,
  eventtime,
  eventname,
  coalesce(json_extract_scalar(requestparameters, '$.name'),
           json_extract_scalar(requestparameters, '$.trailName'), 'unknown') AS trail,
  coalesce(useridentity_arn, useridentity_principalid, 'unknown') AS principal,
  coalesce(recipientaccountid, account) AS account,
  coalesce(errorcode, 'succeeded') AS outcome
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'cloudtrail.amazonaws.com'
  AND eventname IN ('StopLogging', 'DeleteTrail', 'UpdateTrail', 'PutEventSelectors')

-- Query: bedrock_with_cloudtrail
-- Question: For the Amazon Bedrock invocations of the last N hours, what did CloudTrail
--   record about the same calls (source IP, user agent, access key), joined by request id?
-- Parameters:
--   :hours  int       = 24   how many hours back from :now to look
--   :now    timestamp = now  the end of the window (UTC)
-- Returns: one row per invocation, newest first; the CloudTrail columns are NULL where
--   CloudTrail has no event with that request id (data events that the trail does not
--   log, or a trail in another account).
SELECT
  b.eventtime,
  b.accountid AS account,
  b.identity_arn AS principal_arn,
  b.operation,
  b.modelid AS model_id,
  b.errorcode,
  c.eventname AS cloudtrail_eventname,
  c.sourceipaddress AS source_ip,
  c.useragent AS user_agent,
  c.useridentity_accesskeyid AS access_key_id,
  c.eventid AS cloudtrail_eventid,
  b.requestid
FROM {database}.{bedrock_readready} b
LEFT JOIN (
  -- one event per request id: an organization trail and an account trail deliver the
  -- same event into two partitions
  SELECT *, row_number() OVER (PARTITION BY requestid, recipientaccountid ORDER BY org DESC, eventid) AS copy
  FROM {database}.{cloudtrail_readready}
  WHERE eventsource = 'bedrock.amazonaws.com'
    AND dt >= date_format(:now - (:hours + 48) * INTERVAL '1' HOUR, '%Y-%m-%d')
) c
  ON c.requestid = b.requestid AND c.recipientaccountid = b.accountid AND c.copy = 1
WHERE b.eventtime > :now - :hours * INTERVAL '1' HOUR
  AND b.eventtime <= :now
  AND b.dt >= date_format(:now - (:hours + 24) * INTERVAL '1' HOUR, '%Y-%m-%d')
ORDER BY b.eventtime DESC, b.requestid

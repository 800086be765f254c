-- View: sessions
-- Session Manager sessions end to end: who started each session (CloudTrail StartSession:
-- identity, source IP, target, time, account, region), when it was terminated
-- (TerminateSession, where present), and the keystrokes/output streamed to CloudWatch
-- Logs (from_cloudwatch_readready), one row per session log event, in order with
-- ORDER BY sessionid, keystroke_time, event_id.
-- A session with keystrokes but no StartSession (or a StartSession without keystrokes)
-- still shows: the join is a full outer join on sessionid.
-- Parameters: {database}, {cloudtrail_readready}, {cloudwatch_readready}.
CREATE OR REPLACE VIEW {database}.sessions AS
WITH starts AS (
  SELECT
    sessionid,
    eventtime AS start_time,
    useridentity_arn AS started_by_arn,
    useridentity_type AS started_by_type,
    sourceipaddress AS source_ip,
    useragent AS user_agent,
    json_extract_scalar(requestparameters, '$.target') AS target,
    recipientaccountid AS account,
    awsregion AS region,
    row_number() OVER (PARTITION BY sessionid ORDER BY eventtime, eventid) AS n
  FROM {database}.{cloudtrail_readready}
  WHERE eventsource = 'ssm.amazonaws.com' AND eventname = 'StartSession' AND sessionid IS NOT NULL
),
terminations AS (
  SELECT sessionid, min(eventtime) AS end_time, min_by(useridentity_arn, eventtime) AS terminated_by_arn
  FROM {database}.{cloudtrail_readready}
  WHERE eventsource = 'ssm.amazonaws.com' AND eventname = 'TerminateSession'
    AND errorcode IS NULL AND sessionid IS NOT NULL
  GROUP BY sessionid
),
keystrokes AS (
  SELECT sessionid, event_timestamp, event_id, target_id, useridentity_arn, runasuser,
         owner, session_awsregion, sessiondata
  FROM {database}.{cloudwatch_readready}
  WHERE sessionid IS NOT NULL
)
SELECT
  coalesce(s.sessionid, k.sessionid) AS sessionid,
  s.start_time,
  t.end_time,
  coalesce(s.started_by_arn, k.useridentity_arn) AS started_by_arn,
  s.started_by_type,
  s.source_ip,
  s.user_agent,
  coalesce(s.target, k.target_id) AS target,
  coalesce(s.account, k.owner) AS account,
  coalesce(s.region, k.session_awsregion) AS region,
  t.terminated_by_arn,
  k.runasuser,
  k.event_timestamp AS keystroke_time,
  k.event_id,
  k.sessiondata,
  s.sessionid IS NOT NULL AS has_start,
  k.sessionid IS NOT NULL AS has_keystrokes
FROM (SELECT * FROM starts WHERE n = 1) s
FULL OUTER JOIN keystrokes k ON s.sessionid = k.sessionid
LEFT JOIN terminations t ON t.sessionid = coalesce(s.sessionid, k.sessionid)

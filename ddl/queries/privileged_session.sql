-- Query: privileged_session
-- Question: What happened in a Session Manager session: who started it (CloudTrail
--   StartSession: identity, source IP, target instance, account, region, time), when it
--   ended, and every line typed or shown, in order (CloudWatch Logs session records)? Give a
--   session id, or a user ARN for all of that user's sessions.
-- Parameters:
--   :sessionid  string = null  one session id (e.g. alice-0123456789abcdef0)
--   :user       string = null  ...or every session started by this principal ARN
-- Returns: one row per session line, in order; a session without logged keystrokes has
--   one row with a NULL line.
WITH picked AS (
  SELECT *
  FROM {database}.sessions
  WHERE sessionid = :sessionid OR started_by_arn = :user
)
SELECT
  p.sessionid,
  p.start_time,
  p.end_time,
  p.started_by_arn,
  p.source_ip,
  p.target,
  p.account,
  p.region,
  p.runasuser,
  p.keystroke_time,
  p.event_id,
  CASE WHEN p.has_keystrokes THEN l.line END AS line
FROM picked p
CROSS JOIN UNNEST(split(coalesce(p.sessiondata, ''), chr(10))) WITH ORDINALITY AS l(line, n)
ORDER BY p.sessionid, p.keystroke_time, p.event_id, l.n

-- Alert: session_credential_access
-- Severity: high
-- Description: A Session Manager session whose keystrokes touch credentials: /etc/shadow,
--   ~/.aws/credentials, an SSH private key, the instance role's keys from the metadata
--   service, or a switch to root (sudo su, sudo -i). Secrets typed are redacted before
--   they are written; this names the session and the line to review.
-- Key: sessionid, event_id
-- Message: Session {sessionid} by {principal} on {target} touched credentials: {line}
SELECT
  sessionid,
  event_id,
  event_timestamp AS eventtime,
  coalesce(useridentity_arn, 'unknown') AS principal,
  coalesce(target_id, 'unknown') AS target,
  regexp_extract(sessiondata, '[^\n]*(/etc/shadow|\.aws/credentials|\.ssh/id_[a-z0-9]+|sudo\s+su\b|sudo\s+-i\b|meta-data/iam/security-credentials)[^\n]*') AS line
FROM {database}.{cloudwatch_readready}
WHERE {published}
  AND sessionid IS NOT NULL
  AND regexp_like(sessiondata, '/etc/shadow|\.aws/credentials|\.ssh/id_[a-z0-9]+|sudo\s+su\b|sudo\s+-i\b|meta-data/iam/security-credentials')

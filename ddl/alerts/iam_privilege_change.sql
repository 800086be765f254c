-- Alert: iam_privilege_change
-- Severity: high
-- Description: Admin-level power handed out: AdministratorAccess (or IAMFullAccess)
--   attached to a user, role or group, an inline policy allowing every action, or a
--   console password created for another user (CreateLoginProfile on someone else).
-- Key: eventid
-- Message: {eventname} on {target} by {principal} in account {account}: {detail}
SELECT
  eventid,
  eventtime,
  eventname,
  coalesce(json_extract_scalar(requestparameters, '$.userName'),
           json_extract_scalar(requestparameters, '$.roleName'),
           json_extract_scalar(requestparameters, '$.groupName'), 'unknown') AS target,
  coalesce(useridentity_arn, useridentity_principalid, 'unknown') AS principal,
  coalesce(recipientaccountid, account) AS account,
  coalesce(json_extract_scalar(requestparameters, '$.policyArn'),
           json_extract_scalar(requestparameters, '$.policyName'), 'login profile') AS detail
FROM {database}.{cloudtrail_readready}
WHERE {published}
  AND eventsource = 'iam.amazonaws.com'
  AND errorcode IS NULL
  AND ((eventname IN ('AttachUserPolicy', 'AttachRolePolicy', 'AttachGroupPolicy')
        AND regexp_like(json_extract_scalar(requestparameters, '$.policyArn'),
                        ':policy/(AdministratorAccess|IAMFullAccess)$'))
       OR (eventname IN ('PutUserPolicy', 'PutRolePolicy', 'PutGroupPolicy')
           AND regexp_like(json_extract_scalar(requestparameters, '$.policyDocument'),
                           '"Action"\s*:\s*(\[\s*)?"\*"'))
       OR (eventname = 'CreateLoginProfile'
           AND json_extract_scalar(requestparameters, '$.userName') IS NOT NULL
           AND json_extract_scalar(requestparameters, '$.userName')
               <> coalesce(useridentity_username, regexp_extract(useridentity_arn, '[^/]+$'), '')))

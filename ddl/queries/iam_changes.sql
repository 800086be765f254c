-- Query: iam_changes
-- Question: Which IAM changes were made, by whom, to what: policies attached, detached,
--   put or deleted (user, role and group policies, managed policy versions); users, roles,
--   login profiles and access keys created, updated or deleted; group membership; role
--   trust policies.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per call (failed ones too: see errorcode), oldest first.
SELECT
  eventtime,
  coalesce(recipientaccountid, account) AS account,
  eventname,
  useridentity_arn AS actor_arn,
  json_extract_scalar(requestparameters, '$.userName') AS target_user,
  json_extract_scalar(requestparameters, '$.roleName') AS target_role,
  json_extract_scalar(requestparameters, '$.groupName') AS target_group,
  json_extract_scalar(requestparameters, '$.policyArn') AS policy_arn,
  json_extract_scalar(requestparameters, '$.policyName') AS policy_name,
  coalesce(json_extract_scalar(requestparameters, '$.accessKeyId'),
           json_extract_scalar(responseelements, '$.accessKey.accessKeyId')) AS access_key_id,
  sourceipaddress AS source_ip,
  errorcode,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE eventsource = 'iam.amazonaws.com'
  AND eventname IN (
    'AttachUserPolicy', 'AttachRolePolicy', 'AttachGroupPolicy',
    'DetachUserPolicy', 'DetachRolePolicy', 'DetachGroupPolicy',
    'PutUserPolicy', 'PutRolePolicy', 'PutGroupPolicy',
    'DeleteUserPolicy', 'DeleteRolePolicy', 'DeleteGroupPolicy',
    'CreatePolicy', 'CreatePolicyVersion', 'DeletePolicy', 'DeletePolicyVersion', 'SetDefaultPolicyVersion',
    'PutUserPermissionsBoundary', 'PutRolePermissionsBoundary',
    'CreateUser', 'DeleteUser', 'CreateRole', 'DeleteRole', 'UpdateAssumeRolePolicy',
    'CreateAccessKey', 'UpdateAccessKey', 'DeleteAccessKey',
    'CreateLoginProfile', 'UpdateLoginProfile', 'DeleteLoginProfile',
    'AddUserToGroup', 'RemoveUserFromGroup')
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY eventtime, eventid

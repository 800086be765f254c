-- Query: connect_user_management
-- Question: Who created, deleted or changed Amazon Connect users (CreateUser, DeleteUser,
--   UpdateUserIdentityInfo, UpdateUserSecurityProfiles, UpdateUserRoutingProfile,
--   UpdateUserPhoneConfig, UpdateUserHierarchy*) in a time window and region, and to which
--   user? User ids are resolved to user names through the {connect_users} lookup table
--   (`loglake lookup load connect-users FILE`); a user missing from it keeps a NULL
--   username, except a created user, whose name is in the CreateUser request.
-- Parameters:
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
--   :region     string    = null                  only this region (null: every region)
-- Returns: one row per call, oldest first.
WITH calls AS (
  SELECT
    eventtime,
    coalesce(recipientaccountid, account) AS account,
    awsregion AS region,
    json_extract_scalar(requestparameters, '$.InstanceId') AS instance_id,
    eventname,
    useridentity_arn AS actor_arn,
    sourceipaddress AS source_ip,
    -- CreateUser returns the new id; every other call names it in the request
    coalesce(json_extract_scalar(requestparameters, '$.UserId'),
             json_extract_scalar(responseelements, '$.UserId')) AS user_id,
    json_extract_scalar(requestparameters, '$.Username') AS requested_username,
    errorcode,
    eventid
  FROM {database}.{cloudtrail_readready}
  WHERE eventsource = 'connect.amazonaws.com'
    AND (eventname IN ('CreateUser', 'DeleteUser', 'UpdateUserIdentityInfo', 'UpdateUserSecurityProfiles',
                       'UpdateUserRoutingProfile', 'UpdateUserPhoneConfig')
         OR eventname LIKE 'UpdateUserHierarchy%')
    AND eventtime >= :from_time AND eventtime < :to_time
    AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
    AND (:region IS NULL OR awsregion = :region)
)
SELECT
  c.eventtime,
  c.account,
  c.region,
  c.instance_id,
  c.eventname,
  c.actor_arn,
  c.source_ip,
  c.user_id,
  coalesce(u.username, c.requested_username) AS username,
  c.errorcode,
  c.eventid
FROM calls c
LEFT JOIN {database}.{connect_users} u
  ON u.id = c.user_id AND u.instance = c.instance_id
ORDER BY c.eventtime, c.eventid

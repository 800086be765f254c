-- Query: resource_activity
-- Question: Every call that touched one resource: events whose resources, request
--   parameters or response elements contain the given identifier (an ARN, an instance id,
--   a bucket name, a user name, ...). A plain text match on the JSON: pick an identifier
--   specific enough not to match unrelated text.
-- Parameters:
--   :resource   string                            the identifier to look for (case-sensitive)
--   :from_time  timestamp = 1970-01-01T00:00:00Z  first event time included (UTC)
--   :to_time    timestamp = now                   end of the window, excluded
-- Returns: one row per event, oldest first, with where the identifier was found.
SELECT
  eventtime,
  eventsource,
  eventname,
  coalesce(recipientaccountid, account) AS account,
  awsregion AS region,
  useridentity_arn AS principal_arn,
  sourceipaddress AS source_ip,
  errorcode,
  coalesce(strpos(resources, :resource) > 0, false) AS in_resources,
  coalesce(strpos(requestparameters, :resource) > 0, false) AS in_request,
  coalesce(strpos(responseelements, :resource) > 0, false) AS in_response,
  eventid
FROM {database}.{cloudtrail_readready}
WHERE (strpos(resources, :resource) > 0
       OR strpos(requestparameters, :resource) > 0
       OR strpos(responseelements, :resource) > 0)
  AND eventtime >= :from_time AND eventtime < :to_time
  AND dt >= CAST(date_add('day', -1, CAST(:from_time AS date)) AS varchar)
ORDER BY eventtime, eventid

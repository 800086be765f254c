-- Query: deletions_today
-- Question: What was deleted today (any Delete* API call), by account and principal: how
--   many calls succeeded, how many failed, which APIs, first and last time?
-- Parameters:
--   :day  date = today  the UTC day (YYYY-MM-DD) of the events
-- Returns: one row per (account, principal), by account then principal.
SELECT
  coalesce(recipientaccountid, account) AS account,
  coalesce(useridentity_arn, useridentity_invokedby, useridentity_principalid) AS principal,
  count_if(errorcode IS NULL) AS deletions,
  count_if(errorcode IS NOT NULL) AS failed,
  array_join(array_sort(array_distinct(array_agg(eventsource || ':' || eventname))), ', ') AS apis,
  min(eventtime) AS first_at,
  max(eventtime) AS last_at
FROM {database}.{cloudtrail_readready}
WHERE eventname LIKE 'Delete%'
  AND CAST(eventtime AS date) = :day
  AND dt >= CAST(date_add('day', -1, :day) AS varchar)
GROUP BY 1, 2
ORDER BY 1, 2

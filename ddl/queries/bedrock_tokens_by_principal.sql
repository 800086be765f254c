-- Query: bedrock_tokens_by_principal
-- Question: How many Amazon Bedrock invocations and tokens did each principal use, per
--   model and delivery day, over the last N delivery days (the day of :now included)?
-- Parameters:
--   :days   int       = 7    how many delivery days, the day of :now the last of them
--   :now    timestamp = now  the end of the window (UTC)
-- Returns: one row per day, principal and model, the days newest first, then the most
--   tokens first. Token counts missing from a record count as 0; cache reads and writes
--   are input tokens served from, or written to, the prompt cache.
SELECT
  dt AS day,
  identity_arn AS principal_arn,
  modelid AS model_id,
  count(*) AS invocations,
  count(errorcode) AS errors,
  sum(coalesce(input_token_count, 0)) AS input_tokens,
  sum(coalesce(output_token_count, 0)) AS output_tokens,
  sum(coalesce(cache_read_input_token_count, 0)) AS cache_read_input_tokens,
  sum(coalesce(cache_write_input_token_count, 0)) AS cache_write_input_tokens
FROM {database}.{bedrock_readready}
WHERE dt >= date_format(:now - (:days - 1) * INTERVAL '1' DAY, '%Y-%m-%d')
  AND dt <= date_format(:now, '%Y-%m-%d')
GROUP BY dt, identity_arn, modelid
ORDER BY day DESC, sum(coalesce(input_token_count, 0)) + sum(coalesce(output_token_count, 0)) DESC,
  principal_arn, model_id

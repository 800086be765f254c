-- Query: bedrock_invocations
-- Question: Who invoked which Amazon Bedrock model in the last N hours, with which
--   operation, and which calls failed (errorcode)?
-- Parameters:
--   :hours  int       = 24   how many hours back from :now to look
--   :now    timestamp = now  the end of the window (UTC)
-- Returns: one row per invocation, newest first; bodies are left out (input_body,
--   output_body and their S3 paths are in the table).
SELECT
  eventtime,
  accountid AS account,
  identity_arn AS principal_arn,
  region,
  operation,
  modelid AS model_id,
  errorcode,
  input_token_count,
  output_token_count,
  inference_region,
  requestid
FROM {database}.{bedrock_readready}
WHERE eventtime > :now - :hours * INTERVAL '1' HOUR
  AND eventtime <= :now
  AND dt >= date_format(:now - (:hours + 24) * INTERVAL '1' HOUR, '%Y-%m-%d')
ORDER BY eventtime DESC, requestid

"""AWS Glue job: raw CloudWatch Logs (Firehose) partitions -> from_cloudwatch_readready (ORC/ZLIB)."""
from loglake.jobs import main

main("cloudwatch")

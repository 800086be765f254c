"""AWS Glue job: raw CloudTrail partitions -> from_cloudtrail_readready (ORC/ZLIB)."""
from loglake.jobs import main

main("cloudtrail")

"""AWS Glue job: raw Bedrock model-invocation log partitions -> from_bedrock_readready (ORC/ZLIB)."""
from loglake.jobs import main

main("bedrock")

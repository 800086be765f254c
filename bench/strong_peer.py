"""The strong peer: CloudTrail to ORC as an experienced Spark engineer writes it in an afternoon.

No loglake code, only PySpark, so that the benchmark compares loglake with what a user
would otherwise build (``loglake.bench`` runs this file as its own process):

- a declared schema (no inference pass), Spark's multi-line JSON reader on the ``.json.gz``
  files; free-form objects (requestParameters, responseElements, ...) are declared as
  strings, and Spark keeps their JSON text;
- explode ``Records``, flatten to loglake's readready columns (same names, types and
  order; ``useridentity_extra`` and ``additional_fields``, which need a walk over each
  record's keys, are NULL), drop records without eventID or eventTime;
- the partition from the object key (org, account, region, dt), one row per eventid in
  each partition, the rows of a partition together and sorted like loglake's
  (eventsource, eventname, useridentity_arn,
  eventtime), bloom filters on the same needle columns, ORC
  with ZLIB, partitioned by org/account/region/dt.

It has none of loglake's checks: no quarantine, no reconciliation of records read with
records written, no quality gate, no staging and publish.

Usage: python bench/strong_peer.py RAW_CLOUDTRAIL_DIR OUT_DIR RESULT_JSON
RESULT_JSON gets ``seconds`` (after the session started, like loglake's ingest), ``rows``
(from the files written), ``bytes`` and ``files``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

S = T.StringType()

SESSION_ISSUER = T.StructType([T.StructField(n, S) for n in ("type", "principalId", "arn", "accountId", "userName")])
SESSION_CONTEXT = T.StructType([
    T.StructField("attributes", T.StructType([T.StructField("mfaAuthenticated", S),
                                              T.StructField("creationDate", S)])),
    T.StructField("sessionIssuer", SESSION_ISSUER),
    T.StructField("sourceIdentity", S),
    T.StructField("ec2RoleDelivery", S),
])
USER_IDENTITY = T.StructType([
    *[T.StructField(n, S) for n in ("type", "arn", "accountId", "principalId", "accessKeyId", "userName",
                                    "invokedBy", "identityProvider")],
    T.StructField("sessionContext", SESSION_CONTEXT),
    T.StructField("onBehalfOf", T.StructType([T.StructField("userId", S), T.StructField("identityStoreArn", S)])),
])
RECORD = T.StructType([
    *[T.StructField(n, S) for n in (
        "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
        "errorCode", "errorMessage", "requestID", "eventID", "eventType", "eventCategory", "apiVersion",
        "recipientAccountId", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
        "sessionCredentialFromConsole")],
    T.StructField("managementEvent", T.BooleanType()),
    T.StructField("readOnly", T.BooleanType()),
    T.StructField("userIdentity", USER_IDENTITY),
    # free-form objects: declared as strings, read as their JSON text
    *[T.StructField(n, S) for n in ("requestParameters", "responseElements", "additionalEventData", "resources",
                                    "tlsDetails", "serviceEventDetails")],
])
FILE = T.StructType([T.StructField("Records", T.ArrayType(RECORD))])

KEY = r"AWSLogs/(?:(o-[a-z0-9]+)/)?([0-9]{12})/CloudTrail/([^/]+)/([0-9]{4})/([0-9]{2})/([0-9]{2})/"
PARTITIONS = ["org", "account", "region", "dt"]
SORT = ["eventsource", "eventname", "useridentity_arn", "eventtime"]
BLOOM = "useridentity_arn,useridentity_accesskeyid,sourceipaddress,eventid,sessionid"
TIME = "yyyy-MM-dd'T'HH:mm:ss[.SSS]X"


def flatten(df):
    r, ident = "r", "r.userIdentity"
    ctx, issuer = f"{ident}.sessionContext", f"{ident}.sessionContext.sessionIssuer"
    f = F.col("f")
    org = F.regexp_extract(f, KEY, 1)
    return df.select(
        F.col("r.eventVersion").alias("eventversion"),
        F.to_timestamp(f"{r}.eventTime", TIME).alias("eventtime"),
        *[F.col(f"{r}.{c}").alias(c.lower()) for c in (
            "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "errorCode", "errorMessage",
            "requestID", "eventID", "eventType", "eventCategory", "apiVersion", "managementEvent", "readOnly",
            "recipientAccountId", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
            "sessionCredentialFromConsole")],
        *[F.col(f"{ident}.{c}").alias(f"useridentity_{c.lower()}") for c in (
            "type", "arn", "accountId", "principalId", "accessKeyId", "userName", "invokedBy", "identityProvider")],
        *[F.col(f"{issuer}.{c}").alias(f"useridentity_sessioncontext_sessionissuer_{c.lower()}")
          for c in ("type", "principalId", "arn", "accountId", "userName")],
        (F.lower(F.col(f"{ctx}.attributes.mfaAuthenticated")) == "true")
        .alias("useridentity_sessioncontext_attributes_mfaauthenticated"),
        F.to_timestamp(f"{ctx}.attributes.creationDate", TIME)
        .alias("useridentity_sessioncontext_attributes_creationdate"),
        F.col(f"{ctx}.sourceIdentity").alias("useridentity_sessioncontext_sourceidentity"),
        F.col(f"{ctx}.ec2RoleDelivery").alias("useridentity_sessioncontext_ec2roledelivery"),
        F.col(f"{ident}.onBehalfOf.userId").alias("useridentity_onbehalfof_userid"),
        F.col(f"{ident}.onBehalfOf.identityStoreArn").alias("useridentity_onbehalfof_identitystorearn"),
        F.lit(None).cast(S).alias("useridentity_extra"),
        *[F.col(f"{r}.{c}").alias(c.lower()) for c in (
            "requestParameters", "responseElements", "additionalEventData", "resources", "tlsDetails",
            "serviceEventDetails")],
        F.when(F.col(f"{r}.eventName").isin("StartSession", "ResumeSession", "TerminateSession"),
               F.coalesce(F.get_json_object(f"{r}.responseElements", "$.sessionId"),
                          F.get_json_object(f"{r}.requestParameters", "$.sessionId"))).alias("sessionid"),
        F.lit(None).cast(S).alias("additional_fields"),
        f.alias("source_file"),
        F.when(org == "", "none").otherwise(org).alias("org"),
        F.regexp_extract(f, KEY, 2).alias("account"),
        F.regexp_extract(f, KEY, 3).alias("region"),
        F.concat_ws("-", *[F.regexp_extract(f, KEY, i) for i in (4, 5, 6)]).alias("dt"),
    )


def convert(spark, raw: str, out: str) -> None:
    # The folder with a file-name filter, not a glob of 40k files: Spark lists a glob's
    # matches with a job of up to 10,000 tasks, which cost more than the conversion.
    records = (spark.read.schema(FILE).option("multiLine", True).option("recursiveFileLookup", True)
               .option("pathGlobFilter", "*.json.gz").json(f"{raw}/AWSLogs")
               .select(F.input_file_name().alias("f"), F.explode("Records").alias("r")))
    flat = flatten(records).where(F.col("eventid").isNotNull() & F.col("eventtime").isNotNull())
    (flat.dropDuplicates([*PARTITIONS, "eventid"])
     .repartition(*PARTITIONS)
     .sortWithinPartitions(*PARTITIONS, *SORT)
     .write.mode("overwrite")
     .option("compression", "zlib")
     .option("orc.bloom.filter.columns", BLOOM)
     .partitionBy(*PARTITIONS)
     .orc(out))


def main(argv: list[str]) -> int:
    raw, out, result = argv
    spark = (SparkSession.builder.appName("strong-peer").master("local[*]")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", os.environ.get("LOGLAKE_DRIVER_MEMORY", "2g"))
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    uri = Path(out).resolve().as_uri()
    t0 = time.perf_counter()
    convert(spark, Path(raw).resolve().as_uri(), uri)
    seconds = time.perf_counter() - t0
    files = [p for p in Path(out).rglob("*.orc")]
    rows = spark.read.orc(uri).count()
    spark.stop()
    Path(result).write_text(json.dumps({"seconds": round(seconds, 3), "rows": rows, "files": len(files),
                                        "bytes": sum(p.stat().st_size for p in files)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

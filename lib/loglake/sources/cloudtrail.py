"""AWS CloudTrail: gzip JSON ``{"Records": [...]}`` objects under
``[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``, one flat readready
row per event."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loglake import keys, transforms
from loglake.checks import (
    DELIVERY_DEADLINE,
    NOT_BLANK_RE,
    REGION_RE,
    Check,
    Equals,
    Null,
    check,
    column_set,
    delivered_by_deadline,
    delivery_deadline_arrow,
    key_partition_shapes,
    row_count,
    with_delivery_deadline,
)
from loglake.schema import CLOUDTRAIL, CLOUDTRAIL_RAW
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload

if TYPE_CHECKING:
    from loglake.config import Config, FiltersConfig, QualityConfig


@dataclass(frozen=True)
class CloudTrailConfig(SourceConfig):
    """``sources.cloudtrail``."""

    # Insights events land under CloudTrail-Insight/ and are skipped unless asked for,
    # since they are not API calls and have another record shape.
    include_insights: bool = False


def process_cloudtrail(
    data: bytes, source_file: str, filters: FiltersConfig, quality: QualityConfig | None = None
) -> FileResult:
    """One CloudTrail object -> flat rows that pass the config's record filters.

    A broken file still yields its complete records (and one file-level problem); a bad
    record is a problem of its own, with the record as payload."""
    if quality is None:
        from loglake.config import QualityConfig

        quality = QualityConfig()
    out = FileResult()
    records, problem = transforms.decode_cloudtrail(data)
    if problem:
        out.problems.append(dataclasses.replace(
            problem, payload=problem.payload and problem.payload[: quality.max_payload_bytes],
            payload_size=problem.payload_size or len(data)))
    out.records_read = len(records)
    for i, record in enumerate(records):
        bad = transforms.check_cloudtrail_record(record, i)
        if bad:
            out.problems.append(with_payload(bad, record, quality.max_payload_bytes))
            continue
        row = transforms.flatten_cloudtrail(record)
        unnamed = transforms.check_cloudtrail_row(row, i)
        if unnamed:
            out.problems.append(with_payload(unnamed, record, quality.max_payload_bytes))
            continue
        size = row_bytes(row)
        if size > quality.max_record_bytes:
            too_big = transforms.Problem(
                transforms.RECORD_TOO_LARGE, f"record is {size} bytes flattened, over {quality.max_record_bytes}", i)
            out.problems.append(with_payload(too_big, record, quality.max_payload_bytes))
            continue
        rule = transforms.cloudtrail_filter_rule(row, filters)
        if rule:
            out.filtered[rule] = out.filtered.get(rule, 0) + 1
            continue
        row["source_file"] = source_file
        out.rows.append(row)
    return out


def _cloudtrail_file(data: bytes, source_file: str, config: Config) -> FileResult:
    return process_cloudtrail(data, source_file, config.filters, config.quality)


def _cloudtrail_siblings(location: str, config: Config) -> list[str]:
    """Insight files sit in CloudTrail-Insight/ beside a raw partition's CloudTrail/ folder."""
    if config.sources.cloudtrail.include_insights:
        return [location.replace("/CloudTrail/", "/CloudTrail-Insight/")]
    return []


# --------------------------------------------------------------------------- quality gate

DEDUP_KEY = ("eventid",)
# Derived by the gate on a copy of the rows, never published: the latest eventtime a
# file delivered on dt can hold. Events are delivered after they happen, within hours;
# one later than the end of its delivery day plus one day of slack (dt + 48 h) cannot
# have been delivered that day.
EVENT_SOURCE_RE = r"^[a-z0-9.-]+\.amazonaws\.com\z"


def quality_checks(expect_rows: bool = True) -> list[Check]:
    """The from_cloudtrail_readready suite: one expectation per rule, with why in its notes."""
    schema = CLOUDTRAIL
    start_session = (
        Equals("eventsource", "ssm.amazonaws.com"),
        Equals("eventname", "StartSession"),
        Null("errorcode"),
        Null("responseelements", is_null=False),
    )
    return [
        column_set([c.name for c in schema.all_columns] + [DELIVERY_DEADLINE]),
        row_count(expect_rows),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="eventid",
            notes="eventID is the record's identity and the dedup key; records without one are"
            " quarantined before the gate, so a null here is a flattening bug.",
        ),
        check(
            "ExpectCompoundColumnsToBeUnique",
            column_list=[*schema.partition_names, *DEDUP_KEY],
            notes="Dedup by (partition, eventid) runs before the gate, and a rerun replaces its"
            " partitions: a duplicate here means the dedup or the publish step is broken.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="eventtime",
            notes="Every query filters or orders by eventtime; records without a parseable"
            " eventTime are quarantined, so a null here is a bug.",
        ),
        delivered_by_deadline("CloudTrail"),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="eventsource",
            regex=EVENT_SOURCE_RE,
            notes="eventSource is the service endpoint (ec2.amazonaws.com); anything else means"
            " fields were shifted or mis-mapped when flattening.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="eventname",
            notes="eventName is the API call; every CloudTrail record has one.",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="eventname",
            regex=NOT_BLANK_RE,
            notes="An empty eventName is as useless as a missing one.",
        ),
        *key_partition_shapes(),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="awsregion",
            regex=REGION_RE,
            notes="awsRegion must have a region's shape, by shape not by list: real regions"
            " (us-gov-east-1) and anonymised samples (sagov-westsouth-1r) both pass.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="sessionid",
            where=start_session,
            notes="A successful StartSession returns responseElements.sessionId; the sessionid"
            " column joins CloudTrail to the session logs. StartSession rows with an errorCode"
            " or without responseElements (real, published samples have it null) have no"
            " session to point to and are not checked.",
        ),
    ]


def derive_spark(df, section: CloudTrailConfig):
    """The suite's derived column on a Spark DataFrame."""
    return with_delivery_deadline(df)


def derive_arrow(table, section: CloudTrailConfig):
    """:func:`derive_spark` for an Arrow table (what a writing task tallies)."""
    return delivery_deadline_arrow(table)


# --------------------------------------------------------------------------- tables

RAW_STORAGE = {  # Athena's documented CloudTrail table: CloudTrail's input format, Hive's JSON SerDe
    "InputFormat": "com.amazon.emr.cloudtrail.CloudTrailInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hive.hcatalog.data.JsonSerDe"},
}

DDL_NOTES = {
    "raw": """\
Raw CloudTrail as delivered: gzip JSON objects {"Records": [...]} below
  s3://<sources.cloudtrail.bucket>/<prefix>AWSLogs/, read through CloudTrail's input format and
  the Hive JSON SerDe, as in Athena's documented CloudTrail table.
Partitions (org, account, region, dt) are registered by AddAPart as objects arrive (or by
  `loglake addapart backfill`): no crawler, no MSCK REPAIR TABLE. org is the organization id
  (o-...) or 'none' for an account trail, dt is the delivery date 'YYYY-MM-DD' of the key.
Shape: useridentity, resources and tlsdetails stay nested. requestparameters, responseelements,
  additionaleventdata and serviceeventdetails are JSON text, eventtime is ISO 8601 text
  (from_iso8601_timestamp) and readonly is 'true'/'false' text. Every query decompresses and
  parses JSON: analysts should query {cloudtrail_readready}, which has the same rows, flat.""",
    "raw_projected": """\
OPTIONAL variant of {cloudtrail_raw} with Athena partition projection, for deployments that
  do not run AddAPart: Athena computes the partitions from the properties below, nothing is
  registered. `loglake ddl --apply` creates it only when asked (--table cloudtrail_raw_projected).
Partition columns differ from {cloudtrail_raw}, because projection must derive every value from
  the key without a catalog:
  - account: projection type 'injected': every query must pin it (WHERE account = '...'),
    since an organization has too many (and changing) accounts to enumerate.
  - region: 'enum' of the config's filters.regions.allow list, else of the commercial regions.
  - dt: 'date' in the key's own form 'yyyy/MM/dd' (e.g. dt = '2024/12/01'), NOT the
    'YYYY-MM-DD' of {cloudtrail_raw}. Range from --projection-start to NOW, one day a step.
  - org: not a column. The LOCATION is one organization's folder (`loglake ddl --org o-...`)
    or an account trail's AWSLogs/ folder: one projected table per organization.
Columns are those of {cloudtrail_raw}.""",
    "readready": """\
Readready CloudTrail: one flat row per CloudTrail event, ORC/ZLIB, written by the cloudtrail
  job (`loglake run cloudtrail`, glue_jobs/cloudtrail_readready.py) below
  <readready.location>/{cloudtrail_readready}/org=/account=/region=/dt=/, partitions
  registered by the job. Same partition columns and values as {cloudtrail_raw}.
Scalar columns only: eventtime is a UTC timestamp, readonly/managementevent are booleans,
  useridentity_* is flattened, free-form objects (requestparameters, ...) are JSON text
  (json_extract_scalar), sessionid is the Session Manager session of StartSession/
  ResumeSession/TerminateSession events. Events with the same eventid in one partition are
  stored once. Columns are only ever added at the end.""",
}


def projected_raw_table(raw_name: str, raw_location: str, org_prefix: str, regions: str, start: str) -> dict:
    """The raw table with Athena partition projection (``<raw table>_projected``), for
    deployments without AddAPart: partitions computed from the key layout."""
    from loglake import catalog
    from loglake.schema import Column, TableSchema

    keys = (
        Column("account", "string", "account id of the key, projection type injected: pin it in every query"),
        Column("region", "string", "region of the key, projection type enum"),
        Column("dt", "string", "delivery date of the key as yyyy/MM/dd (not YYYY-MM-DD), projection type date"),
    )
    location = f"{raw_location}{org_prefix}"
    tinput = catalog.table_input(
        raw_name, TableSchema(CLOUDTRAIL_RAW.columns, keys), location, "cloudtrail_json",
        "raw cloudtrail logs as delivered; partitions by Athena partition projection (no AddAPart)",
    )
    tinput["Parameters"].update({
        "projection.enabled": "true",
        "projection.account.type": "injected",
        "projection.region.type": "enum",
        "projection.region.values": regions,
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy/MM/dd",
        "projection.dt.range": f"{start},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "storage.location.template": location + "/${account}/CloudTrail/${region}/${dt}",
    })
    return tinput


SOURCE = Source(
    name="cloudtrail",
    schema=CLOUDTRAIL,
    raw_schema=CLOUDTRAIL_RAW,
    raw_format="cloudtrail_json",
    raw_subdir="AWSLogs",
    raw_storage=RAW_STORAGE,
    raw_table_parameters={"classification": "cloudtrail"},
    org_scoped=True,
    ddl_notes=DDL_NOTES,
    projected_raw=projected_raw_table,
    raw_records=lambda data: transforms.decode_cloudtrail(data)[0],
    classify_key=keys.classify_cloudtrail_key,
    process_file=_cloudtrail_file,
    sort_columns=("eventsource", "eventname", "eventtime"),
    dedup_key=DEDUP_KEY,
    bloom_columns=("useridentity_arn", "useridentity_accesskeyid", "sourceipaddress", "eventid", "sessionid"),
    sibling_dirs=_cloudtrail_siblings,
    config_class=CloudTrailConfig,
    raw_table="from_cloudtrail_raw",
    readready_table="from_cloudtrail_readready",
    checks=quality_checks,
    derived_columns=(DELIVERY_DEADLINE,),
    derive_spark=derive_spark,
    derive_arrow=derive_arrow,
)

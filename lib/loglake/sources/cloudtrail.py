"""AWS CloudTrail: gzip JSON ``{"Records": [...]}`` objects under
``[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``, one flat readready
row per event."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loglake import keys, shapes
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
from loglake.schema import Column, TableSchema, column
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload
from loglake.transforms import (
    BAD_EVENT_TIME,
    INVALID_UTF8,
    MALFORMED_JSON,
    MISSING_EVENT_ID,
    MISSING_EVENT_NAME,
    MISSING_EVENT_TIME,
    NO_RECORDS,
    RECORD_NOT_OBJECT,
    RECORD_TOO_LARGE,
    SURROGATE_ESCAPE,
    TRUNCATED_GZIP,
    Problem,
    as_bool,
    as_json,
    as_text,
    gunzip,
    loads,
    parse_time,
    text_payload,
    without_lone_surrogates,
)

if TYPE_CHECKING:
    from loglake.config import Config, FiltersConfig, QualityConfig


@dataclass(frozen=True)
class CloudTrailConfig(SourceConfig):
    """``sources.cloudtrail``."""

    # Insights events land under CloudTrail-Insight/ and are skipped unless asked for,
    # since they are not API calls and have another record shape.
    include_insights: bool = False


# --------------------------------------------------------------------------- tables' columns

CLOUDTRAIL_PARTITION_KEYS: tuple[Column, ...] = (
    column("org", doc="organization id (o-...) of an organization trail, 'none' for an account trail"),
    column("account", doc="account id from the object key (the account the trail delivered for)"),
    column("region", doc="region from the object key"),
    column("dt", doc="delivery date from the object key, YYYY-MM-DD"),
)

CLOUDTRAIL_READREADY: tuple[Column, ...] = (
    column("eventversion"),
    column("eventtime", "timestamp", "eventTime, UTC"),
    column("eventsource"),
    column("eventname"),
    column("awsregion"),
    column("sourceipaddress", doc="as delivered; not validated as an IP (services put names here)"),
    column("useragent"),
    column("errorcode"),
    column("errormessage"),
    column("requestid"),
    column("eventid"),
    column("eventtype"),
    column("eventcategory"),
    column("apiversion"),
    column("managementevent", "boolean"),
    column("readonly", "boolean"),
    column("recipientaccountid"),
    column("sharedeventid"),
    column("vpcendpointid"),
    column("vpcendpointaccountid"),
    column("sessioncredentialfromconsole"),
    column("useridentity_type"),
    column("useridentity_arn"),
    column("useridentity_accountid"),
    column("useridentity_principalid"),
    column("useridentity_accesskeyid"),
    column("useridentity_username"),
    column("useridentity_invokedby"),
    column("useridentity_identityprovider"),
    column("useridentity_sessioncontext_sessionissuer_type"),
    column("useridentity_sessioncontext_sessionissuer_principalid"),
    column("useridentity_sessioncontext_sessionissuer_arn"),
    column("useridentity_sessioncontext_sessionissuer_accountid"),
    column("useridentity_sessioncontext_sessionissuer_username"),
    column("useridentity_sessioncontext_attributes_mfaauthenticated", "boolean"),
    column("useridentity_sessioncontext_attributes_creationdate", "timestamp"),
    column("useridentity_sessioncontext_sourceidentity"),
    column("useridentity_sessioncontext_ec2roledelivery"),
    column("useridentity_onbehalfof_userid"),
    column("useridentity_onbehalfof_identitystorearn"),
    column("useridentity_extra", doc="JSON of any other userIdentity content"),
    column("requestparameters", doc="JSON"),
    column("responseelements", doc="JSON"),
    column("additionaleventdata", doc="JSON"),
    column("resources", doc="JSON array"),
    column("tlsdetails", doc="JSON"),
    column("serviceeventdetails", doc="JSON"),
    column("sessionid", doc="Session Manager session id (StartSession/ResumeSession/TerminateSession)"),
    column("additional_fields", doc="JSON of top-level fields this schema does not name"),
    column("source_file", doc="raw object the record came from"),
)

CLOUDTRAIL = TableSchema(CLOUDTRAIL_READREADY, CLOUDTRAIL_PARTITION_KEYS)

# The raw CloudTrail table, read by Athena through the CloudTrail SerDe. Nested types
# stay nested here: that is the raw shape analysts should not have to query.
CLOUDTRAIL_RAW_COLUMNS: tuple[Column, ...] = (
    column("eventversion"),
    column(
        "useridentity",
        "struct<type:string,principalid:string,arn:string,accountid:string,invokedby:string,"
        "accesskeyid:string,username:string,sessioncontext:struct<attributes:struct<"
        "mfaauthenticated:string,creationdate:string>,sessionissuer:struct<type:string,"
        "principalid:string,arn:string,accountid:string,username:string>,"
        "sourceidentity:string,ec2roledelivery:string>>",
    ),
    column("eventtime"),
    column("eventsource"),
    column("eventname"),
    column("awsregion"),
    column("sourceipaddress"),
    column("useragent"),
    column("errorcode"),
    column("errormessage"),
    column("requestparameters"),
    column("responseelements"),
    column("additionaleventdata"),
    column("requestid"),
    column("eventid"),
    column("resources", "array<struct<arn:string,accountid:string,type:string>>"),
    column("eventtype"),
    column("apiversion"),
    column("readonly"),
    column("recipientaccountid"),
    column("serviceeventdetails"),
    column("sharedeventid"),
    column("vpcendpointid"),
    column("eventcategory"),
    column("tlsdetails", "struct<tlsversion:string,ciphersuite:string,clientprovidedhostheader:string>"),
)
CLOUDTRAIL_RAW = TableSchema(CLOUDTRAIL_RAW_COLUMNS, CLOUDTRAIL_PARTITION_KEYS)


# --------------------------------------------------------------------------- keys

_CLOUDTRAIL_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)AWSLogs/"
    r"(?:(?P<org>o-[a-z0-9]+)/)?"
    r"(?P<account>[^/]+)/"
    r"(?P<service>[^/]+)/"
    r"(?P<region>[^/]+)/"
    r"(?P<y>[^/]+)/(?P<m>[^/]+)/(?P<d>[^/]+)/"
    r"(?P<name>[^/]+)$"
)
_ORG_LIKE_RE = re.compile(r"^(?:.*/)?AWSLogs/(?P<org>o-[^/]*)/")

def parse_cloudtrail_key(key: str, include_insights: bool = False) -> keys.KeyResult:
    """Parse an (already URL-decoded) CloudTrail object key; validates every value."""
    if key.endswith("/"):
        return keys.skip(key, keys.FOLDER_MARKER)
    name = key.rsplit("/", 1)[-1]
    if name == "ConfigWritabilityCheckFile":
        return keys.skip(key, keys.CONFIG_WRITABILITY_CHECK)
    org_like = _ORG_LIKE_RE.match(key)
    if org_like and not keys.ORG_RE.match(org_like.group("org")):
        return keys.error(key, keys.BAD_ORG,
                      f"organization id {org_like.group('org')!r} is not o- and lowercase letters or digits")
    m = _CLOUDTRAIL_RE.match(key)
    if not m:
        svc = keys.AWSLOGS_SERVICE_RE.match(key)
        if svc and not svc.group("service").startswith("CloudTrail"):
            return keys.skip(key, keys.OTHER_SERVICE, svc.group("service"))
        return keys.error(
            key,
            keys.NO_LAYOUT_MATCH,
            "expected [prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE",
        )
    service = m.group("service")
    if service == "CloudTrail-Digest":
        return keys.skip(key, keys.DIGEST)
    if service == "CloudTrail-Insight" and not include_insights:
        return keys.skip(key, keys.INSIGHT)
    if service not in ("CloudTrail", "CloudTrail-Insight"):
        return keys.skip(key, keys.OTHER_SERVICE, service)
    account = m.group("account")
    if not shapes.ACCOUNT_RE.match(account):
        return keys.error(key, keys.BAD_ACCOUNT, f"account {account!r} is not 12 digits")
    region = m.group("region")
    if not shapes.REGION_RE.match(region):
        return keys.error(key, keys.BAD_REGION, f"region {region!r} does not look like a region")
    y, mo, d = m.group("y"), m.group("m"), m.group("d")
    day = keys.calendar_date(y, mo, d)
    if day is None:
        return keys.error(key, keys.BAD_DATE, f"{y}/{mo}/{d} is not a calendar date")
    if not name.endswith(".json.gz"):
        return keys.error(key, keys.NOT_JSON_GZ, f"file name {name!r} does not end in .json.gz")
    org = m.group("org") or keys.NO_ORG
    org_part = f"{m.group('org')}/" if m.group("org") else ""
    # Insight files sit beside CloudTrail/; the partition is the CloudTrail directory.
    raw_dir = f"{m.group('prefix')}AWSLogs/{org_part}{account}/CloudTrail/{region}/{y}/{mo}/{d}/"
    return keys.KeyResult(key, keys.OK, partition=keys.Partition((org, account, region, day.isoformat()), raw_dir))


def classify_cloudtrail_key(key: str, config: Config) -> keys.KeyResult:
    """Layout parse plus the config's key-level rules (deny patterns, accounts, regions)."""
    for pattern in config.filters.key_deny_patterns:
        if re.search(pattern, key):
            return keys.skip(key, keys.DENIED_KEY_PATTERN, pattern)
    result = parse_cloudtrail_key(key, config.sources.cloudtrail.include_insights)
    if not result.ok:
        return result
    _org, account, region, _day = result.partition.values
    if not config.filters.accounts.allows(account):
        return keys.skip(key, keys.DENIED_ACCOUNT, account)
    if not config.filters.regions.allows(region):
        return keys.skip(key, keys.DENIED_REGION, region)
    return result


# --------------------------------------------------------------------------- records

INSIGHT_EVENT = "AwsCloudTrailInsight"
SSM_SESSION_EVENTS = frozenset({"StartSession", "ResumeSession", "TerminateSession"})


def decode_cloudtrail(data: bytes) -> tuple[list[Any], Problem | None]:
    """A CloudTrail object (gzip JSON ``{"Records": [...]}``) -> its records, or a problem.

    When the gzip stream breaks or the JSON is malformed, the complete records before
    the break are still returned (with the problem): a bad tail never costs the records
    that preceded it.
    """
    raw, problem = gunzip(data)
    if problem and problem.reason != TRUNCATED_GZIP:
        return [], problem
    if problem is None:
        try:
            doc = loads(raw)
        except UnicodeDecodeError as exc:  # Python's parser (a big integer): the records before the byte are kept
            problem = Problem(INVALID_UTF8, str(exc)[:300])
        except ValueError as exc:
            reason = INVALID_UTF8 if "utf-8" in str(exc).lower() else MALFORMED_JSON
            problem = Problem(reason, str(exc)[:300])
        else:
            if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
                keys = sorted(doc)[:5] if isinstance(doc, dict) else type(doc).__name__
                return [], Problem(NO_RECORDS, f"JSON has no Records array (found {keys})", payload=text_payload(raw))
            return doc["Records"], None
    records, stop = salvage_records(raw)
    detail = f"{problem.detail}; kept the {len(records)} complete records before byte {stop}"
    return records, dataclasses.replace(
        problem, detail=detail, index=len(records), offset=stop, payload=text_payload(raw[stop:])
    )


_RECORDS_START = re.compile(r'\{\s*"Records"\s*:\s*\[')


def salvage_records(raw: bytes) -> tuple[list[Any], int]:
    """The complete records at the start of a broken ``{"Records": [...`` text, and the
    byte offset where the first incomplete or malformed one begins (their strings made
    encodable, as :func:`loads` does)."""
    records, stop = _salvage(raw)
    if records and SURROGATE_ESCAPE.search(raw, 0, stop):
        records = [without_lone_surrogates(record) for record in records]
    return records, stop


def _salvage(raw: bytes) -> tuple[list[Any], int]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[: exc.start].decode("utf-8")
    m = _RECORDS_START.match(text.lstrip())
    if not m:
        return [], 0
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip()) + m.end()
    records: list[Any] = []
    while True:
        start = pos
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            record, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than Python's stack
            return records, len(text[:pos].encode("utf-8"))
        records.append(record)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        else:
            return records, len(text[:pos].encode("utf-8"))



# --------------------------------------------------------------------------- flattening

# CloudTrail top-level field -> readready column, for fields copied as scalars.
_SCALARS = {
    "eventVersion": "eventversion",
    "eventSource": "eventsource",
    "eventName": "eventname",
    "awsRegion": "awsregion",
    "sourceIPAddress": "sourceipaddress",
    "userAgent": "useragent",
    "errorCode": "errorcode",
    "errorMessage": "errormessage",
    "requestID": "requestid",
    "eventID": "eventid",
    "eventType": "eventtype",
    "eventCategory": "eventcategory",
    "apiVersion": "apiversion",
    "recipientAccountId": "recipientaccountid",
    "sharedEventID": "sharedeventid",
    "vpcEndpointId": "vpcendpointid",
    "vpcEndpointAccountId": "vpcendpointaccountid",
    "sessionCredentialFromConsole": "sessioncredentialfromconsole",
}
_BOOLEANS = {"managementEvent": "managementevent", "readOnly": "readonly"}
_JSON = {
    "requestParameters": "requestparameters",
    "responseElements": "responseelements",
    "additionalEventData": "additionaleventdata",
    "resources": "resources",
    "tlsDetails": "tlsdetails",
    "serviceEventDetails": "serviceeventdetails",
}
_HANDLED = set(_SCALARS) | set(_BOOLEANS) | set(_JSON) | {"eventTime", "userIdentity"}

_IDENTITY_SCALARS = {
    "type": "useridentity_type",
    "arn": "useridentity_arn",
    "accountId": "useridentity_accountid",
    "principalId": "useridentity_principalid",
    "accessKeyId": "useridentity_accesskeyid",
    "userName": "useridentity_username",
    "invokedBy": "useridentity_invokedby",
    "identityProvider": "useridentity_identityprovider",
}
_ISSUER = {
    "type": "useridentity_sessioncontext_sessionissuer_type",
    "principalId": "useridentity_sessioncontext_sessionissuer_principalid",
    "arn": "useridentity_sessioncontext_sessionissuer_arn",
    "accountId": "useridentity_sessioncontext_sessionissuer_accountid",
    "userName": "useridentity_sessioncontext_sessionissuer_username",
}


def check_cloudtrail_record(record: Any, index: int) -> Problem | None:
    """The minimum a record needs to be published: an object with an id and a time."""
    if not isinstance(record, dict):
        return Problem(RECORD_NOT_OBJECT, f"record is {type(record).__name__}", index)
    if not record.get("eventID"):
        return Problem(MISSING_EVENT_ID, "record has no eventID", index)
    if "eventTime" not in record or record["eventTime"] in (None, ""):
        return Problem(MISSING_EVENT_TIME, "record has no eventTime", index)
    if parse_time(record["eventTime"]) is None:
        return Problem(BAD_EVENT_TIME, f"eventTime {record['eventTime']!r} is not ISO-8601", index)
    return None


def session_id(record: dict) -> str | None:
    """The Session Manager session a CloudTrail event is about, else None.

    StartSession/ResumeSession return it in responseElements.sessionId. A failed
    TerminateSession/ResumeSession (AccessDenied) has no response, so fall back to
    requestParameters.sessionId: who tried to end or resume which session matters too.
    """
    if record.get("eventSource") != "ssm.amazonaws.com":
        return None
    if record.get("eventName") not in SSM_SESSION_EVENTS:
        return None
    for part in ("responseElements", "requestParameters"):
        section = record.get(part)
        if isinstance(section, dict) and isinstance(section.get("sessionId"), str):
            return section["sessionId"]
    return None


def flatten_cloudtrail(record: dict) -> dict[str, Any]:
    """One CloudTrail record -> one flat readready row (readready column names).

    Unknown top-level fields go to ``additional_fields`` and unknown identity fields
    to ``useridentity_extra`` as JSON, so a new AWS field never breaks the job and
    never silently disappears.
    """
    row: dict[str, Any] = {col: as_text(record.get(src)) for src, col in _SCALARS.items()}
    for src, col in _BOOLEANS.items():
        row[col] = as_bool(record.get(src))
    for src, col in _JSON.items():
        row[col] = as_json(record.get(src))
    row["eventtime"] = parse_time(record.get("eventTime"))
    if record.get("eventType") == INSIGHT_EVENT and isinstance(record.get("insightDetails"), dict):
        # Insights events name the API they are about inside insightDetails; surfacing it
        # lets the same eventsource/eventname queries find them (insightDetails is kept
        # whole in additional_fields).
        details = record["insightDetails"]
        row["eventsource"] = row["eventsource"] or as_text(details.get("eventSource"))
        row["eventname"] = row["eventname"] or as_text(details.get("eventName"))
    row.update(_flatten_identity(record.get("userIdentity")))
    row["sessionid"] = session_id(record)
    extra = {k: v for k, v in record.items() if k not in _HANDLED}
    row["additional_fields"] = as_json(extra) if extra else None
    return row


def _flatten_identity(identity: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if not isinstance(identity, dict):
        identity = {} if identity is None else {"value": identity}
    rest = dict(identity)
    for src, col in _IDENTITY_SCALARS.items():
        row[col] = as_text(rest.pop(src, None))
    context = rest.pop("sessionContext", None)
    context = dict(context) if isinstance(context, dict) else ({} if context is None else {"value": context})
    issuer = context.pop("sessionIssuer", None)
    issuer = dict(issuer) if isinstance(issuer, dict) else {}
    for src, col in _ISSUER.items():
        row[col] = as_text(issuer.pop(src, None))
    attributes = context.pop("attributes", None)
    attributes = dict(attributes) if isinstance(attributes, dict) else {}
    mfa = attributes.pop("mfaAuthenticated", None)
    row["useridentity_sessioncontext_attributes_mfaauthenticated"] = as_bool(mfa)
    if mfa is not None and as_bool(mfa) is None:
        attributes["mfaAuthenticated"] = mfa  # unparseable: keep it, in useridentity_extra
    created = attributes.pop("creationDate", None)
    row["useridentity_sessioncontext_attributes_creationdate"] = parse_time(created)
    if created is not None and parse_time(created) is None:
        attributes["creationDate"] = created
    row["useridentity_sessioncontext_sourceidentity"] = as_text(context.pop("sourceIdentity", None))
    row["useridentity_sessioncontext_ec2roledelivery"] = as_text(context.pop("ec2RoleDelivery", None))
    on_behalf = rest.pop("onBehalfOf", None)
    on_behalf = dict(on_behalf) if isinstance(on_behalf, dict) else {}
    row["useridentity_onbehalfof_userid"] = as_text(on_behalf.pop("userId", None))
    row["useridentity_onbehalfof_identitystorearn"] = as_text(on_behalf.pop("identityStoreArn", None))
    # Whatever is left, nested where it was, so nothing in userIdentity is lost.
    if issuer:
        context["sessionIssuer"] = issuer
    if attributes:
        context["attributes"] = attributes
    if context:
        rest["sessionContext"] = context
    if on_behalf:
        rest["onBehalfOf"] = on_behalf
    row["useridentity_extra"] = as_json(rest) if rest else None
    return row


# --------------------------------------------------------------------------- filters


BAD_EVENT_SOURCE = "bad_event_source"
BAD_AWS_REGION = "bad_aws_region"
MISSING_SESSION_ID = "missing_session_id"
EVENT_SOURCE_RE = r"^[a-z0-9.-]+\.amazonaws\.com\z"  # the gate's (Great Expectations) form
_EVENT_SOURCE = re.compile(EVENT_SOURCE_RE.replace("\\z", "\\Z"))


_GOOD_VALUES: set[str] = set()  # event sources and regions that passed their shape check


def _remember(value: str) -> None:
    if len(_GOOD_VALUES) < 100_000:  # bounded, whatever a file holds
        _GOOD_VALUES.add(value)


def check_cloudtrail_row(row: dict[str, Any], index: int) -> Problem | None:
    """After flattening: every published event says which API call it is, and passes the
    quality gate's rules on single values (:func:`quality_checks`). A record that broke
    one would fail the whole run (and every scheduled run after it, which meets the same
    object again); here it goes to the quarantine with the rule as its reason, and the
    gate is left to find bugs."""
    source = row.get("eventsource")
    if not (source and source.strip()):
        return Problem(MISSING_EVENT_NAME, "record has no eventSource", index)
    if not (row.get("eventname") and row["eventname"].strip()):
        return Problem(MISSING_EVENT_NAME, "record has no eventName", index)
    if source not in _GOOD_VALUES:  # a few hundred services and regions: a set, not a regex per record
        if not _EVENT_SOURCE.match(source):
            return Problem(BAD_EVENT_SOURCE, f"eventSource {source[:80]!r} is not a service endpoint", index)
        _remember(source)
    region = row.get("awsregion")
    if region is not None and region not in _GOOD_VALUES:
        if not shapes.REGION_RE.match(region):
            return Problem(BAD_AWS_REGION, f"awsRegion {region[:80]!r} does not look like a region", index)
        _remember(region)
    if (row["sessionid"] is None and row["eventname"] == "StartSession" and source == "ssm.amazonaws.com"
            and row["errorcode"] is None and row["responseelements"] is not None):
        return Problem(MISSING_SESSION_ID, "a successful StartSession without responseElements.sessionId", index)
    return None


def cloudtrail_filter_rule(row: dict[str, Any], filters: FiltersConfig) -> str | None:
    """The config rule that drops this row, or None to keep it."""
    if not filters.event_sources.allows(row.get("eventsource")):
        return "event_sources"
    if not filters.event_names.allows(row.get("eventname")):
        return "event_names"
    return None




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
    records, problem = decode_cloudtrail(data)
    if problem:
        out.problems.append(dataclasses.replace(
            problem, payload=problem.payload and problem.payload[: quality.max_payload_bytes],
            payload_size=problem.payload_size or len(data)))
    out.records_read = len(records)
    for i, record in enumerate(records):
        bad = check_cloudtrail_record(record, i)
        if bad:
            out.problems.append(with_payload(bad, record, quality.max_payload_bytes))
            continue
        row = flatten_cloudtrail(record)
        unnamed = check_cloudtrail_row(row, i)
        if unnamed:
            out.problems.append(with_payload(unnamed, record, quality.max_payload_bytes))
            continue
        size = row_bytes(row)
        if size > quality.max_record_bytes:
            too_big = Problem(
                RECORD_TOO_LARGE, f"record is {size} bytes flattened, over {quality.max_record_bytes}", i)
            out.problems.append(with_payload(too_big, record, quality.max_payload_bytes))
            continue
        rule = cloudtrail_filter_rule(row, filters)
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
    raw_records=lambda data: decode_cloudtrail(data)[0],
    classify_key=classify_cloudtrail_key,
    process_file=_cloudtrail_file,
    # a principal's repeated calls of one API together: 1.6% smaller than without the
    # principal (bench/README.md, "Size"), and its bloom filter still finds one principal
    sort_columns=("eventsource", "eventname", "useridentity_arn", "eventtime"),
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

"""Record transforms (loglake.transforms) and per-file processing (loglake.sources): pure unit tests.

Expected values are derived independently from the real samples (read with the
standard json/gzip modules) or from hand-written inputs, never from loglake itself.
"""
from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from conftest import CT, ELASTIC_GZ, STRATUS_GZ, records_of
from loglake import sources, transforms
from loglake.config import FiltersConfig, config_from_dict
from loglake.sources.cloudtrail import (
    CLOUDTRAIL,
    check_cloudtrail_record,
    cloudtrail_filter_rule,
    decode_cloudtrail,
    flatten_cloudtrail,
    process_cloudtrail,
)
from loglake.transforms import gunzip

AWSDOCS_JSONL = CT / "awsdocs" / "awsdocs_cloudtrail_examples.jsonl"
OTRF_JSONL = CT / "otrf-security-datasets" / "ec2_proxy_s3_exfiltration_2020-09-14011940.json"
DIGEST_LOG = CT / "elastic-integrations" / "test-cloudtrail-digest-json.log"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


STRATUS = records_of(STRATUS_GZ)
ELASTIC = records_of(ELASTIC_GZ)
AWSDOCS = jsonl(AWSDOCS_JSONL)
OTRF = jsonl(OTRF_JSONL)
ALL_REAL = {"stratus": STRATUS, "elastic": ELASTIC, "awsdocs": AWSDOCS, "otrf": OTRF}
COLUMNS = set(CLOUDTRAIL.names)


def raw_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def gz_json(doc) -> bytes:
    return gzip.compress(json.dumps(doc).encode())


def utc(text: str) -> dt.datetime:
    """CloudTrail's UTC time, extended (2024-07-30T10:11:12Z) or basic (20240730T101112Z) format."""
    fmt = "%Y-%m-%dT%H:%M:%SZ" if "-" in text else "%Y%m%dT%H%M%SZ"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)


def flattened(name: str):
    """(label, raw record, flat row) for every record of one real sample set."""
    return [(f"{name}[{i}]", rec, flatten_cloudtrail(rec)) for i, rec in enumerate(ALL_REAL[name])]


def filters(**data) -> FiltersConfig:
    return config_from_dict({"filters": data}).filters


# --------------------------------------------------------------------------- decode on real files


@pytest.mark.parametrize("path, count", [(STRATUS_GZ, 310), (ELASTIC_GZ, 26)])
def test_decode_real_samples(path, count):
    records, problem = decode_cloudtrail(path.read_bytes())
    assert problem is None
    assert len(records) == count
    assert records == records_of(path)


def test_decode_empty_records_list():
    assert decode_cloudtrail(gz_json({"Records": []})) == ([], None)


# --------------------------------------------------------------------------- gunzip


def test_gunzip_single_member():
    assert gunzip(STRATUS_GZ.read_bytes()) == (raw_bytes(STRATUS_GZ), None)


def test_gunzip_multi_member():
    raw = raw_bytes(STRATUS_GZ)
    cut = len(raw) // 3
    data = gzip.compress(raw[:cut]) + gzip.compress(b"") + gzip.compress(raw[cut:])
    assert gunzip(data) == (raw, None)
    records, problem = decode_cloudtrail(data)
    assert problem is None
    assert records == STRATUS


def test_gunzip_trailing_zero_padding_is_harmless():
    raw = raw_bytes(ELASTIC_GZ)
    assert gunzip(ELASTIC_GZ.read_bytes() + b"\x00" * 512) == (raw, None)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.9])
def test_gunzip_truncated_real_file_keeps_the_prefix(fraction):
    data = STRATUS_GZ.read_bytes()
    full = raw_bytes(STRATUS_GZ)
    out, problem = gunzip(data[: int(len(data) * fraction)])
    assert problem is not None
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert 0 < len(out) < len(full)
    assert full.startswith(out)


def test_gunzip_truncated_in_the_trailer():
    data = STRATUS_GZ.read_bytes()
    out, problem = gunzip(data[:-4])  # the ISIZE field is missing
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert raw_bytes(STRATUS_GZ).startswith(out)


def test_gunzip_truncated_second_member_keeps_the_first():
    first, second = b'{"Records":[', b"]}"
    data = gzip.compress(first) + gzip.compress(second)[:-6]
    out, problem = gunzip(data)
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert out.startswith(first)


def test_gunzip_bad_crc():
    data = bytearray(ELASTIC_GZ.read_bytes())
    data[-8] ^= 0xFF  # CRC32 of the member
    out, problem = gunzip(bytes(data))
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert raw_bytes(ELASTIC_GZ).startswith(out)


def test_gunzip_trailing_garbage():
    out, problem = gunzip(ELASTIC_GZ.read_bytes() + b"garbage")
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert out == raw_bytes(ELASTIC_GZ)


@pytest.mark.parametrize(
    "data",
    [
        raw_bytes(ELASTIC_GZ),  # plain JSON, not compressed
        b"BZh91AY&SY",  # bzip2
        b"PK\x03\x04",  # zip
        b"\x1f",  # one byte of the magic
        b"\x00" * 20,
    ],
)
def test_gunzip_not_gzip(data):
    out, problem = gunzip(data)
    assert (out, problem.reason) == (b"", transforms.NOT_GZIP)
    records, problem = decode_cloudtrail(data)
    assert (records, problem.reason) == ([], transforms.NOT_GZIP)


def test_gunzip_empty():
    out, problem = gunzip(b"")
    assert (out, problem.reason) == (b"", transforms.EMPTY_OBJECT)
    records, problem = decode_cloudtrail(b"")
    assert (records, problem.reason) == ([], transforms.EMPTY_OBJECT)


def test_decode_truncated_real_file_keeps_the_complete_records_before_the_break():
    data = STRATUS_GZ.read_bytes()
    records, problem = decode_cloudtrail(data[: len(data) // 2])
    originals = records_of(STRATUS_GZ)
    assert 0 < len(records) < len(originals)
    assert records == originals[: len(records)]
    assert problem.reason == transforms.TRUNCATED_GZIP
    assert problem.index == len(records)  # where the break starts
    # the first record not kept starts at the reported offset of the decompressed text
    assert raw_bytes(STRATUS_GZ)[problem.offset :].lstrip(b", ").startswith(b"{")


# --------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "text",
    [
        b'{"Records":[{"eventID":"a",}]}',  # trailing comma
        b'{"Records":[',
        b"{'Records': []}",  # Python, not JSON
        b'{"Records":[]} {"Records":[]}',  # two documents
        b"",  # a gzip of nothing
    ],
)
def test_malformed_json(text):
    records, problem = decode_cloudtrail(gzip.compress(text))
    assert records == []
    assert problem.reason == transforms.MALFORMED_JSON
    assert problem.detail


def test_malformed_json_real_file_cut_before_compression():
    raw = raw_bytes(STRATUS_GZ)
    records, problem = decode_cloudtrail(gzip.compress(raw[: len(raw) // 2]))
    originals = records_of(STRATUS_GZ)
    assert problem.reason == transforms.MALFORMED_JSON
    assert 0 < len(records) < len(originals) and records == originals[: len(records)]
    assert problem.payload and raw[: len(raw) // 2].decode().endswith(problem.payload)


@pytest.mark.parametrize(
    "data",
    [
        b'{"Records":[{"eventID":"\xff\xfe"}]}',
        # a real record re-encoded as Latin-1: valid JSON text, invalid UTF-8 bytes
        json.dumps({"Records": [{**STRATUS[0], "userAgent": "Gr\u00fc\u00dfe"}]}, ensure_ascii=False).encode("latin-1"),
    ],
)
def test_invalid_utf8(data):
    records, problem = decode_cloudtrail(gzip.compress(data))
    assert (records, problem.reason) == ([], transforms.INVALID_UTF8)


@pytest.mark.parametrize(
    "doc",
    [
        {"foo": 1},
        {"records": []},  # wrong case
        {"Records": None},
        {"Records": {"eventID": "x"}},
        [],
        STRATUS[:2],  # a bare array of records
        STRATUS[0],  # one record, no wrapper
        "Records",
        42,
    ],
)
def test_no_records(doc):
    records, problem = decode_cloudtrail(gz_json(doc))
    assert (records, problem.reason) == ([], transforms.NO_RECORDS)


def test_real_digest_file_has_no_records():
    records, problem = decode_cloudtrail(gzip.compress(DIGEST_LOG.read_bytes()))
    assert (records, problem.reason) == ([], transforms.NO_RECORDS)


# --------------------------------------------------------------------------- check_cloudtrail_record


@pytest.mark.parametrize("name", ["stratus", "elastic"])
def test_real_records_pass_the_check(name):
    assert [check_cloudtrail_record(r, i) for i, r in enumerate(ALL_REAL[name])] == [None] * len(ALL_REAL[name])


@pytest.mark.parametrize("record", [[], "eventID", None, 1, ["a"], True])
def test_record_not_an_object(record):
    problem = check_cloudtrail_record(record, 7)
    assert (problem.reason, problem.index) == (transforms.RECORD_NOT_OBJECT, 7)


def test_real_awsdocs_records_without_event_id():
    expected = [i for i, r in enumerate(AWSDOCS) if not r.get("eventID")]
    assert expected  # several documentation examples leave eventID out
    problems = [check_cloudtrail_record(r, i) for i, r in enumerate(AWSDOCS)]
    assert [p.index for p in problems if p] == expected
    assert {p.reason for p in problems if p} == {transforms.MISSING_EVENT_ID}


@pytest.mark.parametrize("value", [None, ""])
def test_missing_event_id_values(value):
    rec = {**STRATUS[0], "eventID": value}
    assert check_cloudtrail_record(rec, 0).reason == transforms.MISSING_EVENT_ID
    del rec["eventID"]
    assert check_cloudtrail_record(rec, 0).reason == transforms.MISSING_EVENT_ID


def test_real_otrf_records_have_no_event_time():
    # Exported through Logstash: the time is in @timestamp, eventTime is gone.
    assert all("eventTime" not in r and r.get("eventID") for r in OTRF)
    problems = [check_cloudtrail_record(r, i) for i, r in enumerate(OTRF)]
    assert [(p.reason, p.index) for p in problems] == [(transforms.MISSING_EVENT_TIME, i) for i in range(len(OTRF))]


@pytest.mark.parametrize("value", [None, ""])
def test_empty_event_time(value):
    assert check_cloudtrail_record({**STRATUS[0], "eventTime": value}, 0).reason == transforms.MISSING_EVENT_TIME


def real_bad_time_record() -> dict:
    """The documentation example whose eventTime has spaces; it has no eventID, so give it one."""
    [rec] = [r for r in AWSDOCS if ": " in str(r.get("eventTime"))]
    assert rec["eventTime"] == "2014-03-06T21: 22: 54Z"
    return {**rec, "eventID": "00000000-0000-0000-0000-000000000044"}


def test_real_bad_event_time():
    problem = check_cloudtrail_record(real_bad_time_record(), 3)
    assert (problem.reason, problem.index) == (transforms.BAD_EVENT_TIME, 3)
    assert "2014-03-06T21: 22: 54Z" in problem.detail


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", 1700000000, ["x"]])
def test_bad_event_time(value):
    assert check_cloudtrail_record({**STRATUS[0], "eventTime": value}, 0).reason == transforms.BAD_EVENT_TIME


# --------------------------------------------------------------------------- flatten: shape


@pytest.mark.parametrize("name", ALL_REAL)
def test_flatten_shape(name):
    python_type = {"string": str, "boolean": bool, "timestamp": dt.datetime}
    types = {c.name: python_type[c.type] for c in CLOUDTRAIL.columns}
    for label, _rec, row in flattened(name):
        assert set(row) == COLUMNS - {"source_file"}, label
        for col, value in row.items():
            assert not isinstance(value, (dict, list)), (label, col)
            assert value is None or type(value) is types[col], (label, col, value)


@pytest.mark.parametrize("name", ["stratus", "elastic", "awsdocs"])
def test_eventtime_is_aware_utc(name):
    good = [r for r in ALL_REAL[name] if ": " not in r["eventTime"]]
    for rec in good:
        value = flatten_cloudtrail(rec)["eventtime"]
        assert value.utcoffset() == dt.timedelta(0)
        assert value == utc(rec["eventTime"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-07-30T10:11:12Z", dt.datetime(2024, 7, 30, 10, 11, 12, tzinfo=dt.UTC)),
        ("2024-07-30T12:11:12+02:00", dt.datetime(2024, 7, 30, 10, 11, 12, tzinfo=dt.UTC)),
        ("2024-07-30T10:11:12.250Z", dt.datetime(2024, 7, 30, 10, 11, 12, 250000, tzinfo=dt.UTC)),
    ],
)
def test_eventtime_offsets_are_converted_to_utc(text, expected):
    value = flatten_cloudtrail({**STRATUS[0], "eventTime": text})["eventtime"]
    assert value == expected
    assert value.tzinfo == dt.UTC


@pytest.mark.parametrize("name", ALL_REAL)
def test_scalars_are_copied(name):
    for label, rec, row in flattened(name):
        for key, value in rec.items():
            col = key.lower()
            if col in COLUMNS and col != "eventtime" and isinstance(value, (str, bool)):
                assert row[col] == value, (label, key)


# --------------------------------------------------------------------------- flatten: JSON columns


JSON_FIELDS = [
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "resources",
    "tlsDetails",
    "serviceEventDetails",
]


@pytest.mark.parametrize("name", ALL_REAL)
def test_json_columns_round_trip(name):
    for label, rec, row in flattened(name):
        for field in JSON_FIELDS:
            col = field.lower()
            if rec.get(field) is None:
                assert row[col] is None, (label, field)
            else:
                assert json.loads(row[col]) == rec[field], (label, field)


def test_json_columns_are_exercised_by_the_samples():
    rows = [flatten_cloudtrail(r) for r in STRATUS]
    assert sum(r["requestparameters"] is None for r in rows) == sum(r["requestParameters"] is None for r in STRATUS)
    assert sum(r["resources"] is not None for r in rows) == sum("resources" in r for r in STRATUS) > 0


def test_request_parameters_round_trip_through_decode():
    record = {**STRATUS[0], "requestParameters": {"nested": {"list": [1, 2.5, None, True, "ü"]}, "n": 2**63}}
    [decoded], problem = decode_cloudtrail(gz_json({"Records": [record]}))
    assert problem is None
    assert json.loads(flatten_cloudtrail(decoded)["requestparameters"]) == record["requestParameters"]


@pytest.mark.parametrize("number", [2**64 + 1, -(2**63) - 1, 12345678901234567890123])
def test_big_integers_round_trip_through_decode(number):
    record = {**STRATUS[0], "requestParameters": {"n": number}}
    [decoded], problem = decode_cloudtrail(gz_json({"Records": [record]}))
    assert problem is None
    assert json.loads(flatten_cloudtrail(decoded)["requestparameters"]) == {"n": number}


@pytest.mark.parametrize(("text", "expected"), [
    (b'{"a": 12345678901234567890}', True),
    (b'{"a":[1,\n  -1234567890123456789]}', True),
    (b'[1234567890123456789]', True),
    (b'{"a": 123456789012345678}', False),  # 18 digits: orjson keeps it exact
    (b'{"id": "1234567890123456789012"}', False),  # digits in a string
    (b'{"a": 0.1234567890123456789}', False),  # a fraction
    (b'{"a": 1e1234567890123456789}', False),  # an exponent
    (b'{"s": "x:1234567890123456789"}', True),  # looks like one: only costs the slow parser
])
def test_has_big_int(text, expected):
    assert transforms.has_big_int(text) is expected


def test_has_big_int_agrees_with_the_regex_it_replaced():
    import random
    import re

    reference = re.compile(rb"[:\[,][ \t\r\n]*-?[0-9]{19,}")
    rng = random.Random(7)
    hits = 0
    for _ in range(20_000):
        text = bytes(rng.choice(b'01234567890123456789 :,[-"\n') for _ in range(rng.randint(0, 70)))
        expected = bool(reference.search(text))
        hits += expected
        assert transforms.has_big_int(text) is expected, text
    assert hits > 100  # the fuzz reaches both answers


# --------------------------------------------------------------------------- flatten: additional_fields


def unknown_top_level(record: dict) -> dict:
    """Top-level fields with no column of their own (userIdentity is flattened into columns)."""
    return {k: v for k, v in record.items() if k.lower() not in COLUMNS and k != "userIdentity"}


@pytest.mark.parametrize("name", ALL_REAL)
def test_additional_fields(name):
    for label, rec, row in flattened(name):
        extra = unknown_top_level(rec)
        if extra:
            assert json.loads(row["additional_fields"]) == extra, label
        else:
            assert row["additional_fields"] is None, label


def test_otrf_logstash_fields_go_to_additional_fields():
    for rec in OTRF:
        row = flatten_cloudtrail(rec)
        assert json.loads(row["additional_fields"]) == {"@timestamp": rec["@timestamp"], "@version": rec["@version"]}
        assert row["eventtime"] is None


def test_awsdocs_unknown_fields_go_to_additional_fields():
    found = {k for rec in AWSDOCS if (af := flatten_cloudtrail(rec)["additional_fields"]) for k in json.loads(af)}
    assert {"insightDetails", "edgeDeviceDetails"} <= found


def test_hand_written_unknown_field():
    record = {**STRATUS[0], "newAwsField": {"a": [1, 2]}, "anotherOne": "x"}
    row = flatten_cloudtrail(record)
    assert json.loads(row["additional_fields"]) == {"newAwsField": {"a": [1, 2]}, "anotherOne": "x"}


# --------------------------------------------------------------------------- flatten: userIdentity


def _is_container(path: tuple[str, ...]) -> bool:
    prefix = "useridentity_" + "_".join(p.lower() for p in path) + "_"
    return any(c.startswith(prefix) for c in COLUMNS)


def expected_identity_extra(identity) -> dict | None:
    """userIdentity minus every leaf that has a column (matched by lower-cased path), minus
    column containers that end up empty; unknown content stays where it was."""

    def strip(node: dict, path: tuple[str, ...]) -> dict:
        out = {}
        for key, value in node.items():
            sub = path + (key,)
            column = "useridentity_" + "_".join(p.lower() for p in sub)
            if column in COLUMNS and not isinstance(value, (dict, list)):
                continue
            if isinstance(value, dict) and _is_container(sub):
                value = strip(value, sub)
                if not value:
                    continue
            out[key] = value
        return out

    rest = strip(identity or {}, ())
    return rest or None


@pytest.mark.parametrize("name", ALL_REAL)
def test_useridentity_extra_on_real_records(name):
    for label, rec, row in flattened(name):
        got = json.loads(row["useridentity_extra"]) if row["useridentity_extra"] else None
        assert got == expected_identity_extra(rec.get("userIdentity")), label


@pytest.mark.parametrize("name", ALL_REAL)
def test_useridentity_columns_on_real_records(name):
    for label, rec, row in flattened(name):
        identity = rec.get("userIdentity") or {}
        issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
        assert row["useridentity_type"] == identity.get("type"), label
        assert row["useridentity_arn"] == identity.get("arn"), label
        assert row["useridentity_accountid"] == identity.get("accountId"), label
        assert row["useridentity_username"] == identity.get("userName"), label
        assert row["useridentity_sessioncontext_sessionissuer_arn"] == issuer.get("arn"), label
        assert row["useridentity_sessioncontext_sessionissuer_username"] == issuer.get("userName"), label


def test_real_web_identity_federation_data_is_kept():
    with_wif = [
        r for r in STRATUS + AWSDOCS + OTRF
        if "webIdFederationData" in (r.get("userIdentity") or {}).get("sessionContext", {})
    ]
    assert with_wif
    for rec in with_wif:
        extra = json.loads(flatten_cloudtrail(rec)["useridentity_extra"])
        assert extra["sessionContext"]["webIdFederationData"] == rec["userIdentity"]["sessionContext"][
            "webIdFederationData"
        ]


def test_hand_written_unknown_identity_fields():
    wif = {"federatedProvider": "arn:aws:iam::123456789012:oidc-provider/example.com", "attributes": {"aud": "x"}}
    identity = {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:session",
        "arn": "arn:aws:sts::123456789012:assumed-role/r/session",
        "accountId": "123456789012",
        "accessKeyId": "ASIAEXAMPLE",
        "webIdFederationData": wif,
        "credentialId": "cred-1",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::123456789012:role/r", "newIssuerField": 1},
            "webIdFederationData": wif,
            "attributes": {"creationDate": "2024-07-30T10:00:00Z", "mfaAuthenticated": "true", "newAttr": "y"},
            "ec2RoleDelivery": "2.0",
        },
        "onBehalfOf": {"userId": "u-1", "identityStoreArn": "arn:aws:identitystore::1:identitystore/d-1"},
    }
    row = flatten_cloudtrail({**STRATUS[0], "userIdentity": identity})
    assert json.loads(row["useridentity_extra"]) == {
        "webIdFederationData": wif,
        "credentialId": "cred-1",
        "sessionContext": {
            "sessionIssuer": {"newIssuerField": 1},
            "webIdFederationData": wif,
            "attributes": {"newAttr": "y"},
        },
    }
    assert row["useridentity_sessioncontext_sessionissuer_type"] == "Role"
    assert row["useridentity_sessioncontext_attributes_mfaauthenticated"] is True
    assert row["useridentity_sessioncontext_attributes_creationdate"] == utc("2024-07-30T10:00:00Z")
    assert row["useridentity_sessioncontext_ec2roledelivery"] == "2.0"
    assert row["useridentity_onbehalfof_userid"] == "u-1"
    assert row["useridentity_onbehalfof_identitystorearn"] == "arn:aws:identitystore::1:identitystore/d-1"


def test_only_known_identity_fields_leave_no_extra():
    identity = {"type": "IAMUser", "userName": "alice", "sessionContext": {"attributes": {"mfaAuthenticated": "false"}}}
    assert flatten_cloudtrail({**STRATUS[0], "userIdentity": identity})["useridentity_extra"] is None


@pytest.mark.parametrize("identity", [None, "weird", 5])
def test_missing_or_odd_identity(identity):
    row = flatten_cloudtrail({**STRATUS[0], "userIdentity": identity})
    assert row["useridentity_type"] is None
    if identity is not None:
        assert identity in json.loads(row["useridentity_extra"]).values()


@pytest.mark.parametrize("name", ALL_REAL)
def test_mfa_and_creation_date(name):
    for label, rec, row in flattened(name):
        attrs = ((rec.get("userIdentity") or {}).get("sessionContext") or {}).get("attributes") or {}
        mfa = {"true": True, "false": False}.get(attrs.get("mfaAuthenticated"))
        assert row["useridentity_sessioncontext_attributes_mfaauthenticated"] is mfa, label
        created = attrs.get("creationDate")
        assert row["useridentity_sessioncontext_attributes_creationdate"] == (utc(created) if created else None), label


def test_mfa_both_values_occur_in_the_samples():
    values = [flatten_cloudtrail(r)["useridentity_sessioncontext_attributes_mfaauthenticated"] for r in ELASTIC + OTRF]
    assert values.count(True) == sum(
        r["userIdentity"].get("sessionContext", {}).get("attributes", {}).get("mfaAuthenticated") == "true"
        for r in ELASTIC + OTRF
    ) > 0
    assert False in values


@pytest.mark.parametrize(
    "raw, expected",
    [("true", True), ("false", False), ("TRUE", True), (True, True), (False, False), ("yes", None), (None, None)],
)
def test_mfa_values(raw, expected):
    identity = {"type": "AssumedRole", "sessionContext": {"attributes": {"mfaAuthenticated": raw}}}
    row = flatten_cloudtrail({**STRATUS[0], "userIdentity": identity})
    assert row["useridentity_sessioncontext_attributes_mfaauthenticated"] is expected


# --------------------------------------------------------------------------- flatten: sessionid


def expected_session_id(rec: dict) -> str | None:
    if rec["eventSource"] == "ssm.amazonaws.com" and rec["eventName"] in ("StartSession", "TerminateSession"):
        return (rec.get("responseElements") or {}).get("sessionId")
    return None


def test_sessionid_on_real_stratus_records():
    rows = [flatten_cloudtrail(r) for r in STRATUS]
    assert [r["sessionid"] for r in rows] == [expected_session_id(r) for r in STRATUS]
    starts = {r["sessionid"] for r in rows if r["eventname"] == "StartSession"}
    ends = {r["sessionid"] for r in rows if r["eventname"] == "TerminateSession"}
    assert len(starts) == 3 and starts == ends  # every session started was terminated
    assert sum(r["sessionid"] is not None for r in rows) == 6
    assert all(r["sessionid"] is None for r in rows if r["eventsource"] != "ssm.amazonaws.com")


def test_sessionid_on_real_elastic_records():
    by_name = {r["eventName"]: r for r in ELASTIC if r["eventSource"] == "ssm.amazonaws.com"}
    term = by_name["TerminateSession"]
    assert flatten_cloudtrail(term)["sessionid"] == term["responseElements"]["sessionId"]
    # This StartSession has no response and no sessionId in its request.
    assert flatten_cloudtrail(by_name["StartSession"])["sessionid"] is None
    assert flatten_cloudtrail(by_name["SendCommand"])["sessionid"] is None


def real_terminate_session() -> dict:
    return copy.deepcopy(next(r for r in STRATUS if r["eventName"] == "TerminateSession"))


def test_failed_terminate_session_falls_back_to_request_parameters():
    rec = real_terminate_session()
    rec.update(responseElements=None, errorCode="AccessDenied", errorMessage="not authorized")
    rec["requestParameters"]["sessionId"] = "someone-else-0123456789abcdef"
    assert flatten_cloudtrail(rec)["sessionid"] == "someone-else-0123456789abcdef"


def test_resume_session():
    rec = real_terminate_session()
    rec["eventName"] = "ResumeSession"
    assert flatten_cloudtrail(rec)["sessionid"] == rec["responseElements"]["sessionId"]


@pytest.mark.parametrize(
    "change",
    [
        {"eventSource": "ec2.amazonaws.com"},  # sessionId present, but not Session Manager
        {"eventName": "SendCommand"},
        {"eventSource": None},
        {"responseElements": {"sessionId": 123}, "requestParameters": None},
    ],
)
def test_no_sessionid(change):
    rec = real_terminate_session()
    rec.update(change)
    assert flatten_cloudtrail(rec)["sessionid"] is None


# --------------------------------------------------------------------------- filter rule


ROW_SSM = {"eventsource": "ssm.amazonaws.com", "eventname": "DescribeInstanceInformation"}
ROW_EC2 = {"eventsource": "ec2.amazonaws.com", "eventname": "DescribeInstances"}
ROW_NONE = {"eventsource": None, "eventname": None}


@pytest.mark.parametrize(
    "config, row, rule",
    [
        ({}, ROW_SSM, None),
        ({"event_sources": {"deny": ["ssm.amazonaws.com"]}}, ROW_SSM, "event_sources"),
        ({"event_sources": {"deny": ["ssm.amazonaws.com"]}}, ROW_EC2, None),
        ({"event_sources": {"allow": ["ec2.amazonaws.com"]}}, ROW_SSM, "event_sources"),
        ({"event_sources": {"allow": ["ec2.amazonaws.com"]}}, ROW_EC2, None),
        ({"event_names": {"deny": ["DescribeInstanceInformation"]}}, ROW_SSM, "event_names"),
        ({"event_names": {"deny": ["DescribeInstanceInformation"]}}, ROW_EC2, None),
        ({"event_names": {"allow": ["StartSession"]}}, ROW_SSM, "event_names"),
        ({"event_names": {"allow": ["DescribeInstances"], "deny": ["DescribeInstances"]}}, ROW_EC2, "event_names"),
        # both rules would drop it: the source rule is reported
        (
            {"event_sources": {"deny": ["ssm.amazonaws.com"]}, "event_names": {"deny": [ROW_SSM["eventname"]]}},
            ROW_SSM,
            "event_sources",
        ),
        ({"event_sources": {"allow": ["ssm.amazonaws.com"]}}, ROW_NONE, "event_sources"),
        ({"event_names": {"deny": ["X"]}}, ROW_NONE, None),
        # exact names only
        ({"event_names": {"deny": ["Describe"]}}, ROW_EC2, None),
    ],
)
def test_cloudtrail_filter_rule(config, row, rule):
    assert cloudtrail_filter_rule(row, filters(**config)) == rule


def test_filter_rule_on_flattened_real_rows():
    f = filters(event_sources={"allow": ["ssm.amazonaws.com"]}, event_names={"deny": ["StartSession"]})
    got = [cloudtrail_filter_rule(flatten_cloudtrail(r), f) for r in STRATUS]
    expected = [
        "event_sources" if r["eventSource"] != "ssm.amazonaws.com" else
        "event_names" if r["eventName"] == "StartSession" else None
        for r in STRATUS
    ]
    assert got == expected


# --------------------------------------------------------------------------- process_cloudtrail


def assert_counts_identity(result: sources.FileResult) -> None:
    # Record-level problems are the ones whose record was counted in records_read.
    record_level = [p for p in result.problems if p.record]
    assert all(p.index is not None for p in record_level)
    assert result.records_read == len(result.rows) + sum(result.filtered.values()) + len(record_level)


def test_process_real_stratus_with_event_name_filter():
    denied = [r for r in STRATUS if r["eventName"] == "DescribeInstanceInformation"]
    kept = [r for r in STRATUS if r["eventName"] != "DescribeInstanceInformation"]
    assert denied and kept
    source_file = "s3://trail-bucket/AWSLogs/123456789012/CloudTrail/us-east-1/2024/07/30/f.json.gz"
    result = process_cloudtrail(
        STRATUS_GZ.read_bytes(), source_file, filters(event_names={"deny": ["DescribeInstanceInformation"]})
    )
    assert result.records_read == len(STRATUS)
    assert result.filtered == {"event_names": len(denied)}
    assert result.problems == []
    assert len(result.rows) == len(kept)
    assert [r["eventid"] for r in result.rows] == [r["eventID"] for r in kept]
    assert all(r["source_file"] == source_file for r in result.rows)
    assert all(set(r) == COLUMNS for r in result.rows)
    assert_counts_identity(result)


def test_process_real_elastic_without_filters():
    result = process_cloudtrail(ELASTIC_GZ.read_bytes(), "file:///x.json.gz", FiltersConfig())
    assert (result.records_read, len(result.rows), result.filtered, result.problems) == (len(ELASTIC), 26, {}, [])
    assert [r["eventid"] for r in result.rows] == [r["eventID"] for r in ELASTIC]
    assert_counts_identity(result)


def test_process_mixed_file_counts():
    records = (
        STRATUS[:40]
        + ["not a record", None]
        + [{k: v for k, v in STRATUS[40].items() if k != "eventID"}]
        + [real_bad_time_record()]
        + OTRF[:3]
        + ELASTIC
    )
    f = filters(event_sources={"deny": ["ec2.amazonaws.com"]}, event_names={"deny": ["AssumeRole"]})
    result = process_cloudtrail(gz_json({"Records": records}), "src", f)

    valid = [r for r in records if isinstance(r, dict) and r.get("eventID") and r.get("eventTime")
             and ": " not in r["eventTime"]]
    by_source = [r for r in valid if r["eventSource"] == "ec2.amazonaws.com"]
    by_name = [r for r in valid if r["eventSource"] != "ec2.amazonaws.com" and r["eventName"] == "AssumeRole"]
    assert by_source and by_name
    assert result.records_read == len(records)
    assert result.filtered == {"event_sources": len(by_source), "event_names": len(by_name)}
    assert len(result.rows) == len(valid) - len(by_source) - len(by_name)
    assert [(p.reason, p.index) for p in result.problems] == [
        (transforms.RECORD_NOT_OBJECT, 40),
        (transforms.RECORD_NOT_OBJECT, 41),
        (transforms.MISSING_EVENT_ID, 42),
        (transforms.BAD_EVENT_TIME, 43),
        (transforms.MISSING_EVENT_TIME, 44),
        (transforms.MISSING_EVENT_TIME, 45),
        (transforms.MISSING_EVENT_TIME, 46),
    ]
    assert all(r["source_file"] == "src" for r in result.rows)
    assert_counts_identity(result)


@pytest.mark.parametrize(
    "data, reason",
    [
        (STRATUS_GZ.read_bytes()[:20_000], transforms.TRUNCATED_GZIP),
        (b"", transforms.EMPTY_OBJECT),
        (b"not gzip", transforms.NOT_GZIP),
        (gz_json({"nope": []}), transforms.NO_RECORDS),
        (gzip.compress(b"{"), transforms.MALFORMED_JSON),
    ],
    ids=lambda v: v if isinstance(v, str) else "data",  # not the gzip bytes: their header holds the time
)
def test_process_file_level_problem(data, reason):
    result = process_cloudtrail(data, "src", FiltersConfig())
    # Complete records before a break are kept (the truncated real file has some).
    salvaged = len(result.rows)
    assert result.records_read == salvaged and result.filtered == {}
    assert (salvaged > 0) == (reason == transforms.TRUNCATED_GZIP)
    assert [p.reason for p in result.problems] == [reason]
    assert result.problems[0].index in (None, salvaged)
    assert result.problems[0].record is False  # a file-level problem, not a counted record
    assert_counts_identity(result)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_equivalent_in_range_is_none_not_an_overflow(value):
    assert transforms.parse_time(value) is None



@pytest.mark.parametrize(("text", "expected"), [
    (rb'{"a": "x\ud83d"}', {"a": "x\ufffd"}),  # a high half alone
    (rb'{"\udc00": ["\ud83d\ude00", "\ude00"]}', {"\ufffd": ["\U0001f600", "\ufffd"]}),  # keys; a pair is kept
    (rb'{"n": 100000000000000000000, "a": "\ud83d"}', {"n": 10**20, "a": "\ufffd"}),  # the big-integer path
    (rb'{"a": "\\ud83d"}', {"a": "\\ud83d"}),  # an escaped backslash: plain text, not an escape
])
def test_loads_reads_a_lone_surrogate_escape_as_u_fffd(text, expected):
    doc = transforms.loads(text)
    assert doc == expected
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # encodable


def test_loads_still_rejects_malformed_json():
    with pytest.raises(ValueError):
        transforms.loads(b'{"a": "\\ud83d')


@pytest.mark.parametrize("text", [
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # orjson's depth limit
    b'{"n": 100000000000000000000, "a": ' + b"[" * 50000 + b"]" * 50000 + b"}",  # Python's, on the big-int path
])
def test_loads_gives_json_nested_too_deeply_as_a_value_error(text):
    with pytest.raises(ValueError):
        transforms.loads(text)


@pytest.mark.parametrize("big", [False, True])
def test_invalid_utf8_keeps_the_records_before_the_bad_byte(big):
    """On both parsers' paths (orjson's; Python's, taken for a 20-digit integer), the
    complete records before an invalid byte are kept, as for any other break."""
    first = dict(STRATUS[0], additionalEventData={"n": 10**20}) if big else STRATUS[0]
    text = json.dumps({"Records": [first, STRATUS[1], {**STRATUS[2], "userAgent": "Gr\u00fc\u00dfe"}]},
                      ensure_ascii=False)
    records, problem = decode_cloudtrail(gzip.compress(text.encode("latin-1")))
    assert records == [first, STRATUS[1]] and problem.reason == transforms.INVALID_UTF8
    assert "Gr" in problem.payload and problem.index == 2


def test_lone_surrogates_are_replaced_however_deep_the_document():
    """The walk was a recursion: a document the parser accepts (deep, with a lone
    surrogate) exhausted the stack there and the whole object failed (review finding)."""
    deep: list = ["x\ud83d"]
    for _ in range(5000):
        deep = [deep]
    doc = transforms.without_lone_surrogates({"k\udc00": deep, "n": 1})
    inner = doc["k\ufffd"]
    for _ in range(5000):
        inner = inner[0]
    assert inner == ["x\ufffd"] and doc["n"] == 1

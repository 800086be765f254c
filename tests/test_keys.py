"""S3 key layouts (loglake.keys): pure unit tests, no AWS and no Spark.

Keys are written by hand in the documented CloudTrail layouts::

    [prefix/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE.json.gz
    [prefix/]AWSLogs/o-ORGID/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE.json.gz
"""
from __future__ import annotations

import pytest

from loglake import keys
from loglake.config import config_from_dict
from loglake.keys import KeyResult, count_reasons
from loglake.sources.cloudtrail import classify_cloudtrail_key, parse_cloudtrail_key

ACCT = "123456789012"
ORG = "o-a1b2c3d4e5"
DAY = ("2024", "01", "31")
FILE = f"{ACCT}_CloudTrail_us-east-1_20240131T2355Z_AbCdEfGhIjKlMnOp.json.gz"


def ct_key(
    prefix: str = "",
    org: str | None = None,
    account: str = ACCT,
    service: str = "CloudTrail",
    region: str = "us-east-1",
    day: tuple[str, str, str] = DAY,
    name: str = FILE,
) -> str:
    org_part = f"{org}/" if org else ""
    return f"{prefix}AWSLogs/{org_part}{account}/{service}/{region}/{'/'.join(day)}/{name}"


def expected_raw_dir(prefix: str, org: str | None, account: str, region: str, day: tuple[str, str, str]) -> str:
    org_part = f"{org}/" if org else ""
    return f"{prefix}AWSLogs/{org_part}{account}/CloudTrail/{region}/{'/'.join(day)}/"


# --------------------------------------------------------------------------- valid keys


@pytest.mark.parametrize("prefix", ["", "trail/", "a/b/c/", "logs/cloudtrail/2024/", "AWSLogs/", "with space/"])
@pytest.mark.parametrize("org", [None, ORG, "o-" + "z" * 32])
def test_valid_key_partition_and_raw_dir(prefix, org):
    key = ct_key(prefix=prefix, org=org)
    result = parse_cloudtrail_key(key)
    assert result.ok, result
    assert result.status == keys.OK
    assert result.key == key
    assert result.reason == ""
    assert result.partition.values == (org or "none", ACCT, "us-east-1", "2024-01-31")
    assert result.partition.raw_dir == expected_raw_dir(prefix, org, ACCT, "us-east-1", DAY)
    assert key.startswith(result.partition.raw_dir)


def test_account_trail_org_is_none_constant():
    assert keys.NO_ORG == "none"
    assert parse_cloudtrail_key(ct_key()).partition.values[0] == "none"


@pytest.mark.parametrize(
    "region",
    # Anonymised shapes of the published samples, and real regions of unusual shape.
    [
        "me-northwest-3r",
        "eu-west-2r",
        "us-gov-east-1",
        "ap-southeast-3",
        "us-east-1",
        "cn-north-1",
        "il-central-1",
        "us-isob-east-1",
        "eu-isoe-west-1",
    ],
)
def test_region_shapes_that_must_pass(region):
    result = parse_cloudtrail_key(ct_key(region=region, org=ORG))
    assert result.ok, result
    assert result.partition.values[2] == region


@pytest.mark.parametrize(
    "day, iso",
    [
        (("2024", "02", "29"), "2024-02-29"),  # leap day
        (("2000", "02", "29"), "2000-02-29"),
        (("2023", "12", "31"), "2023-12-31"),
        (("1999", "01", "01"), "1999-01-01"),
    ],
)
def test_dt_is_the_iso_delivery_date(day, iso):
    result = parse_cloudtrail_key(ct_key(day=day))
    assert result.ok
    assert result.partition.values[3] == iso
    assert result.partition.raw_dir.endswith("/" + "/".join(day) + "/")


# --------------------------------------------------------------------------- skipped keys


@pytest.mark.parametrize(
    "key, reason",
    [
        # folder markers (console "create folder", some sync tools)
        ("AWSLogs/", keys.FOLDER_MARKER),
        (f"AWSLogs/{ACCT}/CloudTrail/us-east-1/2024/01/31/", keys.FOLDER_MARKER),
        ("trail/AWSLogs/", keys.FOLDER_MARKER),
        # digest files
        (
            ct_key(
                service="CloudTrail-Digest",
                name=f"{ACCT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20240131T235512Z.json.gz",
            ),
            keys.DIGEST,
        ),
        (ct_key(prefix="p/q/", org=ORG, service="CloudTrail-Digest"), keys.DIGEST),
        # insights, not asked for
        (
            ct_key(service="CloudTrail-Insight", name=f"{ACCT}_CloudTrail-Insight_us-east-1_20240131T2355Z_x.json.gz"),
            keys.INSIGHT,
        ),
        (ct_key(prefix="trail/", org=ORG, service="CloudTrail-Insight"), keys.INSIGHT),
        # the object CloudTrail/Config write to check bucket permissions
        (f"AWSLogs/{ACCT}/CloudTrail/ConfigWritabilityCheckFile", keys.CONFIG_WRITABILITY_CHECK),
        (f"trail/AWSLogs/{ACCT}/Config/ConfigWritabilityCheckFile", keys.CONFIG_WRITABILITY_CHECK),
        # other services sharing the bucket
        (ct_key(service="vpcflowlogs", name=f"{ACCT}_vpcflowlogs_us-east-1_fl-0a1b_20240131T2355Z_h.log.gz"),
         keys.OTHER_SERVICE),
        (ct_key(org=ORG, service="vpcflowlogs", name="x.log.gz"), keys.OTHER_SERVICE),
        (f"AWSLogs/{ACCT}/elasticloadbalancing/us-east-1/2024/01/31/lb/x.log.gz", keys.OTHER_SERVICE),
        (f"AWSLogs/{ACCT}/Config/us-east-1/2024/1/31/ConfigHistory/x.json.gz", keys.OTHER_SERVICE),
        (f"AWSLogs/{ACCT}/GuardDuty/us-east-1/2024/01/31/x.jsonl.gz", keys.OTHER_SERVICE),
    ],
)
def test_skipped_keys(key, reason):
    result = parse_cloudtrail_key(key)
    assert result.status == keys.SKIPPED
    assert result.reason == reason
    assert result.partition is None
    assert not result.ok


@pytest.mark.parametrize(
    "key, service",
    [
        (ct_key(service="vpcflowlogs", name="x.log.gz"), "vpcflowlogs"),
        (f"AWSLogs/{ACCT}/elasticloadbalancing/us-east-1/2024/01/31/lb/x.log.gz", "elasticloadbalancing"),
    ],
)
def test_other_service_detail_names_the_service(key, service):
    assert parse_cloudtrail_key(key).detail == service


@pytest.mark.parametrize("prefix", ["", "trail/", "a/b/"])
@pytest.mark.parametrize("org", [None, ORG])
def test_insights_included_on_request_point_at_the_cloudtrail_sibling(prefix, org):
    key = ct_key(prefix=prefix, org=org, service="CloudTrail-Insight", region="eu-west-2r")
    assert parse_cloudtrail_key(key).reason == keys.INSIGHT
    result = parse_cloudtrail_key(key, include_insights=True)
    assert result.ok, result
    assert result.partition.values == (org or "none", ACCT, "eu-west-2r", "2024-01-31")
    # The partition directory is the CloudTrail/ one, not CloudTrail-Insight/.
    assert result.partition.raw_dir == expected_raw_dir(prefix, org, ACCT, "eu-west-2r", DAY)
    assert "CloudTrail-Insight" not in result.partition.raw_dir


def test_include_insights_does_not_include_digests():
    assert parse_cloudtrail_key(ct_key(service="CloudTrail-Digest"), include_insights=True).reason == keys.DIGEST


# --------------------------------------------------------------------------- error keys


@pytest.mark.parametrize(
    "key, reason",
    [
        # no layout
        (ct_key(name="extra/" + FILE), keys.NO_LAYOUT_MATCH),
        (f"CloudTrail/us-east-1/2024/01/31/{FILE}", keys.NO_LAYOUT_MATCH),
        (f"awslogs/{ACCT}/CloudTrail/us-east-1/2024/01/31/{FILE}", keys.NO_LAYOUT_MATCH),
        (f"AWSLogs/{ACCT}/CloudTrail/us-east-1/2024/01/{FILE}", keys.NO_LAYOUT_MATCH),
        (FILE, keys.NO_LAYOUT_MATCH),
        # account
        (ct_key(account="12345678901"), keys.BAD_ACCOUNT),  # 11 digits
        (ct_key(account="1234567890123"), keys.BAD_ACCOUNT),  # 13 digits
        (ct_key(account="12345678901a"), keys.BAD_ACCOUNT),
        (ct_key(account="abcdefghijkl"), keys.BAD_ACCOUNT),
        (ct_key(account="1234-5678-9012"), keys.BAD_ACCOUNT),
        (ct_key(org=ORG, account="12345678901"), keys.BAD_ACCOUNT),
        # region
        (ct_key(region="US-EAST-1"), keys.BAD_REGION),
        (ct_key(region="us-east"), keys.BAD_REGION),
        (ct_key(region="useast1"), keys.BAD_REGION),
        (ct_key(region="us_east_1"), keys.BAD_REGION),
        (ct_key(region="us-east-123"), keys.BAD_REGION),
        (ct_key(region="global"), keys.BAD_REGION),
        (ct_key(region="u-east-1"), keys.BAD_REGION),
        # date
        (ct_key(day=("2024", "02", "30")), keys.BAD_DATE),
        (ct_key(day=("2023", "02", "29")), keys.BAD_DATE),
        (ct_key(day=("2024", "13", "01")), keys.BAD_DATE),
        (ct_key(day=("2024", "00", "10")), keys.BAD_DATE),
        (ct_key(day=("2024", "01", "32")), keys.BAD_DATE),
        (ct_key(day=("2024", "1", "01")), keys.BAD_DATE),
        (ct_key(day=("2024", "01", "1")), keys.BAD_DATE),
        (ct_key(day=("24", "01", "01")), keys.BAD_DATE),
        (ct_key(day=("2024", "0a", "01")), keys.BAD_DATE),
        (ct_key(day=("2024", "+1", "01")), keys.BAD_DATE),
        # file name
        (ct_key(name="x.json"), keys.NOT_JSON_GZ),
        (ct_key(name="x.gz"), keys.NOT_JSON_GZ),
        (ct_key(name=FILE + ".tmp"), keys.NOT_JSON_GZ),
        (ct_key(name="x.json.bz2"), keys.NOT_JSON_GZ),
        (ct_key(org=ORG, name="x.JSON.GZ"), keys.NOT_JSON_GZ),
    ],
)
def test_error_keys(key, reason):
    result = parse_cloudtrail_key(key)
    assert result.status == keys.ERROR, result
    assert result.reason == reason
    assert result.detail  # errors always say what is wrong
    assert result.partition is None


@pytest.mark.parametrize(
    "key, reason",
    [
        (ct_key(account="١٢٣٤٥٦٧٨٩٠١٢"), keys.BAD_ACCOUNT),  # Arabic-Indic digits
        (ct_key(account=ACCT + "\n"), keys.BAD_ACCOUNT),
        (ct_key(region="us-east-1\n"), keys.BAD_REGION),
        (ct_key(day=("٢٠٢٤", "01", "31")), keys.BAD_DATE),  # str.isdigit() accepts them too
    ],
)
def test_non_ascii_digits_and_newlines_are_errors(key, reason):
    result = parse_cloudtrail_key(key)
    assert (result.status, result.reason) == (keys.ERROR, reason)


@pytest.mark.parametrize("org", ["o-ABCDEFGHIJ", "o-", "o-a1b2c3d4e5_", "o-a.b", "o-ab c"])
def test_malformed_org_id_is_an_error(org):
    result = parse_cloudtrail_key(ct_key(org=org))
    assert (result.status, result.reason) == (keys.ERROR, keys.BAD_ORG), result


# Organization ids are validated by the shape a partition value needs, not by AWS's current
# 10-32 length rule: published samples are anonymised to other lengths (o- and 9 characters).
@pytest.mark.parametrize("org", ["o-x7k2m9q4z", "o-a", "o-" + "9" * 40])
def test_well_shaped_org_id_of_any_length_is_a_partition(org):
    result = parse_cloudtrail_key(ct_key(org=org))
    assert result.ok, result
    assert result.partition.values[0] == org


GARBAGE = [
    "",
    "/",
    "//",
    "AWSLogs",
    "AWSLogs/",
    "AWSLogs/////////",
    f"AWSLogs/{ACCT}",
    f"AWSLogs/{ACCT}/CloudTrail",
    "AWSLogs/" * 50,
    " ",
    "\n",
    "\x00",
    "%2F",
    "ü/AWSLogs/ü",
    "日本語/AWSLogs/アカウント/CloudTrail/東京/2024/01/31/ファイル.json.gz",
    "🙂" * 20,
    "a" * 5000,
    "AWSLogs/o-/CloudTrail/us-east-1/2024/01/31/x.json.gz",
    "AWSLogs/../../etc/passwd",
    "..",
    "\ud800",  # lone surrogate: not even encodable as UTF-8
]


@pytest.mark.parametrize("key", GARBAGE)
@pytest.mark.parametrize("include_insights", [False, True])
def test_garbage_is_a_result_never_an_exception(key, include_insights):
    result = parse_cloudtrail_key(key, include_insights)
    assert isinstance(result, KeyResult)
    assert result.key == key
    assert not result.ok
    assert result.status in (keys.SKIPPED, keys.ERROR)
    assert result.reason


@pytest.mark.parametrize("key", GARBAGE)
def test_garbage_through_classify_is_a_result(key):
    result = classify_cloudtrail_key(key, config_from_dict({}))
    assert isinstance(result, KeyResult)
    assert not result.ok and result.reason


# --------------------------------------------------------------------------- config rules


def cfg(filters=None, include_insights=False):
    return config_from_dict(
        {"sources": {"cloudtrail": {"include_insights": include_insights}}, "filters": filters or {}}
    )


def test_classify_with_default_config_equals_parse():
    for key in (ct_key(), ct_key(prefix="a/", org=ORG), ct_key(service="CloudTrail-Insight"), ct_key(region="x")):
        assert classify_cloudtrail_key(key, cfg()) == parse_cloudtrail_key(key)


def test_classify_include_insights_from_config():
    key = ct_key(service="CloudTrail-Insight")
    assert classify_cloudtrail_key(key, cfg()).reason == keys.INSIGHT
    result = classify_cloudtrail_key(key, cfg(include_insights=True))
    assert result.ok
    assert result.partition.raw_dir == expected_raw_dir("", None, ACCT, "us-east-1", DAY)


@pytest.mark.parametrize(
    "key, patterns, denied_by",
    [
        (ct_key(prefix="test-trail/"), [r"^test-trail/"], r"^test-trail/"),
        (ct_key(), [r"nomatch", r"_us-east-1_2024"], r"_us-east-1_2024"),
        # deny patterns come first: even a key that is an error otherwise
        (ct_key(prefix="tmp/", region="BAD"), [r"^tmp/"], r"^tmp/"),
    ],
)
def test_denied_key_pattern(key, patterns, denied_by):
    result = classify_cloudtrail_key(key, cfg({"key_deny_patterns": patterns}))
    assert (result.status, result.reason, result.detail) == (keys.SKIPPED, keys.DENIED_KEY_PATTERN, denied_by)


def test_key_deny_pattern_uses_search_not_match():
    result = classify_cloudtrail_key(ct_key(prefix="a/b/"), cfg({"key_deny_patterns": ["b/AWSLogs"]}))
    assert result.reason == keys.DENIED_KEY_PATTERN
    assert classify_cloudtrail_key(ct_key(prefix="a/b/"), cfg({"key_deny_patterns": ["^b/"]})).ok


OTHER = "210987654321"


@pytest.mark.parametrize(
    "accounts, account, allowed",
    [
        ({"deny": [ACCT]}, ACCT, False),
        ({"deny": [ACCT]}, OTHER, True),
        ({"allow": [OTHER]}, ACCT, False),
        ({"allow": [ACCT]}, ACCT, True),
        ({"allow": [ACCT], "deny": [ACCT]}, ACCT, False),  # deny wins
    ],
)
@pytest.mark.parametrize("org", [None, ORG])
def test_denied_account(accounts, account, allowed, org):
    result = classify_cloudtrail_key(ct_key(org=org, account=account), cfg({"accounts": accounts}))
    if allowed:
        assert result.ok
        assert result.partition.values[1] == account
    else:
        assert (result.status, result.reason, result.detail) == (keys.SKIPPED, keys.DENIED_ACCOUNT, account)


@pytest.mark.parametrize(
    "regions, region, allowed",
    [
        ({"deny": ["me-northwest-3r"]}, "me-northwest-3r", False),
        ({"deny": ["me-northwest-3r"]}, "eu-west-2r", True),
        ({"allow": ["us-east-1", "eu-west-1"]}, "us-gov-east-1", False),
        ({"allow": ["us-gov-east-1"]}, "us-gov-east-1", True),
        ({"allow": ["ap-southeast-3"], "deny": ["ap-southeast-3"]}, "ap-southeast-3", False),
    ],
)
def test_denied_region(regions, region, allowed):
    result = classify_cloudtrail_key(ct_key(region=region), cfg({"regions": regions}))
    if allowed:
        assert result.ok
        assert result.partition.values[2] == region
    else:
        assert (result.status, result.reason, result.detail) == (keys.SKIPPED, keys.DENIED_REGION, region)


def test_account_rule_is_checked_before_region_rule():
    config = cfg({"accounts": {"deny": [ACCT]}, "regions": {"deny": ["us-east-1"]}})
    assert classify_cloudtrail_key(ct_key(), config).reason == keys.DENIED_ACCOUNT


def test_layout_errors_are_not_hidden_by_filters():
    config = cfg({"accounts": {"deny": [OTHER]}})
    assert classify_cloudtrail_key(ct_key(day=("2024", "02", "30")), config).reason == keys.BAD_DATE
    assert classify_cloudtrail_key(ct_key(service="CloudTrail-Digest"), config).reason == keys.DIGEST


# --------------------------------------------------------------------------- count_reasons


def test_count_reasons():
    batch = [
        ct_key(),
        ct_key(org=ORG),
        ct_key(service="CloudTrail-Digest"),
        ct_key(service="CloudTrail-Digest", region="eu-west-2r"),
        ct_key(service="CloudTrail-Digest", org=ORG),
        "AWSLogs/",
        ct_key(account="1"),
        ct_key(day=("2024", "02", "30")),
        ct_key(day=("2024", "13", "01")),
        "",
    ]
    counts = count_reasons(parse_cloudtrail_key(k) for k in batch)
    assert counts == {
        keys.BAD_ACCOUNT: 1,
        keys.BAD_DATE: 2,
        keys.DIGEST: 3,
        keys.FOLDER_MARKER: 1,
        keys.NO_LAYOUT_MATCH: 1,
    }
    assert list(counts) == sorted(counts)
    assert sum(counts.values()) == len(batch) - 2  # the two ok keys are not counted


def test_count_reasons_empty_and_all_ok():
    assert count_reasons([]) == {}
    assert count_reasons([parse_cloudtrail_key(ct_key()), parse_cloudtrail_key(ct_key(org=ORG))]) == {}

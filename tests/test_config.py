"""Central config (loglake.config): pure unit tests.

Every load passes ``env=`` explicitly so the process environment never leaks in.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from loglake.config import Config, ConfigError, ListFilter, config_from_dict, dump_config, load_config


def write(tmp_path, text: str, name: str = "loglake.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


FULL = """\
sources:
  cloudtrail:
    bucket: org-trail-bucket
    prefix: trails/prod/
    include_insights: true
  cloudwatch:
    bucket: cwl-bucket
catalog:
  database: lake
  tables:
    cloudtrail_raw: ct_raw
filters:
  accounts:
    allow: ["123456789012", "017622104382"]
    deny: ["111111111111"]
  regions:
    deny: [me-northwest-3r]
  event_sources:
    deny: [ssm.amazonaws.com]
  event_names:
    allow: [StartSession, TerminateSession]
  key_deny_patterns: ['/CloudTrail-Digest/', '^tmp/']
readready:
  location: s3://lake-bucket/readready/
aws:
  region: eu-west-1
  endpoint_url: http://127.0.0.1:5000
"""


# --------------------------------------------------------------------------- defaults


def test_defaults():
    config = load_config(env={})
    assert config == Config()
    assert config.table("cloudtrail", "raw") == "from_cloudtrail_raw"
    assert config.table("cloudtrail", "readready") == "from_cloudtrail_readready"
    assert config.table("cloudwatch", "raw") == "from_cloudwatch_raw"
    assert config.table("cloudwatch", "readready") == "from_cloudwatch_readready"
    assert config.catalog.database == "loglake"
    assert config.sources.cloudtrail.bucket == ""
    assert config.sources.cloudtrail.include_insights is False
    assert config.filters.accounts == ListFilter()
    assert config.filters.key_deny_patterns == ()
    assert config.readready.location == ""
    assert config.aws.region is None  # boto3 resolves it (AWS_REGION on Lambda and Glue)
    assert config.aws.endpoint_url is None


def test_config_from_dict_empty_is_defaults():
    assert config_from_dict({}) == Config()


def test_empty_file_is_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), env={}) == Config()


# --------------------------------------------------------------------------- file


def test_load_yaml_file(tmp_path):
    config = load_config(write(tmp_path, FULL), env={})
    assert config.sources.cloudtrail.bucket == "org-trail-bucket"
    assert config.sources.cloudtrail.prefix == "trails/prod/"
    assert config.sources.cloudtrail.include_insights is True
    assert config.source("cloudwatch").bucket == "cwl-bucket"
    assert config.catalog.database == "lake"
    assert config.table("cloudtrail", "raw") == "ct_raw"
    assert config.table("cloudtrail", "readready") == "from_cloudtrail_readready"  # default kept
    assert config.filters.accounts == ListFilter(allow=("123456789012", "017622104382"), deny=("111111111111",))
    assert config.filters.regions.deny == ("me-northwest-3r",)
    assert config.filters.event_sources.deny == ("ssm.amazonaws.com",)
    assert config.filters.event_names.allow == ("StartSession", "TerminateSession")
    assert config.filters.key_deny_patterns == ("/CloudTrail-Digest/", "^tmp/")
    assert config.readready.location == "s3://lake-bucket/readready/"
    assert config.aws.region == "eu-west-1"
    assert config.aws.endpoint_url == "http://127.0.0.1:5000"


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, FULL), env={})
    with pytest.raises(AttributeError):
        config.catalog.database = "other"


def test_loglake_config_env_var_picks_the_file(tmp_path):
    path = write(tmp_path, "catalog:\n  database: from_env_file\n")
    assert load_config(env={"LOGLAKE_CONFIG": path}).catalog.database == "from_env_file"


def test_explicit_path_beats_loglake_config(tmp_path):
    a = write(tmp_path, "catalog:\n  database: a\n", "a.yaml")
    b = write(tmp_path, "catalog:\n  database: b\n", "b.yaml")
    assert load_config(a, env={"LOGLAKE_CONFIG": b}).catalog.database == "a"


def test_file_url_path(tmp_path):
    path = write(tmp_path, "catalog:\n  database: via_url\n")
    assert load_config("file://" + path, env={}).catalog.database == "via_url"


def test_unquoted_account_ids_in_yaml(tmp_path):
    # YAML 1.1: 123456789012 is an int (kept as its digits); 017622104382 is not a valid
    # octal (it has an 8), so PyYAML reads it as the string it is.
    path = write(tmp_path, "filters:\n  accounts:\n    deny: [123456789012, 017622104382]\n")
    assert yaml.safe_load(open(path))["filters"]["accounts"]["deny"] == [123456789012, "017622104382"]
    assert load_config(path, env={}).filters.accounts.deny == ("123456789012", "017622104382")


def test_unquoted_octal_looking_account_id_is_rejected_with_a_hint(tmp_path):
    # 012345670123 only has octal digits: YAML reads the int 1402433619, silently another number.
    path = write(tmp_path, "filters:\n  accounts:\n    allow: [012345670123]\n")
    assert yaml.safe_load(open(path))["filters"]["accounts"]["allow"] == [0o12345670123]
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    msg = str(exc.value)
    assert "filters.accounts.allow" in msg
    assert "quote" in msg


def test_quoted_account_id_with_leading_zero_is_kept(tmp_path):
    path = write(tmp_path, "filters:\n  accounts:\n    allow: ['012345670123']\n")
    assert load_config(path, env={}).filters.accounts.allow == ("012345670123",)


# --------------------------------------------------------------------------- environment


def test_env_overrides():
    env = {
        "LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET": "trail-bucket",
        "LOGLAKE__FILTERS__ACCOUNTS__DENY": "111111111111,222222222222",
        "LOGLAKE__AWS__ENDPOINT_URL": "http://127.0.0.1:5000",
        "LOGLAKE__SOURCES__CLOUDTRAIL__INCLUDE_INSIGHTS": "true",
        "LOGLAKE__FILTERS__REGIONS__ALLOW": "us-east-1, eu-west-2r ,",
        "LOGLAKE__CATALOG__TABLES__CLOUDWATCH_RAW": "cw_raw",
        "UNRELATED": "ignored",
        "LOGLAKE_SOMETHING": "ignored too (single underscore)",
    }
    config = load_config(env=env)
    assert config.sources.cloudtrail.bucket == "trail-bucket"
    assert config.filters.accounts.deny == ("111111111111", "222222222222")
    assert config.aws.endpoint_url == "http://127.0.0.1:5000"
    assert config.sources.cloudtrail.include_insights is True
    assert config.filters.regions.allow == ("us-east-1", "eu-west-2r")
    assert config.table("cloudwatch", "raw") == "cw_raw"


def test_env_single_non_numeric_list_item():
    env = {"LOGLAKE__FILTERS__EVENT_NAMES__DENY": "DescribeInstanceInformation"}
    assert load_config(env=env).filters.event_names.deny == ("DescribeInstanceInformation",)


@pytest.mark.parametrize(
    "var, value, get",
    [
        ("LOGLAKE__FILTERS__ACCOUNTS__ALLOW", "123456789012", lambda c: c.filters.accounts.allow),
        ("LOGLAKE__FILTERS__KEY_DENY_PATTERNS", "2024", lambda c: c.filters.key_deny_patterns),
    ],
)
def test_env_single_numeric_list_item(var, value, get):
    assert get(load_config(env={var: value})) == (value,)


def test_env_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"filters\.acounts"):
        load_config(env={"LOGLAKE__FILTERS__ACOUNTS__DENY": "111111111111"})


def test_precedence_file_env_overrides(tmp_path):
    path = write(
        tmp_path,
        """\
        sources:
          cloudtrail:
            bucket: from-file
            prefix: file-prefix/
        catalog:
          database: file_db
        aws:
          region: eu-west-1
        """,
    )
    env = {
        "LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET": "from-env",
        "LOGLAKE__CATALOG__DATABASE": "env_db",
    }
    overrides = {"catalog": {"database": "override_db"}}
    config = load_config(path, env=env, overrides=overrides)
    assert config.sources.cloudtrail.bucket == "from-env"  # env beats file
    assert config.catalog.database == "override_db"  # overrides beat env
    assert config.sources.cloudtrail.prefix == "file-prefix/"  # untouched file values survive
    assert config.aws.region == "eu-west-1"
    assert config.catalog.tables.cloudtrail_raw == "from_cloudtrail_raw"  # defaults fill the rest


def test_overrides_merge_nested_dicts(tmp_path):
    path = write(tmp_path, "filters:\n  accounts:\n    deny: ['111111111111']\n")
    config = load_config(path, env={}, overrides={"filters": {"accounts": {"allow": ["222222222222"]}}})
    assert config.filters.accounts == ListFilter(allow=("222222222222",), deny=("111111111111",))


def test_env_applies_over_an_empty_section_with_overrides(tmp_path):
    path = write(tmp_path, "filters:\n")
    config = load_config(path, env={}, overrides={"filters": {"accounts": {"deny": ["111111111111"]}}})
    assert config.filters.accounts.deny == ("111111111111",)


def test_env_override_below_an_empty_section(tmp_path):
    path = write(tmp_path, "sources:\n")
    assert load_config(path, env={}) == Config()
    config = load_config(path, env={"LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET": "trail-bucket"})
    assert config.sources.cloudtrail.bucket == "trail-bucket"


@pytest.mark.parametrize("value", ["*.tmp", "[a-z]+/tmp/"])
def test_env_value_that_is_not_yaml_is_a_config_error(value):
    try:
        load_config(env={"LOGLAKE__FILTERS__KEY_DENY_PATTERNS": value})
    except ConfigError as exc:
        assert "key_deny_patterns" in str(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is the bug
        pytest.fail(f"raised {type(exc).__name__}, not ConfigError: {exc}")
    # Loading successfully (taking the value as the string it is) would be fine too.


def test_env_invalid_value_fails_like_file():
    with pytest.raises(ConfigError, match=r"filters\.accounts\.deny"):
        load_config(env={"LOGLAKE__FILTERS__ACCOUNTS__DENY": "111111111111,12345"})


# --------------------------------------------------------------------------- wrong configs


@pytest.mark.parametrize(
    "text, names",
    [
        # unknown keys
        ("filters:\n  acounts:\n    deny: ['111111111111']\n", "filters.acounts"),
        ("sources:\n  cloudtrial:\n    bucket: b\n", "sources.cloudtrial"),
        ("catalogue:\n  database: x\n", "catalogue"),
        ("filters:\n  accounts:\n    denny: ['111111111111']\n", "filters.accounts.denny"),
        # wrong types
        ("sources:\n  cloudtrail:\n    bucket: true\n", "sources.cloudtrail.bucket"),
        ("sources:\n  cloudtrail:\n    bucket: [a, b]\n", "sources.cloudtrail.bucket"),
        ("sources:\n  cloudtrail:\n    include_insights: 'true'\n", "sources.cloudtrail.include_insights"),
        ("sources:\n  cloudtrail:\n    include_insights: 1\n", "sources.cloudtrail.include_insights"),
        ("filters:\n  accounts: '111111111111'\n", "filters.accounts"),
        ("filters:\n  accounts:\n    deny: [true]\n", "filters.accounts.deny"),
        ("filters:\n  event_names:\n    allow: {a: 1}\n", "filters.event_names.allow"),
        ("filters:\n  event_names:\n    allow: [[a]]\n", "filters.event_names.allow"),
        ("filters:\n  regions:\n    deny: [no]\n", "filters.regions.deny"),  # YAML 1.1: no -> False
        ("catalog: lake\n", "catalog"),
        ("aws:\n  endpoint_url: [x]\n", "aws.endpoint_url"),
        # bad accounts
        ("filters:\n  accounts:\n    deny: ['11111111111']\n", "filters.accounts.deny"),
        ("filters:\n  accounts:\n    allow: ['12345678901a']\n", "filters.accounts.allow"),
        ("filters:\n  accounts:\n    allow: ['1234-5678-9012']\n", "filters.accounts.allow"),
        # bad regions
        ("filters:\n  regions:\n    allow: [US-EAST-1]\n", "filters.regions.allow"),
        ("filters:\n  regions:\n    deny: [global]\n", "filters.regions.deny"),
        # invalid regexes, by index
        ("filters:\n  key_deny_patterns: ['(unclosed']\n", "filters.key_deny_patterns[0]"),
        ("filters:\n  key_deny_patterns: ['ok', '[z-a]']\n", "filters.key_deny_patterns[1]"),
        # locations and buckets
        ("readready:\n  location: relative/path\n", "readready.location"),
        ("readready:\n  location: s3a://bucket/x\n", "readready.location"),
        ("readready:\n  location: hdfs://nn/x\n", "readready.location"),
        ("sources:\n  cloudtrail:\n    bucket: s3://trail-bucket\n", "sources.cloudtrail.bucket"),
        ("sources:\n  cloudwatch:\n    bucket: bucket/prefix\n", "sources.cloudwatch.bucket"),
        ("sources:\n  cloudtrail:\n    prefix: /AWSLogs\n", "sources.cloudtrail.prefix"),
        ("catalog:\n  tables:\n    cloudtrail_raw: Bad-Name\n", "catalog.tables.cloudtrail_raw"),
        # convert
        ("convert:\n  read_ahead_bytes: -1\n", "convert.read_ahead_bytes"),
        ("convert:\n  read_ahead_bytes: 256MB\n", "convert.read_ahead_bytes"),
        ("convert:\n  read_ahead_bytes: 1.5\n", "convert.read_ahead_bytes"),
    ],
)
def test_wrong_config_fails_at_load_naming_the_key(tmp_path, text, names):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert names in str(exc.value)


@pytest.mark.parametrize(
    "data, names",
    [
        ({"filters": {"acounts": {}}}, "filters.acounts"),
        ({"sources": {"cloudtrail": {"include_insights": "false"}}}, "sources.cloudtrail.include_insights"),
        ({"filters": {"key_deny_patterns": ["a", "b", "*x"]}}, "filters.key_deny_patterns[2]"),
        ({"filters": {"accounts": {"allow": [1402433619]}}}, "filters.accounts.allow"),
    ],
)
def test_config_from_dict_validates_too(data, names):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    assert names in str(exc.value)


def test_unknown_key_message_lists_known_keys(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "filters:\n  acounts: {}\n"), env={})
    assert "accounts" in str(exc.value).split("known here:")[1]


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as exc:
        load_config(missing, env={})
    assert missing in str(exc.value)
    with pytest.raises(ConfigError):
        load_config(env={"LOGLAKE_CONFIG": missing})


@pytest.mark.parametrize("text", ["a: [unclosed\n", "- just\n- a list\n", "plain string\n"])
def test_file_that_is_not_a_yaml_mapping(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert path in str(exc.value)


def test_valid_locations():
    for loc in ("s3://bucket/prefix", "file:///tmp/lake", "/abs/path"):
        assert config_from_dict({"readready": {"location": loc}}).readready.location == loc


# --------------------------------------------------------------------------- ListFilter


@pytest.mark.parametrize(
    "allow, deny, value, expected",
    [
        ((), (), "anything", True),  # empty allow = all
        ((), (), None, True),
        ((), ("a",), "a", False),
        ((), ("a",), "b", True),
        (("a",), (), "a", True),
        (("a",), (), "b", False),
        (("a",), (), None, False),
        (("a", "b"), ("b",), "b", False),  # deny wins
        (("a", "b"), ("b",), "a", True),
        (("a",), (), "A", False),  # exact, case-sensitive
        (("a",), (), "ab", False),  # not a substring match
    ],
)
def test_list_filter_allows(allow, deny, value, expected):
    assert ListFilter(allow=allow, deny=deny).allows(value) is expected


# --------------------------------------------------------------------------- dump


def test_dump_config_round_trip(tmp_path):
    config = load_config(write(tmp_path, FULL), env={}, overrides={"filters": {"accounts": {"deny": ["012345670123"]}}})
    text = dump_config(config)
    assert isinstance(yaml.safe_load(text), dict)
    reloaded = load_config(write(tmp_path, text, "dumped.yaml"), env={})
    assert reloaded.to_dict() == config.to_dict()
    assert reloaded == config
    # the leading-zero id survives as a string, not an octal int
    assert reloaded.filters.accounts.deny == ("012345670123",)


def test_dump_defaults_round_trip(tmp_path):
    config = load_config(env={})
    reloaded = load_config(write(tmp_path, dump_config(config)), env={})
    assert reloaded == config == Config()


def test_to_dict_is_plain():
    data = load_config(env={}, overrides={"filters": {"accounts": {"deny": ["111111111111"]}}}).to_dict()
    assert data["filters"]["accounts"] == {"allow": [], "deny": ["111111111111"]}
    assert data["catalog"]["tables"]["cloudtrail_raw"] == "from_cloudtrail_raw"
    assert data["aws"]["endpoint_url"] is None


# --------------------------------------------------------------------------- convert, and every key documented


def test_convert_read_ahead_bytes_default_file_and_env(tmp_path):
    assert Config().convert.read_ahead_bytes == 256 << 20 == 268435456
    path = write(tmp_path, "convert:\n  read_ahead_bytes: 1000\n")
    assert load_config(path, env={}).convert.read_ahead_bytes == 1000
    env = {"LOGLAKE__CONVERT__READ_AHEAD_BYTES": "64"}
    assert load_config(path, env=env).convert.read_ahead_bytes == 64


REPO = Path(__file__).resolve().parent.parent


def _key_paths(data: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        paths.add(prefix + key)
        if isinstance(value, dict):
            paths |= _key_paths(value, f"{prefix}{key}.")
    return paths


def test_the_example_file_shows_every_key_with_its_default():
    """loglake.example.yaml is the reference of the configuration: every key of Config,
    each with the default value except the two marked as examples."""
    example = REPO / "loglake.example.yaml"
    assert _key_paths(yaml.safe_load(example.read_text())) == _key_paths(Config().to_dict())
    loaded = load_config(str(example), env={}).to_dict()
    assert loaded["sources"]["cloudtrail"].pop("bucket") and loaded["readready"].pop("location")  # the examples
    defaults = Config().to_dict()
    del defaults["sources"]["cloudtrail"]["bucket"], defaults["readready"]["location"]
    assert loaded == defaults


def test_the_readme_configuration_section_names_every_section_and_key():
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    for name, value in Config().to_dict().items():
        assert f"`{name}`" in section, name
        if name in ("quality", "scheduled", "convert", "aws"):  # sections whose keys it lists
            for key in value:
                assert f"`{key}`" in section, f"{name}.{key}"


def test_a_runs_own_bounds_replace_the_configs_and_zero_lifts_one():
    """`run --max-files 0` (or the Glue job's `--max_files 0`) used to keep the config's
    bound: `0 or config` is the config's."""
    from loglake.config import with_run_bounds

    bounded = config_from_dict({"scheduled": {"max_files": 500, "max_partitions": 20}})
    assert with_run_bounds(bounded) is bounded
    lifted = with_run_bounds(bounded, max_files=0)
    assert (lifted.scheduled.max_files, lifted.scheduled.max_partitions) == (0, 20)
    from_job = with_run_bounds(bounded, max_partitions="3", max_files="")  # Glue job arguments are strings
    assert (from_job.scheduled.max_files, from_job.scheduled.max_partitions) == (500, 3)
    for bad in (-1, "ten", "1.5"):
        with pytest.raises(ConfigError, match="max_files must be a whole number >= 0"):
            with_run_bounds(bounded, max_files=bad)

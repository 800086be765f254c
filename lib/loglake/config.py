"""One central config, read by the Lambda, every job and the CLI.

A YAML file (local path or s3:// URI) plus environment overrides, loaded once into
a frozen, validated dataclass. A wrong config fails at load time with a message
that names the offending key, because a typo in a filter list must never silently
widen or empty a data lake.

Environment overrides use the key path in upper case, joined by double
underscores and prefixed with ``LOGLAKE__``::

    LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET=my-trail-bucket
    LOGLAKE__FILTERS__ACCOUNTS__DENY=111111111111,222222222222
    LOGLAKE__AWS__ENDPOINT_URL=http://127.0.0.1:5000

Environment values are taken as the strings they are (never parsed as YAML, so a
regex or an account id survives intact): lists are comma separated, booleans are
``true``/``false``, and ``null`` or an empty value clears an optional setting.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from loglake.redact import RedactionConfig, check_patterns
from loglake.shapes import ACCOUNT_RE, REGION_RE
from loglake.sources import REGISTRY, SOURCES
from loglake.sources.base import SourceConfig
from loglake.sources.cloudwatch import SSM_SESSION_LOG_GROUP  # filters.log_groups' default

ENV_PREFIX = "LOGLAKE__"
CONFIG_ENV = "LOGLAKE_CONFIG"



class _FromEnv(str):
    """A value that came from the environment, where everything is a string."""


class ConfigError(ValueError):
    """The config is wrong; the message names the key."""


@dataclass(frozen=True)
class ListFilter:
    """Allow/deny list. An empty allow list allows everything; deny always wins."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def allows(self, value: str | None) -> bool:
        if value in self.deny:
            return False
        return not self.allow or value in self.allow


# One section per source (``sources.<name>``), of the class its module declares; one
# table name per source and stage (``catalog.tables.<name>_raw``, ``<name>_readready``).
SourcesConfig = dataclasses.make_dataclass(
    "SourcesConfig", [(s.name, s.config_class, field(default_factory=s.config_class)) for s in REGISTRY],
    frozen=True)
SourcesConfig.__module__ = __name__
SourcesConfig.__doc__ = "Each registered source's section (loglake.sources.REGISTRY)."

TablesConfig = dataclasses.make_dataclass(
    "TablesConfig",
    [*((f"{s.name}_{stage}", str, field(default=name)) for s in REGISTRY for stage, name in s.tables.items()),
     ("quarantine", str, field(default="quarantine")), ("runs", str, field(default="runs"))],
    frozen=True)
TablesConfig.__module__ = __name__
TablesConfig.__doc__ = "Catalog table names: each source's raw and readready tables, then the shared ones."


@dataclass(frozen=True)
class CatalogConfig:
    database: str = "loglake"
    tables: TablesConfig = field(default_factory=TablesConfig)


@dataclass(frozen=True)
class FiltersConfig:
    accounts: ListFilter = field(default_factory=ListFilter)
    regions: ListFilter = field(default_factory=ListFilter)
    event_sources: ListFilter = field(default_factory=ListFilter)
    event_names: ListFilter = field(default_factory=ListFilter)
    # CloudWatch Logs: which log groups reach readready (default: Session Manager only).
    log_groups: ListFilter = field(default_factory=lambda: ListFilter(allow=(SSM_SESSION_LOG_GROUP,)))
    # Regular expressions matched (re.search) against the decoded object key.
    key_deny_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadreadyConfig:
    # Where readready tables are written: s3://bucket/prefix on AWS, file:///path locally.
    location: str = ""


@dataclass(frozen=True)
class QualityConfig:
    # A record bigger than this (flattened text) is quarantined, not published: Athena and
    # most ORC readers handle huge strings badly, and real CloudTrail has such records.
    max_record_bytes: int = 1 << 20
    # Quarantine keeps the raw payload up to this size, plus the original size.
    max_payload_bytes: int = 64 << 10
    # Run the great-expectations gate before publishing.
    expectations: bool = True


@dataclass(frozen=True)
class ScheduledConfig:
    """Runs with no selection process what is new since the last published run."""

    # No longer used: scheduled runs take the objects no run has converted (the inbox, or a
    # listing above the watermark), whatever their day. Kept so that existing configs load.
    lookback_days: int = 3
    # Listing mode: the watermark is set this far behind the newest object seen, so an
    # object whose upload started earlier but finished later is still picked up (objects
    # seen again are skipped: their partition's manifest holds them).
    overlap_seconds: int = 300
    # A run holds a lock object; a lock older than this is taken over (a crashed run).
    lock_ttl_seconds: int = 7200
    # Bounds per run (0 = none): a backlog drains over several runs. Files are bounded by
    # default: a run killed by the job's timeout is resumed with the same input by the
    # next run, so an unbounded first run after a backfill (every existing object in the
    # inbox) that takes longer than the timeout would be killed and resumed for ever.
    # 250,000 files take minutes (the benchmark converts ~1,100 a second on 2 cores).
    max_partitions: int = 0
    max_files: int = 250_000


@dataclass(frozen=True)
class CompactionConfig:
    """Merging a closed partition's files into one sorted, deduplicated file."""

    # A partition is closed this long after its time range ended (CloudTrail: the day;
    # Firehose: the hour): CloudTrail delivers late and Firehose buffers.
    grace_hours: float = 3.0
    # Files a compaction replaced stay this long, so a query that listed them before the
    # swap can still read them; then the next run of the source removes them.
    retain_minutes: float = 60.0
    # Closed partitions a scheduled run compacts at most (0 = none: only `loglake compact`).
    max_partitions_per_run: int = 500


@dataclass(frozen=True)
class ConvertConfig:
    """The conversion job's executors."""

    # Raw objects a task reads ahead are held in memory until converted: at most this many
    # bytes as stored (gzip, as listed; decompressed text is several times more), so 16
    # Firehose objects of 128 MB do not take 2 GB a task. An object bigger than this is
    # still read, alone; 0 reads one object at a time.
    read_ahead_bytes: int = 256 << 20


@dataclass(frozen=True)
class AwsConfig:
    # None: boto3's own resolution (AWS_REGION, set by Lambda and Glue). Local runs fall
    # back to us-east-1.
    region: str | None = None
    # Only for local endpoints (moto); None lets boto3 resolve it (AWS_ENDPOINT_URL works too).
    endpoint_url: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    """``alerts`` (``loglake alerts run``)."""

    # The first alerts run of a lake looks back this far in publishing (runs finished).
    first_run_lookback_hours: int = 24
    # How long a sent match is remembered (a rebuilt partition publishes it again).
    retain_sent_days: int = 90


@dataclass(frozen=True)
class Config:
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    readready: ReadreadyConfig = field(default_factory=ReadreadyConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    scheduled: ScheduledConfig = field(default_factory=ScheduledConfig)
    compaction: CompactionConfig = field(default_factory=CompactionConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def source(self, name: str) -> SourceConfig:
        return getattr(self.sources, name)

    def table(self, source: str, stage: str) -> str:
        """Catalog table name, e.g. table('cloudtrail', 'raw')."""
        return getattr(self.catalog.tables, f"{source}_{stage}")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def with_run_bounds(config: Config, max_partitions: int | str | None = None,
                    max_files: int | str | None = None) -> Config:
    """``config`` with one run's bounds (``run --max-partitions/--max-files``, or the Glue
    job's ``--max_partitions/--max_files``) in place of ``scheduled``'s. None (or an empty
    job argument) keeps the config's; 0 lifts a bound the config sets."""
    given = {}
    for name, value in (("max_partitions", max_partitions), ("max_files", max_files)):
        if value is None or value == "":
            continue
        try:
            n = int(str(value).strip())
        except ValueError:
            n = -1
        if n < 0:
            raise ConfigError(f"{name} must be a whole number >= 0 (0: no bound), got {value!r}")
        given[name] = n
    if not given:
        return config
    return dataclasses.replace(config, scheduled=dataclasses.replace(config.scheduled, **given))


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate: defaults <- file <- environment <- explicit overrides.

    ``path`` may be a local file or an s3:// URI; when None, $LOGLAKE_CONFIG is used if set.
    ``overrides`` is a nested dict, as in the file (the CLI uses it for flags).
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path:
        data = _read_yaml(path)
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            dotted = key[len(ENV_PREFIX):].lower().split("__")
            _set_path(data, dotted, _FromEnv(value))
    if overrides:
        _merge(data, overrides)
    config = _build(Config, data, "")
    _validate(config)
    return config


def config_from_dict(data: Mapping[str, Any]) -> Config:
    config = _build(Config, dict(data), "")
    _validate(config)
    return config


def _read_yaml(path: str) -> dict[str, Any]:
    from loglake import storage  # local import: storage imports boto3 lazily too

    try:
        text = storage.read_bytes(path).decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        if node.get(part) is None:  # absent, or an empty section in the file
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"config: {'.'.join(path)} overrides a non-mapping value")
    node[path[-1]] = value


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {path or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"config: unknown key {where}{unknown[0]} (known here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:  # tuple[str, ...]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config: {path} must be a list of strings")
        out = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise ConfigError(f"config: {path} must be a list of strings, got {item!r}")
            # Account ids written unquoted in YAML arrive as ints; keep leading zeros honest.
            out.append(str(item))
        return tuple(out)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None or value == "" or (isinstance(value, _FromEnv) and value.strip().lower() == "null"):
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, path)
    if hint is bool:
        if isinstance(value, _FromEnv) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"config: {path} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, _FromEnv) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"config: {path} must be a whole number >= 0, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, _FromEnv):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"config: {path} must be a number >= 0, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"config: {path} must be a string, got {value!r}")
        return str.__str__(value) if isinstance(value, str) else str(value)
    raise ConfigError(f"config: {path} has an unsupported type")  # pragma: no cover


def _validate(config: Config) -> None:
    f = config.filters
    for side in ("allow", "deny"):
        for acct in getattr(f.accounts, side):
            if not ACCOUNT_RE.match(acct):
                raise ConfigError(
                    f"config: filters.accounts.{side} has {acct!r}, not a 12-digit account id"
                    " (quote ids with leading zeros in YAML)"
                )
        for region in getattr(f.regions, side):
            if not REGION_RE.match(region):
                raise ConfigError(f"config: filters.regions.{side} has {region!r}, not a region")
    for i, pattern in enumerate(f.key_deny_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"config: filters.key_deny_patterns[{i}] is not a regex: {exc}") from None
    for name in SOURCES:
        src = config.source(name)
        if src.prefix.startswith("/"):
            raise ConfigError(f"config: sources.{name}.prefix must not start with '/'")
        if "/" in src.bucket or src.bucket.startswith("s3:"):
            raise ConfigError(f"config: sources.{name}.bucket must be a bare bucket name")
    bad = check_patterns(config.redaction.patterns)
    if bad:
        raise ConfigError(f"config: {bad}")
    loc = config.readready.location
    if loc and not (loc.startswith(("s3://", "file://", "/"))):
        raise ConfigError(
            f"config: readready.location must be s3://..., file://... or an absolute path, got {loc!r}"
        )
    for name in dataclasses.fields(TablesConfig):
        if not re.match(r"^[a-z_][a-z0-9_]*$", getattr(config.catalog.tables, name.name)):
            raise ConfigError(
                f"config: catalog.tables.{name.name} must be a lower-case Glue table name"
            )


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)

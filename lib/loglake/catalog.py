"""Glue Data Catalog: tables loglake owns, and partition registration without crawlers.

Partitions are registered with BatchCreatePartition (at most 100 per call). An
``AlreadyExistsException`` entry is a success: registration is idempotent, so
re-delivered SQS messages and reruns cost nothing but a call. Throttling and
transient errors are retried with exponential backoff, up to a bound; what still
fails is reported per partition so the caller can fail exactly the SQS messages
that fed it.
"""
from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from loglake.schema import QUARANTINE, RUNS, TableSchema

BATCH_LIMIT = 100  # BatchCreatePartition accepts at most 100 PartitionInputs
RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalServiceException",
        "InternalFailure",
        "ServiceUnavailable",
        "OperationTimeoutException",
        "ConcurrentModificationException",
    }
)

ORC_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.orc.OrcSerde"},
}

PartitionValues = tuple[str, ...]


@dataclass
class RegisterResult:
    created: set[PartitionValues] = field(default_factory=set)
    existed: set[PartitionValues] = field(default_factory=set)  # in the catalog or the cache
    failed: dict[PartitionValues, str] = field(default_factory=dict)
    calls: int = 0
    retries: int = 0

    def merge(self, other: RegisterResult) -> None:
        self.created |= other.created
        self.existed |= other.existed
        self.failed.update(other.failed)
        self.calls += other.calls
        self.retries += other.retries


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


def _retryable(exc: Exception) -> bool:
    # Connection errors, read timeouts etc. (BotoCoreError) are transient by nature.
    return isinstance(exc, BotoCoreError) or _error_code(exc) in RETRYABLE


class PartitionRegistrar:
    """Registers partitions of tables in one database; keeps a per-container cache.

    In Lambda, one instance lives for the container's lifetime, so partitions seen
    by earlier invocations cost no Glue call at all.
    """

    def __init__(
        self,
        glue,
        database: str,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.glue = glue
        self.database = database
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        # ``clock()`` time after which nothing is retried (None: no limit). AddAPart sets
        # it per batch from the Lambda's remaining time: a retry the function would be
        # killed in the middle of loses the batch's answer, and SQS then redelivers
        # every message, done or not.
        self.deadline: float | None = None
        self.known: set[tuple[str, PartitionValues]] = set()
        self._descriptors: dict[str, dict] = {}

    # ------------------------------------------------------------------ table info

    def storage_descriptor(self, table: str) -> dict:
        if table not in self._descriptors:
            resp = self._call(lambda: self.glue.get_table(DatabaseName=self.database, Name=table))
            sd = resp["Table"]["StorageDescriptor"]
            self._descriptors[table] = sd
        return self._descriptors[table]

    def _call(self, fn: Callable[[], dict]) -> dict:
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except (ClientError, BotoCoreError) as exc:
                if not _retryable(exc) or not self._may_retry(attempt):
                    raise
                self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _may_retry(self, attempt: int) -> bool:
        """Another attempt is allowed, and its backoff ends before the deadline."""
        if attempt >= self.max_attempts - 1:
            return False
        delay = min(self.max_delay, self.base_delay * (2**attempt))
        return self.deadline is None or self.clock() + delay < self.deadline

    def _backoff(self, attempt: int) -> None:
        delay = min(self.max_delay, self.base_delay * (2**attempt))
        self.sleep(delay * (0.5 + random.random() / 2))

    # ------------------------------------------------------------------ registration

    def register(self, table: str, partitions: Mapping[PartitionValues, str]) -> RegisterResult:
        """Register ``{values: location}``; returns what was created, existed or failed."""
        result = RegisterResult()
        todo = {}
        for values, location in partitions.items():
            if (table, values) in self.known:
                result.existed.add(values)
            else:
                todo[values] = location
        if not todo:
            return result
        try:
            sd = self.storage_descriptor(table)
        except (ClientError, BotoCoreError) as exc:
            reason = f"GetTable {self.database}.{table}: {_error_code(exc)}"
            result.failed.update({v: reason for v in todo})
            return result
        items = sorted(todo.items())
        for i in range(0, len(items), BATCH_LIMIT):
            chunk = dict(items[i : i + BATCH_LIMIT])
            if self.deadline is not None and self.clock() >= self.deadline:
                result.failed.update({v: "not tried: the batch's time ran out" for v in chunk})
                continue
            result.merge(self._register_chunk(table, sd, chunk))
        return result

    def _register_chunk(self, table: str, sd: dict, chunk: dict[PartitionValues, str]) -> RegisterResult:
        result = RegisterResult()
        pending = dict(chunk)
        for attempt in range(self.max_attempts):
            inputs = [_partition_input(sd, values, loc) for values, loc in sorted(pending.items())]
            result.calls += 1
            try:
                resp = self.glue.batch_create_partition(
                    DatabaseName=self.database, TableName=table, PartitionInputList=inputs
                )
            except (ClientError, BotoCoreError) as exc:
                code = _error_code(exc)
                if _retryable(exc) and self._may_retry(attempt):
                    result.retries += 1
                    self._backoff(attempt)
                    continue
                result.failed.update({v: f"BatchCreatePartition: {code}" for v in pending})
                return result
            errors = {tuple(e["PartitionValues"]): e.get("ErrorDetail", {}) for e in resp.get("Errors", [])}
            retry = {}
            for values in pending:
                detail = errors.get(values)
                if detail is None:
                    result.created.add(values)
                elif detail.get("ErrorCode") == "AlreadyExistsException":
                    result.existed.add(values)
                elif detail.get("ErrorCode") in RETRYABLE and self._may_retry(attempt):
                    retry[values] = pending[values]
                else:
                    result.failed[values] = f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage', '')}"[:300]
            for values in result.created | result.existed:
                self.known.add((table, values))
            if not retry:
                return result
            result.retries += 1
            pending = retry
            self._backoff(attempt)
        return result  # pragma: no cover - the loop returns


def move_partitions(glue, database: str, table: str, locations: Mapping[PartitionValues, str],
                    sd: dict) -> tuple[int, int]:
    """Set existing partitions' locations (a compaction or rebuild switched generation
    folder), 100 per BatchUpdatePartition call; returns (moved, calls). One call per
    partition is atomic: Athena sees the old location or the new one."""
    items = sorted(locations.items())
    calls = 0
    for i in range(0, len(items), BATCH_LIMIT):
        chunk = items[i : i + BATCH_LIMIT]
        entries = [{"PartitionValueList": list(v), "PartitionInput": _partition_input(sd, v, loc)} for v, loc in chunk]
        calls += 1
        resp = glue.batch_update_partition(DatabaseName=database, TableName=table, Entries=entries)
        if resp.get("Errors"):
            e = resp["Errors"][0]
            raise RuntimeError(f"could not move partition {e.get('PartitionValueList')}: {e.get('ErrorDetail')}")
    return len(items), calls


def _partition_input(sd: dict, values: PartitionValues, location: str) -> dict:
    psd = copy.deepcopy(sd)
    psd["Location"] = location
    return {"Values": list(values), "StorageDescriptor": psd}


# --------------------------------------------------------------------------- tables


def ensure_database(glue, database: str) -> None:
    try:
        glue.create_database(DatabaseInput={"Name": database, "Description": "loglake raw and readready tables"})
    except ClientError as exc:
        if _error_code(exc) != "AlreadyExistsException":
            raise


def table_input(name: str, schema: TableSchema, location: str, fmt: str, description: str = "") -> dict:
    """A Glue TableInput. ``fmt``: "orc" (readready, quarantine, runs, lookups) or a
    source's ``raw_format``, whose storage and parameters its module declares."""
    from loglake.sources import REGISTRY

    formats = {
        "orc": (ORC_FORMAT, {"classification": "orc", "orc.compress": "ZLIB"}),
        **{s.raw_format: (s.raw_storage, s.raw_table_parameters) for s in REGISTRY},
    }
    storage, params = formats[fmt]
    return {
        "Name": name,
        "Description": description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", **params},
        "PartitionKeys": schema.glue_partition_keys(),
        "StorageDescriptor": {
            "Columns": schema.glue_columns(),
            "Location": location.rstrip("/") + "/",
            **copy.deepcopy(storage),
        },
    }


def ensure_table(glue, database: str, tinput: dict) -> str:
    """Create the table, or update it to this definition. Returns 'created' or 'updated'."""
    try:
        glue.create_table(DatabaseName=database, TableInput=tinput)
        return "created"
    except ClientError as exc:
        if _error_code(exc) != "AlreadyExistsException":
            raise
    glue.update_table(DatabaseName=database, TableInput=tinput)
    return "updated"


def table_location(glue, database: str, table: str) -> str:
    return glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]["Location"]


def partition_locations(glue, database: str, table: str,
                        values: Iterable[PartitionValues]) -> dict[PartitionValues, str]:
    """The Glue locations of these partitions (BatchGetPartition, 1,000 a call); partitions
    Glue does not hold are left out."""
    wanted = sorted(set(values))
    out: dict[PartitionValues, str] = {}
    for i in range(0, len(wanted), 1000):
        resp = glue.batch_get_partition(DatabaseName=database, TableName=table,
                                        PartitionsToGet=[{"Values": list(v)} for v in wanted[i:i + 1000]])
        for p in resp.get("Partitions", []):
            out[tuple(p["Values"])] = p["StorageDescriptor"]["Location"]
    return out


def list_partitions(glue, database: str, table: str, expression: str | None = None) -> Iterable[dict]:
    paginator = glue.get_paginator("get_partitions")
    kwargs = {"DatabaseName": database, "TableName": table}
    if expression:
        kwargs["Expression"] = expression
    for page in paginator.paginate(**kwargs):
        yield from page.get("Partitions", [])


def hive_partition_path(names: Iterable[str], values: Iterable[str]) -> str:
    return "/".join(f"{n}={v}" for n, v in zip(names, values, strict=True)) + "/"


def partition_values(path: str) -> tuple[str, ...]:
    """The values of a Hive partition path (``n=v/n=v``): :func:`hive_partition_path` undone."""
    return tuple(p.split("=", 1)[1] for p in path.strip("/").split("/"))


def table_inputs(config, readready_root: str, raw_location: dict[str, str]) -> list[dict]:
    """Every Glue table loglake owns, as TableInput dicts: the one list that the demo,
    ``loglake ddl --apply`` and the CloudFormation template are all built from.

    ``raw_location`` maps a source name to its raw table location (e.g.
    ``s3://bucket/prefix/AWSLogs/``); readready tables live at ``readready_root/<table>/``.
    """
    from loglake.sources import SOURCES

    out = []
    for source in SOURCES.values():
        if source.name in raw_location:
            raw = config.table(source.name, "raw")
            out.append(table_input(raw, source.raw_schema, raw_location[source.name], source.raw_format,
                                   f"raw {source.name} logs as delivered; partitions registered by AddAPart"))
        rr = config.table(source.name, "readready")
        out.append(table_input(rr, source.schema, f"{readready_root.rstrip('/')}/{rr}", "orc",
                               f"readready {source.name}: flat ORC/ZLIB written by loglake"))
    tables = config.catalog.tables
    out.append(table_input(tables.quarantine, QUARANTINE, f"{readready_root.rstrip('/')}/{tables.quarantine}", "orc",
                           "raw records, objects and keys that did not reach readready, with a reason"))
    out.append(table_input(tables.runs, RUNS, f"{readready_root.rstrip('/')}/{tables.runs}", "orc",
                           "one row per job run: counts, reconciliation and quality outcome"))
    return out

"""AddAPart: S3 object notifications -> Glue partitions, without crawlers or MSCK REPAIR.

One batch of SQS messages is handled as a whole: every key is parsed, the keys the
config allows are reduced to the distinct set of partitions per table, and only
partitions this container has not seen are sent to Glue, 100 per call. A message
is reported as failed (ReportBatchItemFailures) only when it cannot be parsed at
all or a partition it needs could not be registered: everything else is
acknowledged, so SQS retries exactly what is worth retrying.

A key that looks like data but is wrong (no layout match, a bad account, org id or
date) is acknowledged, since retrying cannot fix it, and handed to the next run of its
source through ``<lake>/_state/<source>/rejected_keys/`` (``loglake.rejected_keys``), so
that it reaches the quarantine like every other raw record that is not published. If
that hand-off cannot be written, the messages holding those keys fail and SQS retries them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loglake import inbox, keys, notifications, rejected_keys, storage
from loglake.catalog import PartitionRegistrar
from loglake.config import Config
from loglake.sources import SOURCES, Source

log = logging.getLogger("loglake.addapart")

UNKNOWN_BUCKET = "unknown_bucket"
# Glue calls wait at most this to connect and as long again to answer (botocore's
# default is 60 s each, the whole Lambda timeout); no retry starts within
# LAMBDA_RESERVE_S of the function's end, more than both waits, so even a call that then
# times out leaves time to answer the batch.
GLUE_TIMEOUT_S = 5
LAMBDA_RESERVE_S = 15


@dataclass(frozen=True)
class Message:
    id: str
    body: str


@dataclass
class BatchOutcome:
    messages: int = 0
    objects: int = 0
    test_events: int = 0
    ignored_events: int = 0
    invalid_messages: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # ok / skipped / error
    key_reasons: dict[str, int] = field(default_factory=dict)
    partitions: int = 0  # distinct partitions the batch needs
    created: int = 0
    existed: int = 0  # already in the catalog, or known to this container
    failed: int = 0
    glue_calls: int = 0
    keys_for_quarantine: int = 0  # key errors handed to their source's next run (rejected_keys)
    inbox_objects: int = 0  # new objects written to their source's inbox for the next scheduled run
    failed_message_ids: list[str] = field(default_factory=list)

    def lambda_response(self) -> dict:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed_message_ids]}

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def route(obj: notifications.ObjectRef, config: Config, only: Source | None = None) -> list[Source]:
    """Sources whose configured bucket and prefix hold this object, the longest prefix
    first. A source with no bucket configured receives nothing. With ``only`` (a backfill
    of one source, over a bucket the caller names), that source or none; its bucket, if
    configured, must be the object's."""
    out = []
    for source in [only] if only else SOURCES.values():
        sc = config.source(source.name)
        bucket_ok = sc.bucket == obj.bucket or (only is not None and not sc.bucket)
        if bucket_ok and obj.key.startswith(sc.prefix):
            out.append(source)
    return sorted(out, key=lambda s: -len(config.source(s.name).prefix))


def _rank(result: keys.KeyResult) -> int:
    """How firmly a source's answer claims a key (lower: firmer), for keys several
    sources sharing a bucket are asked about: its data; a key its layout recognises but
    finds wrong (a bad date: quarantined); one it skips on purpose (a digest file, a
    denied account); another service's key under AWSLogs/; no match with its layout."""
    if result.ok:
        return 0
    if result.status == keys.ERROR:
        return 4 if result.reason == keys.NO_LAYOUT_MATCH else 1
    return 3 if result.reason == keys.OTHER_SERVICE else 2


def classify(obj: notifications.ObjectRef, config: Config,
             only: Source | None = None) -> tuple[Source | None, keys.KeyResult]:
    """The source a key belongs to, and what its layout says: of the sources routed to the
    object's bucket and prefix, the one whose answer claims the key most firmly (the most
    specific prefix on a tie)."""
    candidates = route(obj, config, only)
    if not candidates:
        return None, keys.KeyResult(obj.key, keys.SKIPPED, UNKNOWN_BUCKET, obj.bucket)
    answers = [(source, source.classify_key(obj.key, config)) for source in candidates]
    return min(answers, key=lambda answer: _rank(answer[1]))  # min is stable: the first of equals


class AddAPart:
    """Holds the per-container state: one Glue client and the partition cache."""

    def __init__(self, config: Config, glue=None, registrar: PartitionRegistrar | None = None):
        self.config = config
        if registrar is None:
            # The registrar retries with its own bounded backoff; botocore must not retry too.
            glue = glue or storage.client("glue", config.aws.endpoint_url, config.aws.region, max_attempts=1,
                                          timeout=GLUE_TIMEOUT_S)
            registrar = PartitionRegistrar(glue, config.catalog.database)
        self.registrar = registrar

    def process(self, messages: Sequence[Message], only: Source | None = None,
                deadline: float | None = None) -> BatchOutcome:
        """Hand a batch's new objects and bad keys to their sources' next runs, then
        register the partitions it needs; ``only``: classify keys against that source
        alone (backfill of one source), not every source routed to the bucket;
        ``deadline`` (``time.monotonic()``): no Glue retry after it.

        The hand-off files come first: they are what the scheduled runs convert, and a
        Glue that hangs or throttles until the function times out must not keep the
        objects from them (the messages are retried either way; a repeat is harmless)."""
        out = BatchOutcome(messages=len(messages))
        # (table, partition values) -> location, and which messages need each partition.
        wanted: dict[str, dict[tuple, str]] = {}
        needed_by: dict[tuple[str, tuple], set[str]] = {}
        # source -> [(message id, key error)], for the source's next run to quarantine.
        rejected: dict[str, list[tuple[str, keys.KeyResult]]] = {}
        # source -> [(message id, new object)], for the source's next scheduled run (inbox).
        arrived: dict[str, list[tuple[str, inbox.NewObject]]] = {}
        for msg in messages:
            env = notifications.parse_body(msg.body)
            if env.kind == notifications.INVALID:
                out.invalid_messages += 1
                out.failed_message_ids.append(msg.id)
                _log("invalid_message", message_id=msg.id, error=env.error, body=msg.body[:500])
                continue
            if env.kind == notifications.TEST_EVENT:
                out.test_events += 1
                continue
            out.ignored_events += env.ignored
            for obj in env.objects:
                out.objects += 1
                source, result = classify(obj, self.config, only)
                out.keys[result.status] = out.keys.get(result.status, 0) + 1
                if not result.ok:
                    out.key_reasons[result.reason] = out.key_reasons.get(result.reason, 0) + 1
                    if result.status == keys.ERROR:
                        _log("bad_key", bucket=obj.bucket, key=obj.key, reason=result.reason, detail=result.detail)
                        located = dataclasses.replace(result, key=f"s3://{obj.bucket}/{obj.key}")
                        rejected.setdefault(source.name, []).append((msg.id, located))
                    continue
                arrived.setdefault(source.name, []).append(
                    (msg.id, inbox.NewObject(f"s3://{obj.bucket}/{obj.key}", obj.size)))
                table = self.config.table(source.name, "raw")
                part = result.partition
                wanted.setdefault(table, {})[part.values] = f"s3://{obj.bucket}/{part.raw_dir}"
                needed_by.setdefault((table, part.values), set()).add(msg.id)
        failed_ids = self._hand_over(rejected, out) | self._to_inbox(arrived, out)
        self.registrar.deadline = deadline
        for table, partitions in sorted(wanted.items()):
            out.partitions += len(partitions)
            result = self.registrar.register(table, partitions)
            out.created += len(result.created)
            out.existed += len(result.existed)
            out.failed += len(result.failed)
            out.glue_calls += result.calls
            for values, reason in result.failed.items():
                ids = needed_by[(table, values)]
                failed_ids |= ids
                _log("partition_failed", table=table, values=list(values), reason=reason, messages=len(ids))
        out.failed_message_ids += [m.id for m in messages if m.id in failed_ids]
        _log("batch", **{k: v for k, v in out.as_dict().items() if k != "failed_message_ids"},
             failed_messages=len(out.failed_message_ids))
        return out

    def _hand_over(self, rejected: dict[str, list[tuple[str, keys.KeyResult]]], out: BatchOutcome) -> set[str]:
        """Write the batch's key errors for their sources' next runs (``rejected_keys``)."""
        if not self.config.readready.location:
            for name, items in sorted(rejected.items()):
                _log("bad_keys_not_quarantined", source=name, keys=len(items),
                     reason="readready.location is not configured")
            return set()
        failed, out.keys_for_quarantine = _write_per_source(
            rejected, self.config.readready.location, rejected_keys.write,
            ("bad_keys_for_quarantine", "bad_keys_not_written"), "keys")
        return failed

    def _to_inbox(self, arrived: dict[str, list[tuple[str, inbox.NewObject]]], out: BatchOutcome) -> set[str]:
        """Write the batch's new objects to their sources' inboxes (a repeat is harmless:
        the run converts an object once). No lake configured: scheduled runs list instead."""
        if not self.config.readready.location:
            return set()
        failed, out.inbox_objects = _write_per_source(
            arrived, self.config.readready.location, inbox.write, ("inbox", "inbox_not_written"), "objects")
        return failed


def _write_per_source(items_by_source: dict[str, list[tuple[str, Any]]], lake: str,
                      write: Callable[[str, str, list], str], events: tuple[str, str],
                      noun: str) -> tuple[set[str], int]:
    """One hand-off file per source for the next run: ``write(lake, source, items)``.
    Returns the ids of the messages whose items could not be written (failed, so SQS
    delivers them again) and how many items were written; logs ``events`` (written,
    not written) with the count as ``noun``."""
    failed: set[str] = set()
    written = 0
    for name, items in sorted(items_by_source.items()):
        try:
            uri = write(lake, name, [item for _, item in items])
        except Exception as exc:  # noqa: BLE001 - any storage failure: retry the messages
            failed |= {mid for mid, _ in items}
            _log(events[1], source=name, error=str(exc), **{noun: len(items)})
            continue
        written += len(items)
        _log(events[0], source=name, file=uri, **{noun: len(items)})
    return failed, written

def _log(event: str, **fields) -> None:
    """One JSON object per line: CloudWatch Logs Insights can filter and sum these."""
    log.info(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


def handle_lambda_event(event: dict, app: AddAPart, context: Any = None) -> dict:
    """Lambda SQS event -> partial batch response. With the Lambda ``context``, Glue is
    not retried past ``LAMBDA_RESERVE_S`` before the function's timeout, so the batch
    always answers which messages failed."""
    messages = [Message(r["messageId"], r.get("body", "")) for r in event.get("Records", [])]
    deadline = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - LAMBDA_RESERVE_S
    return app.process(messages, deadline=deadline).lambda_response()


# --------------------------------------------------------------------------- outside Lambda


def drain(
    app: AddAPart,
    queue_url: str,
    *,
    batch_messages: int = 100,
    max_messages: int | None = None,
    wait_seconds: int = 1,
    sqs=None,
) -> BatchOutcome:
    """Poll a queue until it is empty (or ``max_messages``), processing up to
    ``batch_messages`` per batch; deletes what succeeded, leaves failures for redelivery."""
    sqs = sqs or storage.client("sqs", app.config.aws.endpoint_url, app.config.aws.region)
    total = BatchOutcome()
    seen = 0
    while max_messages is None or seen < max_messages:
        batch: list[Message] = []
        handles: dict[str, str] = {}
        while len(batch) < batch_messages:
            resp = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, batch_messages - len(batch)),
                WaitTimeSeconds=wait_seconds,
            )
            got = resp.get("Messages", [])
            if not got:
                break
            for m in got:
                batch.append(Message(m["MessageId"], m["Body"]))
                handles[m["MessageId"]] = m["ReceiptHandle"]
        if not batch:
            break
        seen += len(batch)
        outcome = app.process(batch)
        _merge(total, outcome)
        done = [i for i in handles if i not in set(outcome.failed_message_ids)]
        for i in range(0, len(done), 10):
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": handles[mid]} for n, mid in enumerate(done[i : i + 10])],
            )
        if outcome.failed_message_ids:
            # Failed messages come back after their visibility timeout; don't spin on them.
            break
    return total


def _merge(total: BatchOutcome, part: BatchOutcome) -> None:
    for name, value in part.as_dict().items():
        current = getattr(total, name)
        if isinstance(value, int):
            setattr(total, name, current + value)
        elif isinstance(value, list):
            current.extend(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                current[k] = current.get(k, 0) + v


def backfill(app: AddAPart, source: Source, bucket: str, prefix: str, chunk: int = 10_000) -> BatchOutcome:
    """Register the partitions of objects already in a bucket (before AddAPart existed)."""
    total = BatchOutcome()
    refs: list[notifications.ObjectRef] = []
    started = time.time()

    def flush() -> None:
        body = json.dumps(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Backfill",
                          "s3": {"bucket": {"name": r.bucket}, "object": {"key": _encode(r.key), "size": r.size}}}
                         for r in refs]}
        )
        _merge(total, app.process([Message(f"backfill-{total.objects}", body)], only=source))
        log.info("backfill: %d objects so far, %d partitions created (%.0fs)",
                 total.objects, total.created, time.time() - started)
        refs.clear()

    for obj in storage.list_objects(f"s3://{bucket}/{prefix}"):
        refs.append(notifications.ObjectRef(bucket, obj.key, obj.size))
        if len(refs) >= chunk:
            flush()
    if refs:
        flush()
    return total


def _encode(key: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(key, safe="/")

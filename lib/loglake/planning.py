"""Which raw objects a run reads: a selection of days, the plan (from a listing of a
folder or prefix, or from the raw table's partitions in the catalog: keys classified by
the source's layout, skipped keys counted by reason, wrong keys kept for the
quarantine), and for a scheduled run the new objects it takes (:func:`schedule`)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loglake import catalog, keys, manifest, storage
from loglake.config import Config
from loglake.sources import Source

log = logging.getLogger("loglake.plan")

MAX_SAMPLES = 20  # problem/skip examples kept in a summary


class SelectionError(ValueError):
    pass


def _iso_day(value: str, name: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise SelectionError(f"--{name} must be a date YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class Selection:
    """Which raw partitions a run covers; bounded unless it is ``everything``."""

    dates: tuple[str, ...] = ()
    from_date: str | None = None
    to_date: str | None = None
    partitions_since: dt.datetime | None = None  # catalog runs: partitions registered since then

    @classmethod
    def parse(
        cls,
        date: str | None = None,
        from_date: str | None = None,
        to_date: str | None = None,
        partitions_since: str | None = None,
    ) -> Selection:
        given = [bool(date), bool(from_date or to_date), bool(partitions_since)]
        if sum(given) > 1:
            raise SelectionError("use one of --date, --from-date/--to-date, --partitions-since")
        if date:
            return cls(dates=tuple(sorted({_iso_day(d.strip(), "date") for d in date.split(",")})))
        if from_date or to_date:
            lo = _iso_day(from_date, "from-date") if from_date else None
            hi = _iso_day(to_date, "to-date") if to_date else None
            if lo and hi and lo > hi:
                raise SelectionError(f"--from-date {lo} is after --to-date {hi}")
            return cls(from_date=lo, to_date=hi)
        if partitions_since:
            try:
                since = dt.datetime.fromisoformat(partitions_since)
            except ValueError:
                raise SelectionError(
                    f"--partitions-since must be an ISO timestamp, got {partitions_since!r}"
                ) from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
            return cls(partitions_since=since)
        return cls()

    @property
    def everything(self) -> bool:
        return self == Selection()

    def includes_day(self, day: str) -> bool:
        if self.dates:
            return day in self.dates
        if self.from_date and day < self.from_date:
            return False
        if self.to_date and day > self.to_date:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v}
        if self.partitions_since:
            out["partitions_since"] = self.partitions_since.isoformat()
        if "dates" in out:
            out["dates"] = list(out["dates"])
        return out or {"all": True}


@dataclass(frozen=True, slots=True)
class PlannedFile:
    uri: str
    values: tuple[str, ...]  # partition values, in the source's partition-key order
    mtime: float = 0.0  # S3 LastModified / file mtime
    size: int = 0  # bytes as stored (gzip)


@dataclass
class Plan:
    """A run's objects (one entry each, held by the driver for the whole run: slots,
    and each partition's values tuple shared by its objects, keep an entry near the
    size of its URI) and the keys it skipped or rejected."""

    files: list[PlannedFile] = field(default_factory=list)
    skipped_keys: dict[str, int] = field(default_factory=dict)
    skipped_samples: list[dict[str, str]] = field(default_factory=list)
    rejected: list[tuple[keys.KeyResult, float]] = field(default_factory=list)  # key errors and mtimes
    _values: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def partitions(self) -> set[tuple[str, ...]]:
        return {f.values for f in self.files}

    def add(self, obj: storage.ObjectInfo, result: keys.KeyResult, selection: Selection, day_index: int) -> None:
        uri = obj.uri
        if result.ok:
            values = result.partition.values
            if selection.includes_day(values[day_index]):
                values = self._values.setdefault(values, values)
                self.files.append(PlannedFile(uri, values, obj.mtime, obj.size))
            return
        if result.status == keys.ERROR:
            self.reject(dataclasses.replace(result, key=uri), obj.mtime)
        else:
            self.skipped_keys[result.reason] = self.skipped_keys.get(result.reason, 0) + 1

    def reject(self, result: keys.KeyResult, mtime: float) -> None:
        """A key that looks like data but is wrong: counted, and quarantined by the run."""
        self.skipped_keys[result.reason] = self.skipped_keys.get(result.reason, 0) + 1
        self.rejected.append((result, mtime))
        if len(self.skipped_samples) < MAX_SAMPLES:
            self.skipped_samples.append({"key": result.key, "reason": result.reason, "detail": result.detail})
            log.warning("bad key %s: %s (%s); quarantined by the run that first lists it", result.key, result.reason,
                        result.detail)

    def with_rejected(self, results: Iterable[tuple[keys.KeyResult, float]]) -> Plan:
        """This plan plus key errors found elsewhere (AddAPart's, ``rejected_keys``), each
        key once: a key the listing found too is quarantined once."""
        out = Plan(list(self.files), dict(self.skipped_keys), list(self.skipped_samples), list(self.rejected))
        seen = {k.key for k, _ in out.rejected}
        for result, mtime in results:
            if result.key not in seen:
                seen.add(result.key)
                out.reject(result, mtime)
        return out


def _day_index(source: Source) -> int:
    return source.schema.partition_names.index("dt")


def check_listing(raw_uri: str, selection: Selection) -> None:
    """What :func:`plan_from_listing` refuses, checked without listing (before Spark starts)."""
    if selection.partitions_since:
        raise SelectionError("--partitions-since needs the catalog; use --date or --from-date/--to-date")
    if not storage.exists(raw_uri):
        raise SelectionError(f"--raw {raw_uri}: no such folder, file or non-empty prefix")


def plan_from_listing(source: Source, raw_uri: str, config: Config, selection: Selection,
                      newer_than: float | None = None) -> Plan:
    """Plan by listing every object below a folder or s3:// prefix (recursively).

    ``newer_than`` (a scheduled run's watermark): objects modified at or before it are
    neither classified nor counted in ``skipped_keys``, since the run takes none of them;
    by the end of a day of hourly runs over a folder, classifying every key again was
    most of each run's listing."""
    check_listing(raw_uri, selection)
    plan = Plan()
    for obj in storage.list_objects(raw_uri, newer_than):
        plan.add(obj, source.classify_key(obj.key, config), selection, _day_index(source))
    plan.files.sort(key=lambda f: f.uri)
    return plan


def plan_from_catalog(glue, source: Source, config: Config, selection: Selection) -> Plan:
    """Plan from the raw table's registered partitions (as AddAPart registered them)."""
    names = source.schema.partition_names
    table = config.table(source.name, "raw")
    expression = None
    if selection.dates:
        expression = "dt in (" + ", ".join(f"'{d}'" for d in selection.dates) + ")"
    elif selection.from_date or selection.to_date:
        parts = []
        if selection.from_date:
            parts.append(f"dt >= '{selection.from_date}'")
        if selection.to_date:
            parts.append(f"dt <= '{selection.to_date}'")
        expression = " AND ".join(parts)
    plan = Plan()
    bucket = config.source(source.name).bucket
    for part in catalog.list_partitions(glue, config.catalog.database, table, expression):
        values = tuple(part["Values"])
        day = values[names.index("dt")] if len(values) == len(names) else ""
        if not day or not selection.includes_day(day):
            continue
        created = part.get("CreationTime")
        if selection.partitions_since and (created is None or created < selection.partitions_since):
            continue
        base = part["StorageDescriptor"]["Location"]
        folders = [f if storage.is_s3(f) else f"s3://{bucket}/{f.lstrip('/')}"
                   for f in [base, *source.sibling_dirs(base, config)]]
        for location in folders + converted_elsewhere(source, config, values, folders):
            for obj in storage.list_objects(location):
                plan.add(obj, source.classify_key(obj.key, config), selection, _day_index(source))
    plan.files.sort(key=lambda f: f.uri)
    return plan


def converted_elsewhere(source: Source, config: Config, values: tuple[str, ...], folders: list[str]) -> list[str]:
    """The raw folders, other than ``folders``, that the readready partition ``values``
    holds rows from (its manifest names every raw object behind its current files).

    A Glue partition has one location, but two trails (or Firehose streams) writing the
    same account, region and day under different prefixes fill one readready partition:
    AddAPart registers the first folder it sees and the other's keys find it existing. A
    rebuild that listed the registered folder alone would replace the partition with that
    folder's events and drop the rest."""
    lake = config.readready.location
    if not lake:
        return []
    names = source.schema.partition_names
    table = storage.join(lake, config.table(source.name, "readready"))
    current = manifest.load(storage.join(table, catalog.hive_partition_path(names, values).rstrip("/")))
    if current is None:
        return []
    found: set[str] = set()
    for uri in current.converted:
        if not storage.is_s3(uri) or any(uri.startswith(f.rstrip("/") + "/") for f in folders):
            continue
        bucket, key = storage.split_s3(uri)
        result = source.classify_key(key, config)
        if result.ok and result.partition.values == values:
            folder = f"s3://{bucket}/{result.partition.raw_dir}"
            found.update([folder, *source.sibling_dirs(folder, config)])  # CloudTrail-Insight/ beside it
    if found:
        log.info("partition %s: also listing %d raw folder(s) its rows came from besides the catalog's: %s",
                 "/".join(values), len(found), ", ".join(sorted(found)))
    return sorted(found - set(folders))


@dataclass(frozen=True)
class Schedule:
    """What a scheduled run takes: the new objects (oldest change first, bounded), and
    where the listing watermark moves once the run has committed."""

    plan: Plan
    watermark_before: float | None
    watermark_after: float | None
    partitions_changed: int
    partitions_left: int  # changed, but beyond this run's bounds: the next run takes them
    objects_already_converted: int = 0  # above the watermark (the overlap), but a manifest holds them
    # bad keys quarantined (by this run or an earlier one) that lie above the new
    # watermark: the next listing sees them again, and must not quarantine them again
    quarantined_after: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "partitions_changed": self.partitions_changed,
            "partitions_taken": len(self.plan.partitions),
            "partitions_left": self.partitions_left,
            "objects_already_converted": self.objects_already_converted,
        }


def schedule(plan: Plan, watermark: float | None, overlap: float, max_partitions: int = 0,
             max_files: int = 0, converted: Callable[[tuple[str, ...]], frozenset[str]] | None = None,
             quarantined: Mapping[str, float] | None = None) -> Schedule:
    """Keep the objects modified after ``watermark`` that no run has converted yet
    (``converted(partition values)``: the raw objects its manifest holds), by partition,
    oldest change first, within the bounds. Older objects of the same partitions are not
    read again: a run adds rows to a partition, it does not rebuild it.

    The new watermark is never past an object that was not taken: with partitions left
    over it stops just before their oldest change; otherwise it is the newest object
    seen minus ``overlap`` (objects in the overlap are seen again, and skipped because a
    manifest holds them). It never moves backwards. A bad key is quarantined by the run
    that first sees it: ``quarantined`` holds those an earlier run quarantined above the
    watermark (in the overlap), which the listing sees again.
    """
    by_partition: dict[tuple[str, ...], list[PlannedFile]] = {}
    for f in plan.files:
        if watermark is None or f.mtime > watermark:
            by_partition.setdefault(f.values, []).append(f)
    already = 0
    if converted is not None:
        for values in list(by_partition):
            done = converted(values)
            kept = [f for f in by_partition[values] if f.uri not in done]
            already += len(by_partition[values]) - len(kept)
            by_partition[values] = kept
            if not by_partition[values]:
                del by_partition[values]
    first_change = {values: min(f.mtime for f in files) for values, files in by_partition.items()}
    order = sorted(first_change, key=lambda v: (first_change[v], v))
    taken, n_files = [], 0
    for values in order:
        size = len(by_partition[values])
        if taken and ((max_partitions and len(taken) >= max_partitions) or (max_files and n_files + size > max_files)):
            break
        taken.append(values)
        n_files += size
    left = order[len(taken):]
    # bad keys count: this run quarantines every one above the watermark
    newest = max([f.mtime for f in plan.files] + [m for _, m in plan.rejected], default=None)
    after = None if newest is None else newest - overlap
    if left:
        after = min(after, first_change[left[0]] - 1e-3)
    if watermark is not None:
        after = watermark if after is None else max(after, watermark)
    quarantined = dict(quarantined or {})
    subset = Plan(
        files=sorted((f for values in taken for f in by_partition[values]), key=lambda f: f.uri),
        skipped_keys=plan.skipped_keys, skipped_samples=plan.skipped_samples,
        rejected=[(k, m) for k, m in plan.rejected
                  if (watermark is None or m > watermark) and k.key not in quarantined],
    )
    quarantined |= {k.key: m for k, m in subset.rejected}
    still_seen = {k: m for k, m in quarantined.items() if after is None or m > after}
    return Schedule(subset, watermark, after, len(order), len(left), already, still_seen)


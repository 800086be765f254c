"""The data-quality gate: one great-expectations suite per readready table.

The converter calls :func:`validate` on the Spark DataFrame it is about to publish
(readready columns + partition columns) and publishes only if the result is a
success; otherwise it leaves the previous partitions in place and exits non-zero
with :attr:`QualityResult.failed`, one line per failed expectation, naming it.
:func:`write_result` stores a result as JSON and :func:`build_docs` turns a folder of
them into GX Data Docs HTML (``loglake quality docs``).

The suites are data, declared by each source's module (``Source.checks``, :func:`checks_of`),
each expectation a :class:`loglake.checks.Check` (a GX expectation class and its
arguments) with a note saying why it exists (the notes show in Data Docs).
:func:`suite` is the same suite as a GX ExpectationSuite. They check what the
converter guarantees, so a failure means a bug or a broken input contract, not bad
luck: dedup runs before the gate, so a duplicate here is a bug.

How a suite is run:

* A run counts the suite in the tasks that write the staged files, on the very rows
  they write (:class:`StagedGate`, :class:`loglake.checks.Tally`), and
  :func:`judge_counts` decides: no job reads the staged files back (that read cost an
  hourly run some 1.5 s). Elsewhere, :func:`validate` evaluates a DataFrame in one
  Spark aggregate job (:func:`loglake.checks.evaluate`). Both have GX's semantics. A
  pass ends there: GX is not even imported, which saves a run some 8 s of import and
  the 41 Spark jobs GX ran here before (BASIC), a fixed cost an hourly schedule pays
  24 times a day.
* A failure is validated again by great_expectations 1.x (result format BASIC), which
  judges it and reports counts and up to 20 examples per failed expectation; its
  verdict is the run's. Results name the engine (``meta.loglake.engine``); both have
  GX's JSON shape, and Data Docs render either.
* GX is imported lazily: importing this module, the CLI or the Lambda loads neither
  it nor pyspark. One ephemeral (in-memory) data context per process, created on
  first use and reused: nothing is written to disk and no GX project folder is
  needed. Data Docs use a separate ephemeral context that writes only below the
  ``out_dir`` given.
* No network: ``GX_ANALYTICS_ENABLED=False`` is set before GX is imported (the
  documented switch) and the context config says ``analytics_enabled: false`` too.
  GX 1.24 sends nothing anyway (its analytics client is gone and GX Cloud is shut
  down); the test suite blocks sockets to prove it.
* Regular expressions are Java's (Spark's ``rlike``, and GX on Spark); the writing
  tasks run them as RE2 (``checks.re2_of_java``). Java's ``$`` also matches before a
  trailing newline, so patterns end with ``\\z``.
* A pass reads ``df`` once. Before GX reads a failing ``df`` again, :func:`validate`
  persists its working copy (MEMORY_AND_DISK) for the rest of the call, unless ``df``
  is already persisted or the caller passes ``cache=False`` (the job does: its ``df``
  is the staged ORC, cheap to read a few columns at a time).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loglake.checks import Check, Tally, evaluate, judge, merge, to_gx
from loglake.sources import REGISTRY, get_source

log = logging.getLogger("loglake.quality")

RESULT_FORMAT = "BASIC"  # counts + up to 20 unexpected values, no extra group-by
MAX_EXAMPLES = 3


@dataclass
class QualityResult:
    table: str  # readready table name, e.g. "from_cloudtrail_readready"
    success: bool
    failed: list[str] = field(default_factory=list)  # one line per failed expectation, naming it
    evaluated: int = 0  # number of expectations run
    result: dict = field(default_factory=dict)  # the GX validation result, JSON-serialisable
    rows: int | None = None  # rows of the validated frame, counted by the one-pass aggregate


# --------------------------------------------------------------------------- GX, lazily


def _gx():
    """Import great_expectations with analytics off (the env var must be set first)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _context_config():
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return DataContextConfig(
        # init_temp_docs_sites=False: no default Data Docs site in a temp folder.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )


class _Validator:
    """The process's ephemeral context, with one Spark dataframe asset per table."""

    def __init__(self, spark) -> None:
        gx = _gx()
        self.spark = spark
        self.context = gx.get_context(mode="ephemeral", project_config=_context_config())
        # persist=False: GX would otherwise persist() every batch and never unpersist it.
        self.datasource = self.context.data_sources.add_spark(name="loglake", persist=False)
        self._batch_definitions: dict[str, Any] = {}

    def batch_definition(self, table: str):
        if table not in self._batch_definitions:
            asset = self.datasource.add_dataframe_asset(name=table)
            self._batch_definitions[table] = asset.add_batch_definition_whole_dataframe("whole_dataframe")
        return self._batch_definitions[table]


_lock = threading.Lock()
_validator: _Validator | None = None


def _get_validator(spark) -> _Validator:
    global _validator
    if _validator is None or _validator.spark is not spark:
        _validator = _Validator(spark)
    return _validator


# --------------------------------------------------------------------------- suites


def checks_of(source: str, expect_rows: bool = True) -> list[Check]:
    """A source's suite (declared in its module, ``Source.checks``)."""
    src = get_source(source)
    if src.checks is None:
        raise ValueError(f"source {source!r} declares no quality checks")
    return src.checks(expect_rows)


def expectations(source: str, expect_rows: bool = True) -> list:
    """A source's suite as great-expectations expectations (imports GX)."""
    _gx()
    return [to_gx(c) for c in checks_of(source, expect_rows)]


def suite(source: str, expect_rows: bool = True, table: str | None = None):
    """The GX ExpectationSuite of a source's readready table (named after the table)."""
    gx = _gx()
    return gx.ExpectationSuite(name=table or get_source(source).tables["readready"],
                               expectations=[to_gx(c) for c in checks_of(source, expect_rows)])


# --------------------------------------------------------------------------- validate


def _section(source: str, section: Any):
    """The source's config section given, or its defaults."""
    return section if section is not None else get_source(source).config_class()


def with_derived_columns(df, source: str, section: Any = None):
    """A copy of ``df`` with the columns the suite checks but the table does not have
    (``Source.derive_spark``); ``section``: the source's config section (default: its
    defaults), e.g. CloudWatch's session log groups."""
    return get_source(source).derive_spark(df, _section(source, section))


def derive_arrow(table, source: str, section: Any = None):
    """:func:`with_derived_columns` for an Arrow table (what a writing task tallies), with
    the same values (``Source.derive_arrow``)."""
    return get_source(source).derive_arrow(table, _section(source, section))


@dataclass(frozen=True)
class StagedGate:
    """The suite as the writing tasks count it: each task calls it for a fresh
    :class:`loglake.checks.Tally` (picklable: it travels to Spark's executors)."""

    source: str
    section: Any = None  # the source's config section (default: its defaults)

    def __call__(self) -> Tally:
        section = self.section

        def derive(table):
            return derive_arrow(table, self.source, section)

        # expect_rows changes only the row-count check's bound, which judge_counts
        # applies: the counts, and each check's place in the list, are the same.
        return Tally(checks_of(self.source, True), derive, get_source(self.source).schema.partition_names)


def judge_counts(
    counts: Iterable[dict],
    source: str,
    expect_rows: bool,
    columns: Sequence[str],
    *,
    table: str | None = None,
    read_back: Callable[[], Any] | None = None,
    section: Any = None,
) -> QualityResult:
    """Decide on the writing tasks' tallies (:class:`StagedGate`). ``columns``: the
    staged table's columns, for a run whose tasks saw no row. A failure is judged again
    by GX on the staged files (``read_back()``: a DataFrame of them), as in :func:`validate`."""
    src = get_source(source)
    table = table or src.tables["readready"]
    checks = checks_of(source, expect_rows)
    tallied = checks_of(source, True)  # what StagedGate counted: c<i> must name the same checks
    if [(c.kind, c.columns(), c.where) for c in checks] != [(c.kind, c.columns(), c.where) for c in tallied]:
        raise ValueError(f"the {source} suite differs with expect_rows={expect_rows}: its tallies do not apply")
    values, seen = merge(counts, [*columns, *src.derived_columns])
    result = judge(checks, values, seen, table)

    def work():
        return with_derived_columns(read_back(), source, section)

    return _decide(result, source, expect_rows, table, work if read_back is not None else None,
                   cache=False, engine="loglake tallies in the writing tasks")


def validate(
    df,
    source: str,
    expect_rows: bool,
    *,
    table: str | None = None,
    section: Any = None,
    cache: bool = True,
) -> QualityResult:
    """Run the source's suite on ``df`` (readready + partition columns) and report.

    ``expect_rows``: files were read and rows kept, so at least one row must be there.
    ``table``: the readready table name (default: the default config's).
    ``section``: the source's config section (``config.source(name)``; default: its
    defaults), e.g. the session log groups CloudWatch's suite checks.
    """
    table = table or get_source(source).tables["readready"]
    checks = checks_of(source, expect_rows)
    work = with_derived_columns(df, source, section)
    result = evaluate(work, checks, table)  # one aggregate job decides a pass
    return _decide(result, source, expect_rows, table, lambda: work, cache=cache and not df.is_cached,
                   engine="loglake one-pass aggregate")


def _decide(result: dict, source: str, expect_rows: bool, table: str, work: Callable[[], Any] | None, *,
            cache: bool, engine: str) -> QualityResult:
    """The QualityResult of a one-pass ``result``; a failure is judged again by GX on
    ``work()`` (the frame with its derived columns), whose verdict is the run's."""
    rows = result["meta"].pop("rows")
    one_pass_failed = None
    if not result["success"] and work is not None:
        one_pass_failed = _failed_names(result)
        frame = work()
        # GX judges every failure and reports it, counts and examples, in some 40 jobs:
        # unless the frame is cheap to read again (``cache=False``: ORC files, read a few
        # columns at a time, or already persisted), compute it once for all of them.
        if cache:
            frame = frame.persist()
        try:
            result = gx_validate(frame, source, expect_rows, table)
            engine = "great_expectations"
        finally:
            if cache:
                frame.unpersist()
    result["meta"]["validation_time"] = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    result["meta"]["loglake"] = {"source": source, "table": table, "expect_rows": expect_rows, "engine": engine}
    if one_pass_failed is not None:
        # Kept beside GX's verdict: the two engines must agree, and a disagreement shows.
        result["meta"]["loglake"]["one_pass_failed"] = one_pass_failed
        if one_pass_failed != _failed_names(result):
            log.warning("quality gate on %s: the one-pass evaluation failed %s, great_expectations %s",
                        table, one_pass_failed, _failed_names(result))
    failed = [describe_failure(r) for r in result["results"] if not r.get("success")]
    failed.sort()
    return QualityResult(
        table=table,
        success=bool(result["success"]),
        failed=failed,
        evaluated=int(result["statistics"]["evaluated_expectations"]),
        result=result,
        rows=rows,
    )


def _failed_names(result: dict) -> list[str]:
    return sorted(expectation_name(r) for r in result["results"] if not r.get("success"))


def gx_validate(work, source: str, expect_rows: bool, table: str | None = None) -> dict:
    """The suite validated by great-expectations alone, on ``work`` (the derived columns
    added: :func:`with_derived_columns`): GX's result as JSON. What :func:`validate`
    does with a failure; slower (some 40 Spark jobs, and GX's import)."""
    with _lock:
        validator = _get_validator(work.sparkSession)
        name = table or get_source(source).tables["readready"]
        batch = validator.batch_definition(name).get_batch(batch_parameters={"dataframe": work})
        return batch.validate(suite(source, expect_rows, table), result_format=RESULT_FORMAT).to_json_dict()


_ARG_ORDER = ("column", "column_list", "column_A", "column_B", "or_equal", "regex", "min_value", "max_value")


def expectation_name(expectation_result: dict) -> str:
    """An expectation and its arguments, e.g. ``expect_column_values_to_not_be_null(column=eventid)``."""
    config = expectation_result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    args = []
    for key in _ARG_ORDER:
        if key in kwargs and kwargs[key] is not None:
            value = kwargs[key]
            args.append(f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}")
    if kwargs.get("row_condition"):
        args.append(f"row_condition={_condition_text(kwargs['row_condition'])}")
    return f"{config.get('type', '?')}({', '.join(args)})"


def describe_failure(expectation_result: dict) -> str:
    """One line naming a failed expectation and how it failed, e.g.
    ``expect_column_values_to_not_be_null(column=eventid): 3 of 120 rows``."""
    config = expectation_result.get("expectation_config") or {}
    name = expectation_name(expectation_result)

    exception = expectation_result.get("exception_info") or {}
    if exception.get("raised_exception"):
        return f"{name}: raised {exception.get('exception_message')}"
    for value in exception.values():  # keyed by metric when a metric failed
        if isinstance(value, dict) and value.get("raised_exception"):
            return f"{name}: raised {value.get('exception_message')}"

    res = expectation_result.get("result") or {}
    if "unexpected_count" in res:
        text = f"{res['unexpected_count']} of {res.get('element_count')} rows"
        examples = [v for v in res.get("partial_unexpected_list") or [] if v is not None][:MAX_EXAMPLES]
        if examples:
            text += f", e.g. {json.dumps(examples, default=str)[:300]}"
        return f"{name}: {text}"
    mismatched = (res.get("details") or {}).get("mismatched")
    if mismatched:
        return f"{name}: {json.dumps(mismatched, default=str, sort_keys=True)[:500]}"
    if "observed_value" in res:
        unit = " rows" if "row_count" in str(config.get("type")) else ""
        return f"{name}: observed {json.dumps(res['observed_value'], default=str)[:300]}{unit}"
    return f"{name}: failed"


def _condition_text(condition: Any) -> str:
    if isinstance(condition, dict):
        from great_expectations.expectations.row_conditions import deserialize_row_condition

        try:
            return repr(deserialize_row_condition(condition))  # repr is the readable form
        except (TypeError, ValueError):
            return json.dumps(condition, sort_keys=True)
    return str(condition)


# --------------------------------------------------------------------------- results and docs


def write_result(result: QualityResult, path: str) -> None:
    """Store a result as JSON at a local path (atomically: write, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, target)


def read_result(path: str) -> QualityResult:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return QualityResult(**{k: data[k] for k in ("table", "success", "failed", "evaluated", "result")},
                         rows=data.get("rows"))  # results written before it was recorded lack it


def build_docs(results_dir: str, out_dir: str) -> str:
    """GX Data Docs HTML for every result JSON below ``results_dir``, into ``out_dir``.

    Accepts files written by :func:`write_result` and bare GX validation results; other
    JSON files are skipped. Each result page is named after its file (the run). The
    current suites are rendered too. Returns the path of ``out_dir/index.html``.
    Writes nothing outside ``out_dir``.
    """
    _gx()
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.exceptions import DataContextRequiredError

    # A context of its own, built directly: gx.get_context() would also replace the
    # process-wide "current" context that validate() uses. GX's suite store still asks for
    # a current context, so this one is current while the docs are built, and whatever was
    # current before (or nothing, in a fresh `loglake quality docs` process) is put back.
    context = EphemeralDataContext(project_config=_context_config())
    try:
        previous = project_manager.get_current_project()
    except DataContextRequiredError:
        previous = None
    project_manager.set_project(context)
    try:
        return _build_docs(context, Path(results_dir), Path(out_dir).resolve())
    finally:
        project_manager.set_project(previous)


def _build_docs(context, root: Path, out: Path) -> str:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    site = "loglake"
    context.add_data_docs_site(
        site,
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for source in (s.name for s in REGISTRY if s.checks is not None):
        context.suites.add(suite(source))
    schema = ExpectationSuiteValidationResultSchema()
    paths = sorted(p for p in root.rglob("*.json") if p.is_file()) if root.is_dir() else []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("quality docs: skipping %s: %s", path, exc)
            continue
        gx_dict = data.get("result") if isinstance(data, dict) and "table" in data else data
        if not (isinstance(gx_dict, dict) and "suite_name" in gx_dict and "results" in gx_dict):
            log.info("quality docs: %s is not a validation result, skipped", path)
            continue
        try:
            gx_result = schema.load(gx_dict)
        except Exception as exc:  # marshmallow ValidationError and friends: one bad file
            log.warning("quality docs: skipping %s: %s", path, exc)
            continue
        meta = gx_dict.get("meta") or {}
        run_time = meta.get("validation_time") or dt.datetime.fromtimestamp(
            path.stat().st_mtime, dt.UTC
        ).strftime("%Y%m%dT%H%M%S.%fZ")
        run_name = "__".join(path.relative_to(root).with_suffix("").parts)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=gx_result.suite_name),
            run_id=RunIdentifier(run_name=run_name, run_time=run_time),
            batch_identifier=gx_result.suite_name,
        )
        context.validation_results_store.set(key, gx_result)
    context.build_data_docs(site_names=[site])
    index = out / "index.html"
    if not index.is_file():  # pragma: no cover - GX always writes one
        raise RuntimeError(f"Data Docs were built but {index} is missing")
    return str(index)

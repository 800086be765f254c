"""Expectations as data, and their evaluation on Spark in one aggregate job.

A suite is a list of :class:`Check`: a great-expectations expectation class, its
arguments, an optional row condition, and the note saying why it exists.
:func:`to_gx` builds the GX expectation from a check (for GX's own validation, its
failure reports and Data Docs); :func:`evaluate` computes every check of a suite on a
Spark DataFrame in one aggregate job, with GX's semantics, and returns the result in
the JSON shape of a GX suite validation result.

Why both: GX runs 17 to 41 Spark jobs for one suite (pass/fail only, or with counts and
examples), and importing it costs about 8 s of CPU in every process. An hourly job pays
that 24 times a day, for a verdict that is almost always "pass". So :func:`loglake.quality.validate` decides with
:func:`evaluate`, and hands any failure to GX, whose report (counts and examples) is
what users read. A test holds both to the same verdicts on every check's violation.

Only the expectation classes and arguments loglake's suites use are understood; any
other raises ``ValueError`` when evaluated, rather than being judged wrongly.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Equals:
    """Row-condition term: ``column == value``."""

    column: str
    value: Any


@dataclass(frozen=True)
class Null:
    """Row-condition term: ``column IS NULL`` (``is_null=False``: IS NOT NULL)."""

    column: str
    is_null: bool = True


Term = Equals | Null


@dataclass(frozen=True)
class Check:
    """One expectation: ``kind`` is the GX class name, e.g. ``ExpectColumnValuesToNotBeNull``;
    ``where`` the terms of its row condition, all of which must hold (none: every row)."""

    kind: str
    args: Mapping[str, Any]
    notes: str
    where: tuple[Term, ...] = field(default=())

    @property
    def type(self) -> str:
        """GX's name of the expectation type: ExpectColumnValuesToNotBeNull -> expect_column_values_to_not_be_null."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.kind).lower()

    def columns(self) -> set[str]:
        """Every column the check reads (its arguments and its row condition)."""
        out = {t.column for t in self.where}
        for key in ("column", "column_A", "column_B"):
            if key in self.args:
                out.add(self.args[key])
        out.update(self.args.get("column_list", ()))
        return out


# --------------------------------------------------------------------------- GX form


def condition_json(where: Sequence[Term]) -> dict | None:
    """The row condition as GX serialises it in a validation result."""
    terms = [
        {"type": "comparison", "column": {"name": t.column}, "operator": "==", "parameter": t.value}
        if isinstance(t, Equals)
        else {"type": "nullity", "column": {"name": t.column}, "is_null": t.is_null}
        for t in where
    ]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"type": "and", "conditions": terms}


def to_gx(check: Check):
    """The great-expectations expectation of ``check`` (imports GX: seconds)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    kwargs = dict(check.args)
    condition = None
    for t in check.where:
        if isinstance(t, Equals):
            term = Column(t.column) == t.value
        else:
            term = Column(t.column).is_null() if t.is_null else Column(t.column).is_not_null()
        condition = term if condition is None else condition & term
    if condition is not None:
        kwargs["row_condition"] = condition
    return getattr(gxe, check.kind)(**kwargs, notes=check.notes)


# --------------------------------------------------------------------------- one pass

_SUPPORTED: dict[str, set[str]] = {
    "ExpectTableColumnsToMatchSet": {"column_set", "exact_match"},
    "ExpectTableRowCountToBeBetween": {"min_value", "max_value"},
    "ExpectColumnValuesToNotBeNull": {"column"},
    "ExpectColumnValuesToMatchRegex": {"column", "regex"},
    "ExpectColumnPairValuesAToBeGreaterThanB": {"column_A", "column_B", "or_equal", "ignore_row_if"},
    "ExpectCompoundColumnsToBeUnique": {"column_list"},
}


def _check_supported(check: Check) -> None:
    allowed = _SUPPORTED.get(check.kind)
    if allowed is None:
        raise ValueError(f"{check.kind} has no one-pass evaluation (known: {', '.join(_SUPPORTED)})")
    extra = set(check.args) - allowed
    if extra:
        raise ValueError(f"{check.kind}: no one-pass evaluation of {', '.join(sorted(extra))}")
    if check.kind == "ExpectColumnPairValuesAToBeGreaterThanB" and check.args.get("ignore_row_if") not in (
            None, "either_value_is_missing"):
        raise ValueError(f"{check.kind}: only ignore_row_if='either_value_is_missing' is evaluated in one pass")


def _aggregates(i: int, check: Check):
    """The aggregate columns of one check: element count, and unexpected count or, for
    uniqueness, the count of distinct keys. Each aliased ``c<i>_<what>``."""
    from pyspark.sql import functions as F

    domain = F.lit(True)
    for t in check.where:
        if isinstance(t, Equals):
            term = F.col(t.column) == F.lit(t.value)
        else:
            term = F.col(t.column).isNull() if t.is_null else F.col(t.column).isNotNull()
        domain = domain & term
    # A condition that is null (a null compared) selects no row, as in a Spark filter.
    domain = F.coalesce(domain, F.lit(False))

    def count(cond):
        return F.sum(F.when(cond, 1).otherwise(0))

    a = check.args
    if check.kind == "ExpectColumnValuesToNotBeNull":
        unexpected = domain & F.col(a["column"]).isNull()
    elif check.kind == "ExpectColumnValuesToMatchRegex":
        # Nulls are neither expected nor unexpected; a match anywhere counts (rlike, as GX).
        unexpected = domain & F.col(a["column"]).isNotNull() & ~F.col(a["column"]).rlike(a["regex"])
    elif check.kind == "ExpectColumnPairValuesAToBeGreaterThanB":
        col_a, col_b = F.col(a["column_A"]), F.col(a["column_B"])
        domain = domain & col_a.isNotNull() & col_b.isNotNull()
        unexpected = domain & ~(col_a >= col_b if a.get("or_equal") else col_a > col_b)
    elif check.kind == "ExpectCompoundColumnsToBeUnique":
        cols = list(a["column_list"])
        all_missing = F.lit(True)
        for c in cols:
            all_missing = all_missing & F.col(c).isNull()
        domain = domain & ~all_missing
        return [count(domain).alias(f"c{i}_n"),
                F.count_distinct(F.when(domain, F.struct(*[F.col(c) for c in cols]))).alias(f"c{i}_distinct")]
    else:
        return []
    return [count(domain).alias(f"c{i}_n"), count(unexpected).alias(f"c{i}_bad")]


def _outcome(check: Check, values: Mapping[str, Any], i: int, columns: list[str], rows: int) -> tuple[bool, dict]:
    a = check.args
    if check.kind == "ExpectTableColumnsToMatchSet":
        wanted, have = set(a["column_set"]), set(columns)
        ok = wanted == have if a.get("exact_match", True) else wanted <= have
        return ok, {"observed_value": list(columns)}
    if check.kind == "ExpectTableRowCountToBeBetween":
        lo, hi = a.get("min_value"), a.get("max_value")
        return (lo is None or rows >= lo) and (hi is None or rows <= hi), {"observed_value": rows}
    # a count is missing (Tally) or null (an aggregate) where no row was counted
    n = int(values.get(f"c{i}_n") or 0)
    if check.kind == "ExpectCompoundColumnsToBeUnique":
        ok = int(values.get(f"c{i}_distinct") or 0) == n
        bad = 0 if ok else None  # how many rows share a key: GX counts it when it fails
    else:
        bad = int(values.get(f"c{i}_bad") or 0)
        ok = bad == 0
    result = {"element_count": n, "unexpected_count": bad, "partial_unexpected_list": []}
    if bad is not None:
        result["unexpected_percent"] = 100.0 * bad / n if n else None
    return ok, result


def evaluate(df, checks: Sequence[Check], suite_name: str) -> dict:
    """Every check of ``checks`` on ``df`` in one Spark aggregate job: a dict shaped like
    GX's ``ExpectationSuiteValidationResult.to_json_dict()`` (success, results,
    statistics), so that results and Data Docs do not depend on which engine judged.
    A check that names a column ``df`` lacks fails (GX raises for it)."""
    from pyspark.sql import functions as F

    for check in checks:
        _check_supported(check)
    columns = list(df.columns)
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, check in _runnable(checks, columns):
        aggs += _aggregates(i, check)
    return judge(checks, df.agg(*aggs).first().asDict(), columns, suite_name)


def _runnable(checks: Sequence[Check], columns: Sequence[str]) -> list[tuple[int, Check]]:
    present = set(columns)
    return [(i, c) for i, c in enumerate(checks)
            if c.kind != "ExpectTableColumnsToMatchSet" and c.columns() <= present]


def judge(checks: Sequence[Check], values: Mapping[str, Any], columns: Sequence[str], suite_name: str) -> dict:
    """The validation result (GX's JSON shape) from the counts of :func:`evaluate`'s
    aggregate or of :class:`Tally`: ``rows`` and ``c<i>_n``/``c<i>_bad``/``c<i>_distinct``."""
    columns = list(columns)
    present = set(columns)
    rows = int(values["rows"])
    runnable_ids = {i for i, _ in _runnable(checks, columns)}
    results = []
    for i, check in enumerate(checks):
        if check.kind == "ExpectTableColumnsToMatchSet" or i in runnable_ids:
            ok, result = _outcome(check, values, i, columns, rows)
            exception = {"raised_exception": False, "exception_message": None, "exception_traceback": None}
        else:
            missing = sorted(check.columns() - present)
            ok, result = False, {}
            exception = {"raised_exception": True, "exception_traceback": None,
                         "exception_message": f"column(s) {', '.join(missing)} not found"}
        kwargs = {**check.args, "batch_id": f"loglake-{suite_name}"}
        if check.where:
            kwargs["row_condition"] = condition_json(check.where)
        results.append({
            "success": ok,
            "expectation_config": {"type": check.type, "kwargs": kwargs, "meta": {}, "notes": check.notes,
                                   "severity": "critical"},
            "result": result,
            "meta": {},
            "exception_info": exception,
        })
    passed = sum(r["success"] for r in results)
    return {
        "success": passed == len(results),
        "results": results,
        "suite_name": suite_name,
        "suite_parameters": {},
        "statistics": {
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        "meta": {"rows": rows},  # rows evaluated: what the run reconciles its files with
        "id": None,
    }


# --------------------------------------------------------------------------- in the writing tasks

# Java's \s (what Spark's rlike means) is [ \t\n\x0B\f\r]; RE2's (pyarrow's) lacks \x0B.
_JAVA_SPACE = r"[ \t\n\x0B\f\r]"
_JAVA_NON_SPACE = r"[^ \t\n\x0B\f\r]"


def re2_of_java(pattern: str) -> str:
    r"""A Java regex as RE2 (pyarrow) with the same matches, for the constructs loglake's
    suites use: RE2 already reads ``\z``, ``^``, classes and counted repeats as Java
    does; ``\s``/``\S`` are spelled out. Constructs that mean otherwise in RE2 (``$``,
    ``.``, ``\v``, ``\h``, ``\R``, ``\Q``, lookarounds, ``\s`` inside a bracket class)
    are refused with ValueError, when the suite is built, rather than judged wrongly."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if not in_class and (ch in "$." or pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i)):
            raise ValueError(f"regex {pattern!r}: {pattern[i:i + 4]!r} has no RE2 translation here")
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "vhRQ":
                raise ValueError(f"regex {pattern!r}: \\{nxt} has no RE2 translation here")
            if nxt in "sS":
                if in_class:
                    raise ValueError(f"regex {pattern!r}: \\{nxt} inside [...] has no RE2 translation here")
                out.append(_JAVA_SPACE if nxt == "s" else _JAVA_NON_SPACE)
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


class Tally:
    """A suite's counts over Arrow tables fed one after another: what a writing task
    takes of the rows it writes, so that the gate needs no job of its own reading the
    staged files back. :func:`merge` adds the tallies of all tasks up; :func:`judge`
    decides, as for :func:`evaluate`'s aggregate, with the same semantics (a test holds
    the two engines to the same verdicts).

    Distinct counts add up across tallies only when no key can be in two of them: the
    uniqueness checks' keys hold the partition columns, and each partition's rows are
    written by one task. ``derive`` adds the columns the suite checks but the table does
    not have (``quality.derive_arrow``)."""

    def __init__(self, checks: Sequence[Check] = (), derive: Callable[[Any], Any] | None = None,
                 partition_columns: Sequence[str] = ()):
        for check in checks:
            _check_supported(check)
        self.checks = list(checks)
        # translated once; an untranslatable regex is refused here (the run builds one
        # tally on the driver before its write job)
        self._re2 = {i: re2_of_java(c.args["regex"]) for i, c in enumerate(self.checks)
                     if c.kind == "ExpectColumnValuesToMatchRegex"}
        self.derive = derive
        self.rows = 0
        self.columns: list[str] | None = None
        self.values: dict[str, int] = {}
        self._keys: dict[int, list] = {}
        self._key_rows: dict[int, int] = {}
        self._folded: dict[int, int] = {}  # distinct keys of the partitions counted already
        self.partition_columns = tuple(partition_columns)
        self._pending: list = []  # tables added but not counted yet
        self._pending_rows = 0

    # Rows held before they are counted together: a check costs some twenty Arrow calls
    # whatever the rows, and an hourly run's task adds forty partitions of a hundred
    # rows each (counting each alone was 5 ms a partition). Few enough that the rows
    # held (they keep a written slice's buffers alive) stay some 10 MB.
    PENDING_ROWS = 8_192
    # Key rows a uniqueness check holds before it counts those of the partitions that are
    # complete (see _fold): held to the task's end, a medium ingest's task held some
    # 125k rows of keys, and counting them there took its worker ~100 MiB more at once.
    FOLD_ROWS = 65_536

    def add(self, table) -> None:
        """Count a table's rows (the table's columns, as written, plus partition columns)."""
        if not self.checks:
            self.rows += table.num_rows
            return
        if self._pending and table.schema != self._pending[0].schema:
            self._flush()
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.PENDING_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        parts, self._pending, self._pending_rows = self._pending, [], 0
        self._count(parts[0] if len(parts) == 1 else pa.concat_tables(parts))

    def _count(self, table) -> None:
        import pyarrow.compute as pc

        if self.derive is not None:
            table = self.derive(table)
        if self.columns is None:
            self.columns = list(table.column_names)
        self.rows += table.num_rows
        for i, check in _runnable(self.checks, table.column_names):
            domain = _arrow_domain(table, check.where)
            a = check.args
            if check.kind == "ExpectCompoundColumnsToBeUnique":
                cols = list(a["column_list"])
                present = None
                for c in cols:
                    valid = pc.is_valid(table[c])
                    present = valid if present is None else pc.or_(present, valid)
                domain = pc.and_(domain, present)
                self._add(f"c{i}_n", domain)
                keys = table.select(cols).filter(domain)
                self._keys.setdefault(i, []).append(keys)
                self._key_rows[i] = self._key_rows.get(i, 0) + keys.num_rows
                if self._key_rows[i] >= self.FOLD_ROWS:
                    self._fold(i, cols)
                continue
            if check.kind == "ExpectColumnValuesToNotBeNull":
                unexpected = pc.and_(domain, pc.is_null(table[a["column"]]))
            elif check.kind == "ExpectColumnValuesToMatchRegex":
                col = table[a["column"]]
                matched = pc.fill_null(pc.match_substring_regex(col, self._re2[i]), True)
                unexpected = pc.and_(domain, pc.invert(matched))
            elif check.kind == "ExpectColumnPairValuesAToBeGreaterThanB":
                col_a, col_b = table[a["column_A"]], table[a["column_B"]]
                domain = pc.and_(domain, pc.and_(pc.is_valid(col_a), pc.is_valid(col_b)))
                ok = pc.greater_equal(col_a, col_b) if a.get("or_equal") else pc.greater(col_a, col_b)
                unexpected = pc.and_(domain, pc.invert(pc.fill_null(ok, True)))
            else:
                continue
            self._add(f"c{i}_n", domain)
            self._add(f"c{i}_bad", unexpected)

    def _add(self, name: str, mask) -> None:
        import pyarrow.compute as pc

        self.values[name] = self.values.get(name, 0) + int(pc.sum(pc.cast(mask, "int64")).as_py() or 0)

    def _fold(self, i: int, cols: list[str]) -> None:
        """Count the distinct keys of the partitions whose rows are all added, and drop
        them: a writer adds a partition's rows together (sorted by partition), so every
        partition but the last one added is complete, and keys that hold the partition
        columns cannot repeat across partitions. Without partition columns (or when they
        are not all in the key) nothing is folded."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.partition_columns or not set(self.partition_columns) <= set(cols):
            return
        keys = pa.concat_tables(self._keys[i])
        last = None
        for c in self.partition_columns:
            same = pc.fill_null(pc.equal(keys[c], keys[c][keys.num_rows - 1]), False)
            last = same if last is None else pc.and_(last, same)
        self._folded[i] = self._folded.get(i, 0) + _distinct_rows(keys.filter(pc.invert(last)))
        still = keys.filter(last)
        self._keys[i], self._key_rows[i] = [still], still.num_rows

    def counts(self) -> dict[str, Any]:
        """The tally as JSON-able counts (distinct keys counted now)."""
        import pyarrow as pa

        self._flush()
        out: dict[str, Any] = {**self.values, "rows": self.rows, "columns": self.columns}
        for i, parts in self._keys.items():
            out[f"c{i}_distinct"] = self._folded.get(i, 0) + _distinct_rows(pa.concat_tables(parts))
        return out


def _distinct_rows(keys) -> int:
    return keys.group_by(keys.column_names).aggregate([]).num_rows if keys.num_rows else 0


def _arrow_domain(table, where: Sequence[Term]):
    """The rows a check's row condition selects (a null comparison selects none, as in a
    Spark filter)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    domain = pa.array([True] * table.num_rows, pa.bool_())
    for t in where:
        col = table[t.column]
        if isinstance(t, Equals):
            term = pc.fill_null(pc.equal(col, pa.scalar(t.value, col.type)), False)
        else:
            term = pc.is_null(col) if t.is_null else pc.is_valid(col)
        domain = pc.and_(domain, term)
    return domain


def merge(counts: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Several tallies' counts as one (``columns``: what a tally that saw no rows would
    have seen); returns the values for :func:`judge` and the columns."""
    values: dict[str, int] = {"rows": 0}
    seen: list[str] | None = None
    for c in counts:
        for key, value in c.items():
            if key == "columns":
                if value is not None and seen is None:
                    seen = list(value)
                elif value is not None and list(value) != seen:
                    raise ValueError(f"writing tasks saw different columns: {seen} and {list(value)}")
            else:
                values[key] = values.get(key, 0) + int(value)
    return values, seen if seen is not None else list(columns)


# --------------------------------------------------------------------------- suite building blocks
# What the sources' suites (``Source.checks``) are made of.

# Java regexes (Spark rlike finds a match anywhere, so patterns are anchored; Java's $
# also matches before a trailing newline, so they end with \z).
ACCOUNT_RE = r"^[0-9]{12}\z"
# Real regions (us-gov-east-1, ap-southeast-3) and anonymised ones (sagov-westsouth-1r).
REGION_RE = r"^[a-z]{2,8}(-[a-z]+)+-[0-9]{1,2}[a-z]?\z"
NOT_BLANK_RE = r"\S"
DATE_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\z"
HOUR_RE = r"^([01][0-9]|2[0-3])\z"


def check(kind: str, *, notes: str, where: tuple = (), **args) -> Check:
    return Check(kind, args, notes, where)


def column_set(columns: Sequence[str]) -> Check:
    return check(
        "ExpectTableColumnsToMatchSet",
        column_set=list(columns),
        exact_match=True,
        notes="Columns are a public contract (schema.py): a missing or extra column would be"
        " published and break readers or the catalog schema.",
    )


def row_count(expect_rows: bool) -> Check:
    return check(
        "ExpectTableRowCountToBeBetween",
        min_value=1 if expect_rows else 0,
        notes="When files were read and rows kept, publishing nothing means rows were lost"
        " between conversion and publish. With nothing to publish, 0 rows is expected.",
    )


# The latest eventtime a file delivered on dt can hold, derived by the gate on a copy of
# the rows (never published): logs are delivered after the events, within hours, so one
# later than the end of its delivery day plus one day of slack (dt + 48 h) cannot have
# been delivered that day.
DELIVERY_DEADLINE = "_delivery_deadline"
DELIVERY_SLACK_SECONDS = 2 * 86400


def delivered_by_deadline(who: str) -> Check:
    return check(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        column_A=DELIVERY_DEADLINE,
        column_B="eventtime",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        notes=f"{who} delivers a record after the event, so eventtime is at most the end of the"
        f" delivery day (dt) plus one day of slack: {DELIVERY_DEADLINE} = dt 00:00 UTC + 48 h."
        " Later means a wrong time zone or unit, or a file in the wrong partition. Old events"
        " (replays, late deliveries) are fine, so there is no lower bound.",
    )


def key_partition_shapes() -> list[Check]:
    """The partition values a key gives, by shape: account, region and delivery date."""
    return [
        check(
            "ExpectColumnValuesToMatchRegex",
            column="account",
            regex=ACCOUNT_RE,
            notes="The account partition value comes from the object key and must be a 12-digit"
            " account id (leading zeros kept): the partition path and the catalog depend on it.",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="region",
            regex=REGION_RE,
            notes="The region partition value comes from the object key; it must have a region's"
            " shape (no fixed list, so new and anonymised regions pass).",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="dt",
            regex=DATE_RE,
            notes="dt is the delivery date YYYY-MM-DD from the key: partition paths, date"
            " selections and the eventtime deadline depend on it.",
        ),
    ]


@functools.lru_cache(maxsize=1024)
def delivery_deadline(day: str | None):
    """The latest eventtime a file delivered on ``day`` (YYYY-MM-DD) can hold, as an aware
    UTC datetime (the gate's :data:`DELIVERY_DEADLINE`); None for a day that is no date.
    Asked once per object, for a handful of days: cached."""
    import datetime as dt

    if not day or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day):
        return None
    try:
        midnight = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC)
    except ValueError:
        return None
    return midnight + dt.timedelta(seconds=DELIVERY_SLACK_SECONDS)


def with_delivery_deadline(df):
    """``df`` with :data:`DELIVERY_DEADLINE` (Spark)."""
    from pyspark.sql import functions as F

    if "dt" not in df.columns:  # the column-set expectation reports it
        return df.withColumn(DELIVERY_DEADLINE, F.lit(None).cast("timestamp"))
    # Explicit UTC ('Z'), and seconds arithmetic: `+ INTERVAL 48 HOURS` follows the
    # session time zone's DST changes in Spark 3.5. try_: a bad dt gives null, not an error.
    midnight = F.expr("unix_seconds(try_to_timestamp(concat(dt, 'T00:00:00Z')))")
    return df.withColumn(DELIVERY_DEADLINE, F.timestamp_seconds(midnight + F.lit(DELIVERY_SLACK_SECONDS)))


def delivery_deadline_arrow(table):
    """:func:`with_delivery_deadline` for an Arrow table (what a writing task tallies), with
    the same values: dt midnight UTC + 48 h, null for a dt that is no date."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if "dt" not in table.column_names:
        return table.append_column(DELIVERY_DEADLINE, pa.nulls(n, pa.timestamp("us")))
    midnight = pc.strptime(table["dt"], format="%Y-%m-%d", unit="us", error_is_null=True)
    # strptime rolls an impossible date over (2024-02-30 -> 03-01); Spark gives null
    same_day = pc.equal(pc.strftime(midnight, format="%Y-%m-%d"), table["dt"])
    midnight = pc.if_else(pc.fill_null(same_day, False), midnight, pa.nulls(n, midnight.type))
    deadline = pc.add(midnight, pa.scalar(dt.timedelta(seconds=DELIVERY_SLACK_SECONDS)))
    if "eventtime" in table.column_names:
        deadline = deadline.cast(table.schema.field("eventtime").type)
    return table.append_column(DELIVERY_DEADLINE, deadline)


"""Athena runs: one statement through StartQueryExecution, polled, its results read,
and a plain-text table of them."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any


class AthenaQueryFailed(RuntimeError):
    pass


def run_athena(athena, sql_text: str, *, database: str, output_location: str | None = None,
               workgroup: str | None = None, poll_seconds: float = 0.25, max_poll_seconds: float = 2.0,
               timeout: float = 1800.0, sleep=time.sleep) -> tuple[list[str], list[tuple]]:
    """Run one statement through Athena (StartQueryExecution, poll, GetQueryResults);
    returns (column names, rows of strings or None). Polls back off from ``poll_seconds``
    to ``max_poll_seconds``."""
    kwargs: dict[str, Any] = {"QueryString": sql_text, "QueryExecutionContext": {"Database": database}}
    if output_location:
        kwargs["ResultConfiguration"] = {"OutputLocation": output_location}
    if workgroup:
        kwargs["WorkGroup"] = workgroup
    qid = athena.start_query_execution(**kwargs)["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise AthenaQueryFailed(f"Athena query {qid} {state}: {status.get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=qid)
            raise AthenaQueryFailed(f"Athena query {qid} still {state} after {timeout:.0f}s; stopped")
        sleep(poll_seconds)
        poll_seconds = min(max_poll_seconds, poll_seconds * 2)
    columns: list[str] = []
    rows: list[tuple] = []
    first = True
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
        result = page["ResultSet"]
        if not columns:
            info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = [c.get("Label") or c.get("Name") for c in info]
        for row in result.get("Rows", []):
            values = tuple(d.get("VarCharValue") for d in row.get("Data", []))
            if first and columns and list(values) == columns:  # Athena repeats the header as row 1
                first = False
                continue
            first = False
            rows.append(values)
    return columns, rows


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as an aligned text table (NULL for None), one line per row."""
    def cell(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, dt.datetime):
            return v.isoformat(sep=" ")
        return str(v).replace("\n", "\\n")

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)

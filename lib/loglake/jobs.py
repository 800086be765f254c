"""Glue job entry points: parse standard Glue arguments, then run the generic converter.

Scripts in ``glue_jobs/`` are three lines that call :func:`main`. The same script
runs on AWS Glue (GlueContext/Job, s3:// output) and locally (SparkSession, the
config's readready location, e.g. file://), through :mod:`loglake.runtime`.

Arguments: ``--JOB_NAME``, ``--config`` (path or s3:// URI), and optionally one
selection: ``--date D[,D...]``, ``--from-date``/``--to-date``, or
``--partitions-since TIMESTAMP`` (raw partitions registered since then). Without a
selection the run is *scheduled*: it converts the raw objects AddAPart put in the
source's inbox since the last committed run (each object once), under a lock, bounded
by ``--max-files``, then compacts closed partitions. A selection rebuilds its
partitions from all their raw objects. Optional: ``--summary-json URI``,
``--runtime auto|glue|local``.
"""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from loglake import inbox, logs, planning, runner, runtime, storage
from loglake.config import load_config, with_run_bounds
from loglake.sources import get_source

log = logging.getLogger("loglake.jobs")


def main(source_name: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    logs.setup()
    args = runtime.resolve_job_args(sys.argv if argv is None else argv)
    config = load_config(args["config"])
    storage.configure(config.aws.endpoint_url, config.aws.region)
    selection = planning.Selection.parse(
        args.get("date"), args.get("from_date"), args.get("to_date"), args.get("partitions_since")
    )
    config = with_run_bounds(config, args.get("max_partitions"), args.get("max_files"))
    if not config.readready.location:
        raise planning.SelectionError("config: readready.location is empty; the job has nowhere to write")
    source = get_source(source_name)
    glue = storage.client("glue", config.aws.endpoint_url, config.aws.region)
    raw = f"catalog:{config.catalog.database}.{config.table(source.name, 'raw')}"
    rt = runtime.start(args["JOB_NAME"], args)
    lake = config.readready.location
    if selection.everything:  # scheduled mode: the objects AddAPart saw since the last committed run
        summary = runner.run(rt.spark, source, config, lake, lambda: runner.from_inbox(source, config, lake),
                             kind=runner.SCHEDULED, glue=glue, raw=f"inbox:{inbox.folder(lake, source.name)}",
                             compact=True)
    else:
        plan = planning.plan_from_catalog(glue, source, config, selection)
        summary = runner.run(rt.spark, source, config, lake, lambda: runner.rebuild(plan),
                             kind=runner.SELECTION, selection=selection, glue=glue, raw=raw)
        if summary["status"] == "skipped_locked":  # asked for by someone: fail visibly, not as a no-op
            raise planning.SelectionError(f"not run: {summary['detail']}")
    text = json.dumps(summary, indent=2)
    print(text)
    if args.get("summary_json"):
        storage.write_bytes(args["summary_json"], text.encode())
    rt.commit()
    return summary


def alerts(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The alerts job: the detection rules through Athena over the rows published since
    the last alerts run, each new match to ``--sink`` (the stack's alarm topic). Fails
    (so that the job's failure alarm fires) when a rule or a sink failed; the matches not
    sent stay for the next run."""
    from loglake import alerts as alert_runs

    logs.setup()
    args = runtime.resolve_job_args(sys.argv if argv is None else argv)
    config = load_config(args["config"])
    storage.configure(config.aws.endpoint_url, config.aws.region)
    if not config.readready.location or not args.get("sink"):
        raise planning.SelectionError("the alerts job needs readready.location in the config and --sink")
    matches = alert_runs.athena_engine(config, args.get("athena_output"), args.get("workgroup"))
    summary = alert_runs.run(config, config.readready.location, alert_runs.sinks_of([args["sink"]], config), matches)
    print(json.dumps(summary, indent=2, default=str))
    if summary["failed"]:
        raise RuntimeError(f"alerts: {summary['failed']} failed (rules or deliveries); they are retried next run")
    return summary

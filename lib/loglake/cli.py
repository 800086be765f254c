"""The ``loglake`` command: a thin shell over library calls.

JSON results go to stdout, logs to stderr, so ``loglake run ... > summary.json``
works. Exit codes: 0 done, 1 the run failed, 2 bad arguments or config.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from loglake import __version__, logs, storage
from loglake.config import ConfigError, dump_config, load_config, with_run_bounds
from loglake.sources import SOURCES

log = logging.getLogger("loglake.cli")

EPILOG = """\
config: --config FILE (or s3:// URI), else $LOGLAKE_CONFIG, plus LOGLAKE__SECTION__KEY
environment overrides (see README, "Configuration").
"""


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file or s3:// URI (default: $LOGLAKE_CONFIG)")


def _add_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection (bounded runs; default: every date found)")
    g.add_argument("--date", metavar="YYYY-MM-DD[,...]", help="only these delivery dates")
    g.add_argument("--from-date", metavar="YYYY-MM-DD", help="first delivery date, inclusive")
    g.add_argument("--to-date", metavar="YYYY-MM-DD", help="last delivery date, inclusive")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loglake",
        description="Turn raw AWS CloudTrail and CloudWatch Logs (Firehose) into read-ready ORC tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loglake {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="convert raw logs in a folder or s3:// prefix to readready ORC, no AWS needed",
        description=(
            "Find raw files below --raw (recursively) by the source's key layout, convert "
            "them on local Spark, and write readready ORC/ZLIB below --out/<table>/, "
            "partitioned like raw. A selection (or no flag: everything) rebuilds its "
            "partitions from all their raw files, one sorted file each; --scheduled adds "
            "only the files no run has converted yet. Prints a JSON summary (files_read, "
            "records_read, written, filtered, filtered_by_rule, control_messages, "
            "skipped_keys, quarantined, ...)."
        ),
    )
    run.add_argument("source", choices=sorted(SOURCES), help="which log source")
    run.add_argument("--raw", required=True, metavar="DIR_OR_URI", help="folder, file:// or s3:// prefix")
    run.add_argument("--out", required=True, metavar="DIR_OR_URI", help="lake root; tables go below it")
    _add_selection(run)
    run.add_argument("--summary-json", metavar="FILE", help="also write the summary here")
    sched = run.add_argument_group("scheduled mode (instead of a selection)")
    sched.add_argument(
        "--scheduled", action="store_true",
        help="convert only the files no run has converted yet (modified since the last run's "
        "watermark and not in a partition's manifest), add their rows to the partitions, then "
        "compact closed partitions; state and lock under --out/_state/",
    )
    sched.add_argument("--max-partitions", type=int, default=None, metavar="N",
                       help="with --scheduled: at most this many partitions per run (default: "
                       "scheduled.max_partitions; 0: no bound)")
    sched.add_argument("--max-files", type=int, default=None, metavar="N",
                       help="with --scheduled: at most this many raw files per run (default: scheduled.max_files; "
                       "0: no bound)")
    run.add_argument(
        "--catalog", action="store_true",
        help="register the written partitions in the config's Glue database (creates the table if missing)",
    )
    _add_config(run)

    comp = sub.add_parser(
        "compact",
        help="merge each partition's files into one sorted, deduplicated file",
        description="Hourly runs add a file per run to open partitions. This merges a partition's "
        "current files into one sorted file (repeats of an event id dropped and counted), written "
        "to a new folder; the partition's manifest (and with --catalog its Glue location) then "
        "switches to it in one step. Replaced files stay compaction.retain_minutes for queries "
        "already running; --retain-minutes 0 removes them at once. Already compact partitions are "
        "skipped, so running it twice changes nothing. Prints a JSON summary "
        "(partitions_compacted, files_before, files_after, rows, duplicates, ...).",
    )
    comp.add_argument("source", choices=sorted(SOURCES), help="which log source")
    comp.add_argument("--out", required=True, metavar="DIR", help="the lake root given to `run --out`")
    _add_selection(comp)
    comp.add_argument("--closed", action="store_true",
                      help="only partitions closed for compaction.grace_hours (their day, or hour, is over)")
    comp.add_argument("--retain-minutes", type=float, default=None, metavar="N",
                      help="keep replaced files this long (default compaction.retain_minutes; 0 = remove now)")
    comp.add_argument("--catalog", action="store_true", help="move the Glue partitions to the compacted folders")
    comp.add_argument("--summary-json", metavar="FILE", help="also write the summary here")
    _add_config(comp)

    ap = sub.add_parser("addapart", help="register raw partitions in Glue from S3 notifications")
    apsub = ap.add_subparsers(dest="action", metavar="ACTION", required=True)
    drain = apsub.add_parser(
        "drain",
        help="poll an SQS queue of S3 notifications until empty and register partitions",
        description="Runs the AddAPart Lambda's code outside Lambda: for local use and backlogs. "
        "Prints a JSON outcome (messages, objects, partitions, created, existed, failed, glue_calls, ...).",
    )
    drain.add_argument("--queue", required=True, metavar="URL", help="SQS queue URL")
    drain.add_argument("--batch-messages", type=int, default=100, help="messages per batch (default 100)")
    drain.add_argument("--max-messages", type=int, help="stop after this many messages")
    _add_config(drain)
    backfill = apsub.add_parser(
        "backfill",
        help="list existing objects and register their partitions",
        description="For data that landed before AddAPart was wired up. Prints a JSON outcome.",
    )
    backfill.add_argument("--source", required=True, choices=sorted(SOURCES))
    backfill.add_argument("--bucket", help="bucket to list (default: the source's configured bucket)")
    backfill.add_argument("--prefix", default=None, help="key prefix to list (default: the source's prefix)")
    _add_config(backfill)

    for name, text in (
        ("generate", "write realistic raw CloudTrail and Firehose logs built from the real samples (see --help)"),
        ("bench", "benchmark readready against raw and the naive and strong Spark jobs; writes "
                  "bench/results-SCALE.json, and bench/results.json at medium and large (see --help)"),
    ):
        sub.add_parser(name, help=text, add_help=False)  # main() hands these to their own parsers

    qual = sub.add_parser("quality", help="data-quality results of past runs")
    qualsub = qual.add_subparsers(dest="action", metavar="ACTION", required=True)
    docs = qualsub.add_parser(
        "docs",
        help="build great-expectations Data Docs (HTML) from the stored validation results",
        description="Every run stores its validation result as JSON in <lake>/_quality/<source>/<run_id>.json; "
        "this renders them (and the suites) as Data Docs HTML. Prints the index.html path.",
    )
    docs.add_argument("--lake", required=True, metavar="DIR", help="the lake root given to --out (local folder)")
    docs.add_argument("--out", required=True, metavar="DIR", help="where to write the HTML")

    con = sub.add_parser(
        "contract",
        help="check that every ORC file of a lake reads in Athena exactly as written",
        description="Reads the footer of every ORC file below each table loglake owns (both readready "
        "tables, quarantine, runs, connect_users) in --lake and checks it against the table's Glue "
        "definition: the same column names in the same order (Athena reads ORC columns by position) "
        "and an ORC type kind Athena accepts for each declared type (a timestamp column must be ORC "
        "TIMESTAMP). Table names come from the config. Prints a JSON report (ok, files_checked, "
        "files_by_table, problems); exit 1 when any file breaks the contract. Reads whole files: "
        "meant for local lakes and spot checks of an s3:// prefix.",
    )
    con.add_argument("--lake", required=True, metavar="DIR_OR_URI", help="the lake root given to --out")
    _add_config(con)

    cfg = sub.add_parser("config", help="show or check the effective configuration")
    cfgsub = cfg.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = cfgsub.add_parser("show", help="print the effective config (file + environment) as YAML")
    _add_config(show)
    check = cfgsub.add_parser("check", help="validate the config; exit 2 naming the wrong key")
    _add_config(check)

    ddl = sub.add_parser(
        "ddl",
        help="print the Athena DDL of every loglake table and view, or --apply it to Glue",
        description="Prints the rendered statements of ddl/ (CREATE DATABASE, the raw, projected raw, "
        "readready, quarantine, runs and connect_users tables, the sessions view), with the config's "
        "database, table names and locations, separated by ';'. --apply creates or updates the "
        "tables through the Glue API instead (the same definitions) and prints a JSON outcome; "
        "views need Athena (--athena), otherwise their statements are printed in the outcome. "
        "The partition-projection variant (cloudtrail_raw_projected) is applied only when "
        "--table names it.",
    )
    ddl.add_argument("--table", action="append", metavar="T",
                     help="only this table or view: a key (cloudtrail_readready), its configured name, "
                     "or sessions; repeatable")
    ddl.add_argument("--org", metavar="o-ID", help="organization id in the projected table's location (org trails)")
    ddl.add_argument("--projection-start", metavar="yyyy/MM/dd",
                     help="first day the projected table covers (default 2020/01/01)")
    ddl.add_argument("--apply", action="store_true", help="create or update the tables in the config's Glue database")
    ddl.add_argument("--athena", action="store_true", help="with --apply: also create the views through Athena")
    ddl.add_argument("--athena-output", metavar="S3_URI", help="Athena query result location (else the workgroup's)")
    ddl.add_argument("--workgroup", metavar="NAME", help="Athena workgroup")
    _add_config(ddl)

    query = sub.add_parser(
        "query",
        help="run a query of the analysts' library (ddl/queries) on local Spark or Athena",
        description="Runs ddl/queries/NAME.sql, the Athena (Trino) SQL analysts use: on local Spark over "
        "the readready tables below --lake (transpiled with sqlglot), or with --engine athena through "
        "Athena (needs AWS credentials). Prints the rows as a table (or --format json). Parameters are "
        "given as --param key=value and inserted as quoted, validated SQL literals; --list shows "
        "every query with its question and parameters.",
    )
    query.add_argument("name", nargs="?", metavar="NAME", help="the query (see --list)")
    query.add_argument("--list", action="store_true", help="list the queries, their questions and parameters")
    query.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a query parameter; repeatable")
    query.add_argument("--engine", choices=["spark", "athena"], default="spark", help="where to run (default spark)")
    query.add_argument("--lake", metavar="DIR_OR_URI",
                       help="lake root with the readready tables (spark; default: readready.location)")
    query.add_argument("--raw", metavar="DIR_OR_URI",
                       help="raw CloudTrail folder, for queries of the raw table (spark)")
    query.add_argument("--sql", action="store_true", help="print the rendered Athena SQL and exit")
    query.add_argument("--format", choices=["table", "json"], default="table", help="output (default table)")
    query.add_argument("--athena-output", metavar="S3_URI", help="Athena query result location (else the workgroup's)")
    query.add_argument("--workgroup", metavar="NAME", help="Athena workgroup")
    _add_config(query)

    al = sub.add_parser("alerts", help="detection rules (ddl/alerts) over newly published rows, sent to sinks")
    alsub = al.add_subparsers(dest="action", metavar="ACTION", required=True)
    alsub.add_parser("list", help="list the rules: name, severity, table, key, message, description",
                     description="Prints every rule of ddl/alerts as JSON lines.")
    arun = alsub.add_parser(
        "run",
        help="run the rules over the rows published since the last alerts run; send each new match",
        description="Runs each rule of ddl/alerts (Athena SQL) over the readready files published since the last "
        "alerts run, by publish order (the runs table's published_files), not by event time, so late events are "
        "not missed; a lake's first run looks back alerts.first_run_lookback_hours of publishing, --since "
        "overrides. Each new match goes to every --sink (file:PATH appends JSON lines; sns:TOPIC_ARN publishes; "
        "webhook:URL posts Slack-compatible {\"text\": ...}, 3 attempts, 10 s timeout) and is recorded under "
        "<lake>/_state/alerts/: a rerun, or an overlapping window, does not send it again. Delivery is at least "
        "once. Prints a JSON summary (per rule: matches, sent, already_sent, failed); exit 1 when anything "
        "failed (those matches stay unrecorded and are sent by the next run).",
    )
    arun.add_argument("--sink", action="append", required=True, metavar="SINK",
                      help="file:PATH, sns:TOPIC_ARN or webhook:URL; repeatable (a match is recorded once every sink "
                      "took it)")
    arun.add_argument("--rule", action="append", metavar="NAME", help="only this rule; repeatable (default: all)")
    arun.add_argument("--since", metavar="TIMESTAMP",
                      help="take every run finished since this time (ISO 8601, UTC), not only the new ones")
    arun.add_argument("--lake", metavar="DIR_OR_URI", help="lake root (default: readready.location)")
    arun.add_argument("--engine", choices=["spark", "athena"], default="spark",
                      help="run the rules on local Spark over the lake's files (default) or through Athena")
    arun.add_argument("--athena-output", metavar="S3_URI", help="Athena query result location (else the workgroup's)")
    arun.add_argument("--workgroup", metavar="NAME", help="Athena workgroup")
    _add_config(arun)

    lk = sub.add_parser("lookup", help="load lookup tables the query library joins to")
    lksub = lk.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = lksub.add_parser(
        "load",
        help="load a lookup table from saved AWS CLI output",
        description="connect-users: reads saved `aws connect list-users --instance-id ID` output "
        "(JSON with UserSummaryList) and writes the connect_users table (id, username, instance, arn; "
        "ORC/ZLIB, one file per instance, replaced on reload) below --out/connect_users/. The instance "
        "comes from --instance or from each user's ARN. Prints a JSON summary.",
    )
    load.add_argument("kind", choices=["connect-users"], help="which lookup table")
    load.add_argument("file", metavar="FILE", help="the saved JSON (path or s3:// URI)")
    load.add_argument("--instance", metavar="ID", help="Connect instance id (default: from each user's Arn)")
    load.add_argument("--out", required=True, metavar="DIR_OR_URI", help="lake root; the table goes below it")
    load.add_argument("--catalog", action="store_true",
                      help="also create or update the table in the config's Glue database")
    _add_config(load)

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on bundled samples against a local moto server",
        description="Starts a moto server on 127.0.0.1, uploads sample CloudTrail logs, drains "
        "S3 notifications through AddAPart, runs the Glue job script locally and prints what "
        "an analyst would see. `make demo` runs this.",
    )
    demo.add_argument("--samples", metavar="DIR",
                      help="folder of shared samples (default: $LOGLAKE_SAMPLES, else ../shared/data/external)")
    demo.add_argument("--workdir", metavar="DIR", default=".demo", help="where the demo writes (default .demo)")
    return parser


_GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `loglake query --list | head`: the reader has what it wanted
        # Python's advice: point stdout at devnull, so the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    lead = 0  # the global -v/-q may come before a tool's name too
    while lead < len(argv) and argv[lead] in _GLOBAL_FLAGS:
        lead += 1
    if lead < len(argv) and argv[lead] in ("generate", "bench"):  # tools with their own argument parsers
        import importlib

        verbose = any(_GLOBAL_FLAGS[a] == "verbose" for a in argv[:lead])
        quiet = any(_GLOBAL_FLAGS[a] == "quiet" for a in argv[:lead])
        if verbose or quiet:  # the tools and their child processes read the level from here
            os.environ["LOGLAKE_LOG_LEVEL"] = "DEBUG" if verbose else "WARNING"
        logs.setup(verbose=verbose, quiet=quiet)
        return int(importlib.import_module(f"loglake.{argv[lead]}").main(argv[lead + 1:]) or 0)
    args = build_parser().parse_args(argv)
    logs.setup(verbose=args.verbose, quiet=args.quiet)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"loglake: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # selection and argument errors
        print(f"loglake: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:  # no credentials, no endpoint, access denied: the command failed
        log.debug("AWS call failed", exc_info=True)
        print(f"loglake: AWS: {exc}", file=sys.stderr)
        return 1


def _existing_lake(uri: str, flag: str) -> str:
    """A lake root that is not there is an error, not an empty lake: read as empty, a
    mistyped path would tell a query, an alert run or the contract "nothing found"."""
    if not storage.exists(uri):
        found = "holds no objects" if storage.is_s3(uri) else "does not exist"
        raise ValueError(f"{flag} {uri}: {found}; give the lake root that `loglake run --out` wrote")
    return uri


def _emit(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from loglake import demo

        return demo.main(samples=args.samples, workdir=args.workdir)
    if args.command == "quality":
        from loglake import quality

        lake = _existing_lake(args.lake, "--lake")
        print(quality.build_docs(storage.local_path(storage.join(lake, "_quality")), args.out))
        return 0
    config = load_config(getattr(args, "config", None))
    storage.configure(config.aws.endpoint_url, config.aws.region)
    if args.command == "config":
        if args.action == "show":
            print(dump_config(config), end="")
        else:
            print("config ok", file=sys.stderr)
        return 0
    if args.command == "run":
        return _run(args, config)
    if args.command == "compact":
        return _compact(args, config)
    if args.command == "contract":
        from loglake import contract

        report = contract.check_lake(_existing_lake(args.lake, "--lake"), config)
        _emit(report.as_dict())
        for p in report.problems:
            log.error("%s: %s", p["file"], p["problem"])
        return 0 if report.ok else 1
    if args.command == "ddl":
        return _ddl(args, config)
    if args.command == "query":
        return _query(args, config)
    if args.command == "lookup":
        return _lookup(args, config)
    if args.command == "alerts":
        return _alerts(args, config)
    if args.command == "addapart":
        from loglake import addapart
        from loglake.sources import get_source

        app = addapart.AddAPart(config)
        if args.action == "drain":
            outcome = addapart.drain(
                app, args.queue, batch_messages=args.batch_messages, max_messages=args.max_messages
            )
        else:
            source = get_source(args.source)
            sc = config.source(source.name)
            bucket = args.bucket or sc.bucket
            if not bucket:
                raise ConfigError(f"config: sources.{source.name}.bucket is empty and no --bucket was given")
            outcome = addapart.backfill(app, source, bucket, sc.prefix if args.prefix is None else args.prefix)
        _emit(outcome.as_dict())
        return 1 if outcome.failed_message_ids else 0
    raise AssertionError(args.command)  # pragma: no cover


def _run(args: argparse.Namespace, config) -> int:
    from loglake import convert, planning, runner, runtime, state
    from loglake.sources import get_source

    source = get_source(args.source)
    selection = planning.Selection.parse(args.date, args.from_date, args.to_date)
    if args.scheduled and not selection.everything:
        raise planning.SelectionError("--scheduled replaces --date/--from-date/--to-date; give one or the other")
    if (args.max_partitions is not None or args.max_files is not None) and not args.scheduled:
        raise ValueError("--max-partitions/--max-files bound a --scheduled run; a selection converts all it selects")
    config = with_run_bounds(config, args.max_partitions, args.max_files)
    # Before Spark starts: checks --raw. A scheduled run may list before it takes the lock:
    # it takes nothing at or below the watermark read under the lock (which only moves
    # forward) and nothing a manifest holds. A selection lists under the lock: it
    # replaces its partitions, so an object a scheduled run added to one after a listing
    # made outside the lock would be dropped from it.
    planning.check_listing(args.raw, selection)
    if args.scheduled:
        watermark = state.read_watermark(args.out, source.name)
        plan = planning.plan_from_listing(source, args.raw, config, selection, watermark)
    glue = _readready_catalog(args, config, source, args.out) if args.catalog else None
    spark = runtime.start("loglake-run", mode="local").spark
    code = 0
    try:
        if args.scheduled:
            summary = runner.run(spark, source, config, args.out,
                                 lambda: runner.from_listing(source, config, args.out, plan),
                                 kind=runner.SCHEDULED, glue=glue, raw=args.raw, compact=True)
        else:
            def listed_under_the_lock() -> runner.Work:
                return runner.rebuild(planning.plan_from_listing(source, args.raw, config, selection))

            summary = runner.run(spark, source, config, args.out, listed_under_the_lock,
                                 kind=runner.SELECTION, selection=selection, glue=glue, raw=args.raw)
            if summary.get("status") == "skipped_locked":
                code = 1
    except convert.RunFailed as exc:
        summary, code = exc.summary, 1
        log.error("%s", exc)
    if summary.get("status") != "skipped_locked":
        for line in convert.summarize_for_humans(summary):
            log.info(line)
    _emit(summary)
    if args.summary_json:
        storage.write_bytes(args.summary_json, json.dumps(summary, indent=2).encode())
    return code


def _readready_catalog(args: argparse.Namespace, config, source, out: str):
    from loglake import catalog

    glue = storage.client("glue", config.aws.endpoint_url, config.aws.region)
    catalog.ensure_database(glue, config.catalog.database)
    table = config.table(source.name, "readready")
    catalog.ensure_table(glue, config.catalog.database,
                         catalog.table_input(table, source.schema, storage.join(out, table), "orc"))
    return glue


def _compact(args: argparse.Namespace, config) -> int:
    import uuid

    from loglake import compact, planning, runtime, state
    from loglake.sources import get_source

    source = get_source(args.source)
    selection = planning.Selection.parse(args.date, args.from_date, args.to_date)
    _existing_lake(args.out, "--out")
    glue = _readready_catalog(args, config, source, args.out) if args.catalog else None
    paths = compact.select(source, config, args.out, selection, args.closed)
    log.info("%s: %d partitions selected for compaction", source.name, len(paths))
    spark = runtime.start("loglake-compact", mode="local").spark
    try:
        with state.run_lock(args.out, source.name, uuid.uuid4().hex, config.scheduled.lock_ttl_seconds) as lock, \
                state.kept_alive(lock):
            result = compact.compact(spark, source, config, args.out, paths, glue=glue,
                                     retain_minutes=args.retain_minutes, fence=lock.fence)
            summary = {"source": source.name, "status": "done", "selection": selection.describe(),
                       "closed_only": args.closed, **result.as_dict()}
            summary["files_removed"] += compact.expire_due(source, config, args.out, glue=glue)
    except state.LockHeld as exc:
        log.error("%s", exc)
        summary = {"source": source.name, "status": "skipped_locked", "detail": str(exc)}
        _emit(summary)
        return 1
    _emit(summary)
    if args.summary_json:
        storage.write_bytes(args.summary_json, json.dumps(summary, indent=2).encode())
    return 0


def _ddl(args: argparse.Namespace, config) -> int:
    from loglake import catalog_ddl

    locations = catalog_ddl.Locations.from_config(config, org=args.org, projection_start=args.projection_start)
    if not args.apply:
        if args.athena:
            raise ValueError("--athena only goes with --apply")
        statements = catalog_ddl.ddl_statements(config, locations, args.table)
        # One statement per block, each ending in ';' and a blank line.
        print("\n".join(s.sql.rstrip() + ";\n" for s in statements), end="")
        unset = [f"sources.{name}.bucket" for name in SOURCES if name not in locations.raw]
        unset += [] if locations.readready else ["readready.location"]
        if unset:
            log.warning("not configured, shown as <...> in the locations: %s", ", ".join(unset))
        return 0
    glue = storage.client("glue", config.aws.endpoint_url, config.aws.region)
    athena = storage.client("athena", config.aws.endpoint_url, config.aws.region) if args.athena else None
    outcome = catalog_ddl.apply_ddl(glue, config, locations, args.table, athena=athena,
                            athena_output=args.athena_output, workgroup=args.workgroup)
    _emit(outcome)
    return 0


def _query(args: argparse.Namespace, config) -> int:
    from loglake import athena as athena_runs
    from loglake import query_library

    if args.list:
        for name in query_library.list_queries():
            q = query_library.load_query(name)
            print(f"{name}\n  {q.description}")
            for p in q.params:
                default = "required" if p.required else f"default {p.default}"
                print(f"  --param {p.name}=<{p.type}>  ({default}) {p.doc}")
        return 0
    if not args.name:
        raise ValueError("give a query NAME (or --list)")
    query = query_library.load_query(args.name)
    params = query_library.parse_params(args.param)
    if args.sql:
        print(query_library.render_query(query, params, config))
        return 0
    if args.engine == "athena":
        athena_sql = query_library.render_query(query, params, config)
        athena = storage.client("athena", config.aws.endpoint_url, config.aws.region)
        try:
            columns, rows = athena_runs.run_athena(athena, athena_sql, database=config.catalog.database,
                                           output_location=args.athena_output, workgroup=args.workgroup)
        except athena_runs.AthenaQueryFailed as exc:
            log.error("%s", exc)
            return 1
    else:
        from loglake import runtime

        query_library.render_query(query, params, config)  # bad parameters fail before Spark starts
        lake = args.lake or config.readready.location
        if not lake:
            raise ValueError("--lake is required (or set readready.location)")
        _existing_lake(lake, "--lake" if args.lake else "readready.location")
        spark = runtime.local_spark("loglake-query")
        result = query_library.run_query(spark, query.name, params, config, lake, raw_root=args.raw)
        columns = list(result[0].__fields__) if result else []
        rows = [tuple(r) for r in result]
    if args.format == "json":
        _emit({"query": query.name, "columns": columns, "rows": [dict(zip(columns, r, strict=True)) for r in rows]})
    else:
        print(athena_runs.format_table(columns, rows))
    return 0


def _alerts(args: argparse.Namespace, config) -> int:
    from loglake import alert_rules, alerts

    if args.action == "list":
        for name in alert_rules.list_rules():
            print(json.dumps(alert_rules.load_rule(name).as_dict()))
        return 0
    lake = args.lake or config.readready.location
    if not lake:
        raise ValueError("--lake is required (or set readready.location)")
    _existing_lake(lake, "--lake" if args.lake else "readready.location")
    for name in args.rule or []:
        alert_rules.load_rule(name)  # an unknown rule fails before anything runs
    since = None
    if args.since:
        try:
            since = alerts.parse_time(args.since)
        except ValueError:
            raise ValueError(f"--since {args.since!r}: expected an ISO 8601 time, e.g. 2026-11-30T08:00:00Z") from None
    sinks = alerts.sinks_of(args.sink, config)
    if args.engine == "athena":
        matches = alerts.athena_engine(config, args.athena_output, args.workgroup)
    else:
        from loglake import runtime

        spark = None

        def matches(rule, files):
            nonlocal spark
            spark = spark or runtime.local_spark("loglake-alerts")  # started only when there is something to read
            return alerts.spark_matches(spark, rule, config, lake, files)
    summary = alerts.run(config, lake, sinks, matches, rules=args.rule, since=since)
    _emit(summary)
    return 1 if summary["failed"] else 0


def _lookup(args: argparse.Namespace, config) -> int:
    from loglake import catalog, lookup

    summary = lookup.load_connect_users(args.file, args.out, instance=args.instance)
    if args.catalog:
        glue = storage.client("glue", config.aws.endpoint_url, config.aws.region)
        catalog.ensure_database(glue, config.catalog.database)
        summary["catalog"] = catalog.ensure_table(glue, config.catalog.database, lookup.table_input(args.out))
    _emit(summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

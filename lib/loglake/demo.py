"""``loglake demo``: the whole pipeline on real published samples, against local AWS.

1. start a moto server on 127.0.0.1 (stopped at the end);
2. create the raw bucket, the SQS queue with the S3 -> SQS notification, and the
   Glue database and tables;
3. upload real CloudTrail records under realistic organization-trail keys for
   several accounts, regions and days, plus a digest file and junk keys that must
   be skipped; Firehose objects of CloudWatch Logs; published Bedrock model-invocation
   logs in the CloudTrail bucket (sources share a bucket; AddAPart routes each key);
4. drain the queue through AddAPart;
5. run the Glue job scripts (``glue_jobs/<source>_readready.py``) on local Spark;
6. print what an analyst would see.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from loglake import addapart, catalog, contract, localaws, query_library, sql, storage
from loglake.config import config_from_dict
from loglake.samples import (
    bad_objects,
    bedrock_objects,
    firehose_objects,
    junk_objects,
    sample_records,
    samples_dir,
    trail_objects,
)
from loglake.sources import SOURCES
from loglake.sources.cloudtrail import parse_cloudtrail_key

REPO = Path(__file__).resolve().parents[2]
BUCKET = "loglake-demo-trail"
CWL_BUCKET = "loglake-demo-firehose"
CWL_PREFIX = "cwl/"
QUEUE = "loglake-demo-addapart"


def _print(title: str) -> None:
    print(f"\n== {title}")


def setup_local_aws(config, s3, sqs, glue) -> str:
    """Bucket, queue with the S3 -> SQS notification, Glue database and tables; returns the queue URL."""
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    notification = {"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]}
    for bucket in (BUCKET, CWL_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notification)
    catalog.ensure_database(glue, config.catalog.database)
    raw = {"cloudtrail": f"s3://{BUCKET}/AWSLogs/", "cloudwatch": f"s3://{CWL_BUCKET}/{CWL_PREFIX}",
           "bedrock": f"s3://{BUCKET}/AWSLogs/"}
    tables = catalog.table_inputs(config, config.readready.location, raw)
    for tinput in tables:
        catalog.ensure_table(glue, config.catalog.database, tinput)
    print(f"buckets {BUCKET} (CloudTrail) and {CWL_BUCKET} (Firehose), queue {QUEUE} with S3 -> SQS "
          f"notifications, Glue tables {', '.join(t['Name'] for t in tables)}")
    return queue_url


def _late_one(trail: dict[str, bytes]) -> str:
    """A CloudTrail object to deliver late: the last one of the partition with the most."""
    by_folder = collections.Counter(k.rsplit("/", 1)[0] for k in trail)
    folder = max(by_folder, key=lambda f: (by_folder[f], f))
    return max(k for k in trail if k.rsplit("/", 1)[0] == folder)


def run_glue_script(source: str, config_path: Path, days: list[str] | None, work: Path) -> dict:
    """Run glue_jobs/<source>_readready.py as Glue would, on the local runtime; without
    ``days``, as the hourly trigger does (a scheduled run)."""
    script = REPO / "glue_jobs" / f"{source}_readready.py"
    summary_path = work / f"summary-{source}{'' if days else '-hourly'}.json"
    cmd = [sys.executable, str(script), "--JOB_NAME", "loglake-demo", "--config", str(config_path),
           "--summary-json", str(summary_path)]
    if days:
        cmd[-2:-2] = ["--from-date", days[0], "--to-date", days[-1]]
    print("$ python " + " ".join(cmd[1:]).replace(str(REPO) + "/", ""))
    env = {**os.environ, "LOGLAKE_LOG_LEVEL": "ERROR"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return json.loads(summary_path.read_text())


def main(samples: str | None = None, workdir: str = ".demo") -> int:
    started = time.time()
    # The demo prints its own account of each step; per-key JSON logs would drown it.
    logging.getLogger("loglake").setLevel(logging.WARNING)
    try:
        samples_path = samples_dir(samples)
    except FileNotFoundError as exc:
        raise SystemExit(f"demo: {exc}") from None
    work = Path(workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with localaws.MotoServer(log_path=str(work / "moto.log")) as moto:
        os.environ.update(moto.env())
        cfg = {
            "sources": {"cloudtrail": {"bucket": BUCKET}, "cloudwatch": {"bucket": CWL_BUCKET, "prefix": CWL_PREFIX},
                        "bedrock": {"bucket": BUCKET}},
            "catalog": {"database": "loglake_demo"},
            "readready": {"location": f"file://{work}/lake"},
            "aws": {"endpoint_url": moto.endpoint, "region": "us-east-1"},
        }
        config_path = work / "loglake.yaml"
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        config = config_from_dict(cfg)
        storage.configure(moto.endpoint, "us-east-1")
        s3, sqs, glue = (storage.client(name, moto.endpoint, "us-east-1") for name in ("s3", "sqs", "glue"))

        _print(f"local AWS: moto server at {moto.endpoint}")
        queue_url = setup_local_aws(config, s3, sqs, glue)

        records = sample_records(samples_path)
        objects = {**trail_objects(records), **junk_objects(samples_path), **bad_objects(samples_path)}
        late_key = _late_one(trail_objects(records))  # delivered after the first runs: the hourly step
        late_body = objects.pop(late_key)
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        fh_objects = firehose_objects(samples_path, CWL_PREFIX)
        for key, body in fh_objects.items():
            s3.put_object(Bucket=CWL_BUCKET, Key=key, Body=body)
        br_objects = bedrock_objects(samples_path)
        for key, body in br_objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        _print("raw logs landed in S3")
        print(f"CloudTrail: {len(objects)} objects: {sum(len(r) for r in records.values())} real records from "
              f"{len(records)} sample files; a digest file, a ConfigWritabilityCheckFile and 2 junk keys; "
              "3 bad objects (truncated gzip, a SIEM re-export without eventTime, not gzipped)")
        print(f"Firehose: {len(fh_objects)} gzip objects without suffix, documents run together: Session Manager "
              "records, a CONTROL_MESSAGE and a Lambda log group")
        print(f"Bedrock: {len(br_objects)} objects in the CloudTrail bucket: the published model-invocation records "
              "and a body moved to data/")

        outcome = addapart.drain(addapart.AddAPart(config, glue=glue), queue_url)
        _print("AddAPart drained the queue")
        print(f"{outcome.messages} messages, {outcome.objects} object keys -> {outcome.partitions} partitions: "
              f"{outcome.created} created, {outcome.existed} already known, {outcome.failed} failed, "
              f"{outcome.glue_calls} BatchCreatePartition calls")
        print("keys skipped or rejected: " + ", ".join(f"{k}={v}" for k, v in sorted(outcome.key_reasons.items()))
              + f"; {outcome.keys_for_quarantine} rejected keys handed to the next run's quarantine")

        days = sorted({r.partition.values[-1] for r in map(parse_cloudtrail_key, objects) if r.ok})
        br_days = sorted({r.partition.values[-1] for r in map(SOURCES["bedrock"].classify_key, br_objects,
                                                                [config] * len(br_objects)) if r.ok})
        for source, selected in (("cloudtrail", days), ("cloudwatch", days), ("bedrock", br_days)):
            _print(f"Glue job glue_jobs/{source}_readready.py (local runtime)")
            summary = run_glue_script(source, config_path, selected, work)
            print(f"files read {summary['files_read']}, status {summary['status']}, "
                  f"control messages dropped {summary['control_messages']}, "
                  f"quality gate: {summary['quality']['evaluated']} expectations, "
                  f"{'passed' if summary['quality']['success'] else 'FAILED'}")
            print(f"reconciliation: {summary['reconciliation']}")
            rr_table, raw_table = config.table(source, "readready"), config.table(source, "raw")
            n_rr = len(list(catalog.list_partitions(glue, config.catalog.database, rr_table)))
            n_raw = len(list(catalog.list_partitions(glue, config.catalog.database, raw_table)))
            print(f"catalog: {n_raw} partitions in {raw_table}, {n_rr} in {rr_table}")

        _print("an hour later: one more CloudTrail file lands late; the hourly trigger runs the job")
        s3.put_object(Bucket=BUCKET, Key=late_key, Body=late_body)
        late = addapart.drain(addapart.AddAPart(config, glue=glue), queue_url)
        hourly = run_glue_script("cloudtrail", config_path, None, work)
        sched, compaction = hourly.get("scheduled", {}), hourly.get("compaction", {})
        print(f"AddAPart: {late.inbox_objects} new object in the inbox ({late_key.rsplit('/', 1)[-1]})")
        print(f"scheduled run: files read {hourly['files_read']} (objects the earlier runs converted, skipped: "
              f"{sched.get('objects_already_converted', 0)}), {hourly['written']} rows added to "
              f"{hourly['partitions_written']} partition(s), status {hourly['status']}")
        print(f"compaction of closed partitions: {compaction.get('partitions_compacted', 0)} compacted, "
              f"{compaction.get('files_before', 0)} files -> {compaction.get('files_after', 0)}, "
              f"{compaction.get('duplicates', 0)} repeats dropped; replaced files kept for running queries")

        _print("reconciliation (the runs table) and the quarantine")
        _runs_and_quarantine(config)
        _print("readready files (ORC)")
        for source in ("cloudtrail", "cloudwatch", "bedrock"):
            _show_files(storage.local_path(storage.join(config.readready.location, config.table(source, "readready"))),
                        SOURCES[source].schema.partition_names)
        _print("reader contract: what Athena reads is what was written (loglake contract)")
        report = contract.check_lake(config.readready.location, config)
        print(f"{report.files_checked} ORC files ({', '.join(f'{k} {n}' for k, n in report.files_by_table.items())}): "
              + ("names, order and ORC types as the Glue tables declare them" if report.ok
                 else f"{len(report.problems)} PROBLEMS"))
        for problem in report.problems:
            print(f"  {problem['file']}: {problem['problem']}")
        _print("what an analyst sees")
        _analyst_view(config)
    print(f"\ndemo done in {time.time() - started:.0f}s; output in {work}")
    return 0 if report.ok else 1


def _runs_and_quarantine(config) -> None:
    import pyarrow.dataset as ds

    root = storage.local_path(config.readready.location)
    runs = ds.dataset(f"{root}/{config.catalog.tables.runs}", format="orc", partitioning="hive").to_table()
    cols = ["job", "status", "records_read", "written", "filtered", "quarantined_records", "duplicates", "balanced"]
    rows = sorted(runs.to_pylist(), key=lambda r: r["job"])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    quarantine = ds.dataset(f"{root}/{config.catalog.tables.quarantine}", format="orc", partitioning="hive").to_table()
    by_reason = collections.Counter((r["source"], r["reason"]) for r in quarantine.to_pylist())
    print(f"\nquarantine: {quarantine.num_rows} rows, by source and reason:")
    for (source, reason), n in sorted(by_reason.items()):
        example = next(r for r in quarantine.to_pylist() if r["reason"] == reason)
        print(f"  {source:<11} {reason:<24} {n:>3}   e.g. {example['raw_key'].rsplit('/', 1)[-1][:60]}: "
              f"{(example['detail'] or '')[:70]}")


def _show_files(root: str, partition_names: list[str]) -> None:
    """The table's current files, as their partitions' manifests name them."""
    import pyarrow.orc as orc

    from loglake import manifest

    files = [storage.local_path(f) for f in manifest.table_files(root, partition_names)]
    replaced = len([p for p in Path(root).rglob("*.orc")]) - len(files)
    total = sum(os.path.getsize(f) for f in files)
    codecs = collections.Counter(orc.ORCFile(f).compression for f in files)
    for f in files[:3]:
        o = orc.ORCFile(f)
        print(f"{os.path.relpath(f, root)}  {o.nrows} rows, {o.compression}, {os.path.getsize(f)} bytes")
    print(f"... {len(files)} current files, {total} bytes, compression: {dict(codecs)}"
          + (f"; {replaced} replaced files kept for the retention" if replaced else ""))


def _analyst_view(config) -> None:
    from loglake.runtime import local_spark

    spark = local_spark("loglake-demo")
    sql.register_lake(spark, config, config.readready.location)
    queries = {
        "top event names": """
            SELECT eventsource, eventname, count(*) AS events
            FROM from_cloudtrail_readready GROUP BY 1, 2 ORDER BY events DESC, eventname LIMIT 5""",
        "who started Session Manager sessions (StartSession -> sessionid)": """
            SELECT eventtime, useridentity_arn, sourceipaddress,
                   get_json_object(requestparameters, '$.target') AS target, sessionid
            FROM from_cloudtrail_readready WHERE eventname = 'StartSession' ORDER BY eventtime, sessionid""",
        "access denied, by principal": """
            SELECT useridentity_arn, errorcode, count(*) AS events
            FROM from_cloudtrail_readready WHERE errorcode IS NOT NULL
            GROUP BY 1, 2 ORDER BY events DESC LIMIT 5""",
    }
    for title, query in queries.items():
        print(f"\n-- {title}")
        _print_rows(spark.sql(query).collect())
    _privileged_session(spark)
    _library_queries(spark, config)
    spark.stop()


def _library_queries(spark, config) -> None:
    """Queries of the analysts' library (ddl/queries), as `loglake query` runs them."""
    asks = [
        ("iam_changes", {}),
        ("console_logins_without_mfa", {}),
        ("privileged_session", {"sessionid": "christophe-s7uathgenk3m4qa2s33wio5gpu"}),
        ("bedrock_tokens_by_principal", {"days": "1200"}),  # the published records span 2024-2026
    ]
    for name, params in asks:
        query = query_library.load_query(name)
        shown = " ".join(f"--param {k}={v}" for k, v in params.items())
        print(f"\n-- $ loglake query {name} {shown}".rstrip())
        print(f"-- {query.description[:150]}")
        rows = query_library.run_query(spark, name, params, config, config.readready.location)
        _print_rows(rows[:8], max_width=48)
        if len(rows) > 8:
            print(f"... {len(rows)} rows")


def _print_rows(rows, max_width: int = 120) -> None:
    if not rows:
        print("(no rows)")
        return
    cols = rows[0].__fields__

    def cell(value) -> str:
        text = str(value)
        return text if len(text) <= max_width else text[: max_width - 3] + "..."

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(cell(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))


def _privileged_session(spark) -> None:
    """One privileged session end to end, from the sessions view (CloudTrail joined to keystrokes)."""
    rows = spark.sql("""
        SELECT * FROM sessions
        WHERE sessionid IN (SELECT sessionid FROM sessions WHERE sessiondata LIKE '%sudo %')
        ORDER BY keystroke_time, event_id""").collect()
    print("\n-- a privileged session, end to end (sessions view: StartSession joined to its keystrokes)")
    if not rows:
        print("(none found)")
        return
    first = rows[0]
    print(f"session    {first['sessionid']}")
    print(f"started by {first['started_by_arn']} from {first['source_ip']} at {first['start_time']}")
    print(f"instance   {first['target']} in account {first['account']}, region {first['region']}, "
          f"as OS user {first['runasuser']}")
    print(f"ended      {first['end_time']} (TerminateSession by {first['terminated_by_arn']})")
    print("typed and seen, in order:")
    for r in rows:
        for line in (r["sessiondata"] or "").split("\n"):
            print(f"  {r['keystroke_time']:%H:%M:%S.%f}"[:-3] + f"  {line}")

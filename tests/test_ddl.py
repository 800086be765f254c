"""The Athena DDL in ddl/: generated from the jobs' schema, parseable, equal to what Glue gets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from conftest import REPO
from loglake import catalog, catalog_ddl, cli, lookup, sql
from loglake.config import config_from_dict
from loglake.schema import QUARANTINE, RUNS
from loglake.sources import SOURCES
from loglake.sources.cloudtrail import CLOUDTRAIL_RAW
from loglake.sources.cloudwatch import CLOUDWATCH_RAW

CONFIG = {
    "sources": {"cloudtrail": {"bucket": "org-trail", "prefix": "trails/"},
                "cloudwatch": {"bucket": "firehose", "prefix": "cwl/"},
                "bedrock": {"bucket": "org-trail", "prefix": "trails/"}},  # a bucket shared with CloudTrail
    "catalog": {"database": "secdb", "tables": {"cloudtrail_readready": "ct_flat"}},
    "readready": {"location": "s3://lake/readready/"},
    "filters": {"regions": {"allow": ["eu-west-1", "us-east-1"]}},
}
PROJECTED_KEYS = [("account", "string"), ("region", "string"), ("dt", "string")]
# The job's schema behind each DDL file: columns, then partition columns.
SCHEMAS = {
    "cloudtrail_raw": (CLOUDTRAIL_RAW.columns, CLOUDTRAIL_RAW.partition_keys),
    "cloudtrail_raw_projected": (CLOUDTRAIL_RAW.columns, None),
    "cloudwatch_raw": (CLOUDWATCH_RAW.columns, CLOUDWATCH_RAW.partition_keys),
    "cloudtrail_readready": (SOURCES["cloudtrail"].schema.columns, SOURCES["cloudtrail"].schema.partition_keys),
    "cloudwatch_readready": (SOURCES["cloudwatch"].schema.columns, SOURCES["cloudwatch"].schema.partition_keys),
    "bedrock_raw": (SOURCES["bedrock"].raw_schema.columns, SOURCES["bedrock"].raw_schema.partition_keys),
    "bedrock_readready": (SOURCES["bedrock"].schema.columns, SOURCES["bedrock"].schema.partition_keys),
    "quarantine": (QUARANTINE.columns, QUARANTINE.partition_keys),
    "runs": (RUNS.columns, RUNS.partition_keys),
    "connect_users": (lookup.CONNECT_USERS.columns, ()),
}


def config():
    return config_from_dict(CONFIG)


def locations(**kw):
    return catalog_ddl.Locations.from_config(config(), **kw)


def statements(**kw) -> dict[str, catalog_ddl.Statement]:
    return {s.key: s for s in catalog_ddl.ddl_statements(config(), locations(**kw))}


def hive_type(text: str) -> str:
    return exp.DataType.build(text, dialect="hive").sql("hive").lower()


def parsed(text: str) -> dict:
    """What a CREATE EXTERNAL TABLE says, read back by sqlglot's Athena (Hive DDL) parser."""
    tree = sqlglot.parse_one(text, read="athena")
    assert isinstance(tree, exp.Create) and tree.kind == "TABLE"
    props = {type(p).__name__: p for p in tree.args["properties"].expressions}
    assert "ExternalProperty" in props

    def columns(defs):
        out = []
        for c in defs:
            comment = c.find(exp.CommentColumnConstraint)
            out.append((c.name, c.args["kind"].sql("hive").lower(), comment.this.this if comment else ""))
        return out

    table = tree.this.this
    partitions = props.get("PartitionedByProperty")
    return {
        "database": table.db,
        "name": table.name,
        "columns": columns(tree.this.expressions),
        "partitions": columns(partitions.this.expressions) if partitions else [],
        "serde": props["RowFormatSerdeProperty"].this.this,
        "input": props["FileFormatProperty"].this.args["input_format"].this,
        "output": props["FileFormatProperty"].this.args["output_format"].this,
        "location": props["LocationProperty"].this.this,
        "comment": props["SchemaCommentProperty"].this.this,
        "tblproperties": {p.name: p.text("value") for p in tree.args["properties"].expressions
                          if type(p) is exp.Property},
    }


# --------------------------------------------------------------------------- generated, not hand-kept


def test_committed_ddl_files_are_what_the_schema_generates():
    assert catalog_ddl.stale_ddl_files() == [], "run: python -m loglake.sql render-ddl"
    on_disk = {p.name for p in (REPO / "ddl").glob("*.sql")}
    assert on_disk == {f"{key}.sql" for key in catalog_ddl.TABLE_KEYS}


def test_render_ddl_check_mode(tmp_path, capsys):
    assert sql.main(["render-ddl", "--check"]) == 0
    changed = catalog_ddl.write_ddl_files(tmp_path)
    assert sorted(changed) == sorted(f"{k}.sql" for k in catalog_ddl.TABLE_KEYS)
    assert catalog_ddl.write_ddl_files(tmp_path) == []  # idempotent


# --------------------------------------------------------------------------- parse, columns, formats


@pytest.mark.parametrize("key", catalog_ddl.TABLE_KEYS)
def test_every_table_ddl_parses_and_its_columns_are_the_job_schema(key):
    got = parsed(statements()[key].sql)
    columns, partition_keys = SCHEMAS[key]
    assert [(n, t) for n, t, _ in got["columns"]] == [(c.name, hive_type(c.type)) for c in columns]
    assert [c for _, _, c in got["columns"]] == [c.doc[:255] for c in columns]
    expected_keys = PROJECTED_KEYS if partition_keys is None else [(c.name, c.type) for c in partition_keys]
    assert [(n, t) for n, t, _ in got["partitions"]] == expected_keys
    assert got["database"] == "secdb"
    # The very DDL parses as Hive too (Athena DDL is HiveQL).
    assert sqlglot.parse_one(statements()[key].sql, read="hive").kind == "TABLE"


def test_formats_match_what_the_jobs_write():
    s = statements()
    for key in ("cloudtrail_readready", "cloudwatch_readready", "quarantine", "runs", "connect_users"):
        got = parsed(s[key].sql)
        assert got["serde"] == "org.apache.hadoop.hive.ql.io.orc.OrcSerde", key
        assert got["input"].endswith("OrcInputFormat") and got["tblproperties"]["orc.compress"] == "ZLIB", key
    raw = parsed(s["cloudtrail_raw"].sql)
    assert (raw["serde"], raw["input"], raw["output"]) == (
        "org.apache.hive.hcatalog.data.JsonSerDe", "com.amazon.emr.cloudtrail.CloudTrailInputFormat",
        "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat")
    assert raw["location"] == "s3://org-trail/trails/AWSLogs/"
    assert parsed(s["cloudwatch_raw"].sql)["location"] == "s3://firehose/cwl/"
    assert parsed(s["cloudtrail_readready"].sql)["name"] == "ct_flat"  # the config's table name
    assert parsed(s["cloudtrail_readready"].sql)["location"] == "s3://lake/readready/ct_flat/"


@pytest.mark.parametrize("key", catalog_ddl.TABLE_KEYS)
def test_printed_ddl_is_the_glue_definition_ddl_apply_uses(key):
    """What `loglake ddl` prints and what `loglake ddl --apply` gives Glue cannot differ."""
    got = parsed(statements()[key].sql)
    tinput = catalog_ddl.table_definitions(config(), locations())[key]
    sd = tinput["StorageDescriptor"]
    assert got["name"] == tinput["Name"] and got["comment"] == tinput["Description"]
    assert got["columns"] == [(c["Name"], hive_type(c["Type"]), c["Comment"]) for c in sd["Columns"]]
    assert got["partitions"] == [(c["Name"], c["Type"], c["Comment"]) for c in tinput["PartitionKeys"]]
    assert (got["serde"], got["input"], got["output"], got["location"]) == (
        sd["SerdeInfo"]["SerializationLibrary"], sd["InputFormat"], sd["OutputFormat"], sd["Location"])
    assert got["tblproperties"] == {k: v for k, v in tinput["Parameters"].items() if k != "EXTERNAL"}


def test_glue_definitions_are_catalog_table_inputs():
    """The demo, the CloudFormation template and `ddl --apply` share catalog.table_inputs."""
    defs = catalog_ddl.table_definitions(config(), locations())
    shared = catalog.table_inputs(config(), "s3://lake/readready",
                                  {"cloudtrail": "s3://org-trail/trails/AWSLogs", "cloudwatch": "s3://firehose/cwl",
                                   "bedrock": "s3://org-trail/trails/AWSLogs"})
    assert {t["Name"]: t for t in shared} == {
        t["Name"]: t for k, t in defs.items() if k not in ("cloudtrail_raw_projected", "connect_users")}


# --------------------------------------------------------------------------- partition projection


def test_projection_variant_projects_its_partition_columns():
    got = parsed(statements(org="o-abcdefghij", projection_start="2023/06/01")["cloudtrail_raw_projected"].sql)
    props = got["tblproperties"]
    assert got["name"] == "from_cloudtrail_raw_projected"
    assert got["location"] == "s3://org-trail/trails/AWSLogs/o-abcdefghij/"
    assert props["projection.enabled"] == "true"
    assert props["projection.account.type"] == "injected"
    assert (props["projection.region.type"], props["projection.region.values"]) == ("enum", "eu-west-1,us-east-1")
    assert (props["projection.dt.type"], props["projection.dt.format"]) == ("date", "yyyy/MM/dd")
    assert props["projection.dt.range"] == "2023/06/01,NOW"
    assert (props["projection.dt.interval"], props["projection.dt.interval.unit"]) == ("1", "DAYS")
    template = props["storage.location.template"]
    assert template == "s3://org-trail/trails/AWSLogs/o-abcdefghij/${account}/CloudTrail/${region}/${dt}"
    # Every projected column is in the template, and every template variable is projected.
    variables = {part[2:-1] for part in template.split("/") if part.startswith("${")}
    assert variables == {name for name, _, _ in got["partitions"]}
    assert all(props[f"projection.{v}.type"] for v in variables)


def test_projection_for_an_account_trail_and_default_regions():
    got = parsed(catalog_ddl.ddl_statements(config_from_dict({"sources": {"cloudtrail": {"bucket": "b"}}}),
                                    catalog_ddl.Locations.from_config(config_from_dict(
                                        {"sources": {"cloudtrail": {"bucket": "b"}}})))[2].sql)
    assert got["location"] == "s3://b/AWSLogs/"
    assert got["tblproperties"]["storage.location.template"] == "s3://b/AWSLogs/${account}/CloudTrail/${region}/${dt}"
    assert "us-east-1" in got["tblproperties"]["projection.region.values"].split(",")
    with pytest.raises(ValueError, match="organization id"):
        catalog_ddl.Locations.from_config(config(), org="o-BAD")
    with pytest.raises(ValueError, match="yyyy/MM/dd"):
        catalog_ddl.Locations.from_config(config(), projection_start="2023-06-01")


# --------------------------------------------------------------------------- the view


def test_sessions_view_parses_as_trino_and_names_the_configured_tables():
    view = statements()["sessions"].sql
    tree = sqlglot.parse_one(view, read="trino")
    assert isinstance(tree, exp.Create) and tree.kind == "VIEW" and tree.this.sql() == "secdb.sessions"
    tables = {t.sql() for t in tree.expression.find_all(exp.Table) if t.db}
    assert tables == {"secdb.ct_flat", "secdb.from_cloudwatch_readready"}


# --------------------------------------------------------------------------- the command


def write_config(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "loglake.json"  # JSON is YAML
    path.write_text(json.dumps(data))
    return str(path)


def split_statements(text: str) -> list[str]:
    """`loglake ddl` ends every statement with ';' and a blank line (literals may hold ';')."""
    return [s.strip() for s in text.split(";\n\n") if s.strip()]


def test_ddl_prints_every_statement(tmp_path, capsys):
    assert cli.main(["ddl", "--config", write_config(tmp_path, CONFIG)]) == 0
    out = split_statements(capsys.readouterr().out)
    assert len(out) == 1 + len(catalog_ddl.TABLE_KEYS) + len(catalog_ddl.VIEW_KEYS)
    trees = [sqlglot.parse_one(s, read="trino" if "CREATE OR REPLACE VIEW" in s else "athena") for s in out]
    assert trees[0].kind in ("DATABASE", "SCHEMA") and trees[0].this.name == "secdb"
    names = [t.this.this.name if t.kind == "TABLE" else t.this.name for t in trees[1:]]
    assert names == ["from_cloudtrail_raw", "from_cloudtrail_raw_projected", "from_cloudwatch_raw", "from_bedrock_raw",
                     "ct_flat", "from_cloudwatch_readready", "from_bedrock_readready", "quarantine", "runs",
                     "connect_users", "sessions"]


def test_ddl_table_filter(tmp_path, capsys):
    cfg = write_config(tmp_path, CONFIG)
    assert cli.main(["ddl", "--config", cfg, "--table", "ct_flat", "--table", "sessions"]) == 0
    out = split_statements(capsys.readouterr().out)
    assert len(out) == 2 and "secdb.ct_flat (" in out[0] and "VIEW secdb.sessions" in out[1]
    assert cli.main(["ddl", "--config", cfg, "--table", "cloudwatch_raw"]) == 0
    [one] = split_statements(capsys.readouterr().out)
    assert "secdb.from_cloudwatch_raw (" in one
    assert cli.main(["ddl", "--config", cfg, "--table", "nope"]) == 2
    assert "not a loglake table" in capsys.readouterr().err


def test_ddl_without_locations_shows_what_to_configure(capsys):
    assert cli.main(["ddl", "--table", "cloudtrail_raw"]) == 0
    captured = capsys.readouterr()
    assert "LOCATION 's3://<sources.cloudtrail.bucket>/AWSLogs/'" in captured.out
    assert "sources.cloudtrail.bucket" in captured.err


def test_ddl_apply_creates_and_updates_the_tables_in_glue(aws, tmp_path, capsys):
    cfg = write_config(tmp_path, {**CONFIG, "aws": {"endpoint_url": aws.endpoint, "region": "us-east-1"}})
    assert cli.main(["ddl", "--apply", "--config", cfg]) == 0
    outcome = json.loads(capsys.readouterr().out)
    expected_names = ["from_cloudtrail_raw", "from_cloudwatch_raw", "from_bedrock_raw", "ct_flat",
                      "from_cloudwatch_readready", "from_bedrock_readready", "quarantine", "runs", "connect_users"]
    assert outcome["tables"] == {name: "created" for name in expected_names}
    assert outcome["views"]["sessions"].startswith("not applied")
    assert sqlglot.parse_one(outcome["athena_statements"][0], read="trino").kind == "VIEW"
    by_name = {t["Name"]: t for t in aws.glue.get_tables(DatabaseName="secdb")["TableList"]}
    assert sorted(by_name) == sorted(expected_names)  # not the optional projected variant
    for key, name in zip(("cloudtrail_raw", "cloudwatch_raw", "bedrock_raw", "cloudtrail_readready",
                          "cloudwatch_readready", "bedrock_readready", "quarantine", "runs", "connect_users"),
                         expected_names, strict=True):
        columns, partition_keys = SCHEMAS[key]
        table = by_name[name]
        assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == [
            (c.name, c.type) for c in columns]
        assert [(c["Name"], c["Type"]) for c in table.get("PartitionKeys", [])] == [
            (c.name, c.type) for c in partition_keys]
    assert by_name["ct_flat"]["StorageDescriptor"]["Location"] == "s3://lake/readready/ct_flat/"
    assert by_name["ct_flat"]["Parameters"]["orc.compress"] == "ZLIB"
    # Again: every table is updated in place, nothing fails.
    assert cli.main(["ddl", "--apply", "--config", cfg]) == 0
    assert set(json.loads(capsys.readouterr().out)["tables"].values()) == {"updated"}
    # The projected variant only when asked for.
    assert cli.main(["ddl", "--apply", "--config", cfg, "--table", "cloudtrail_raw_projected",
                     "--org", "o-abcdefghij"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"] == {"from_cloudtrail_raw_projected": "created"}
    projected = aws.glue.get_table(DatabaseName="secdb", Name="from_cloudtrail_raw_projected")["Table"]
    assert projected["Parameters"]["projection.enabled"] == "true"
    assert [k["Name"] for k in projected["PartitionKeys"]] == ["account", "region", "dt"]


def test_ddl_apply_skips_what_is_not_configured(aws, tmp_path, capsys):
    cfg = write_config(tmp_path, {"catalog": {"database": "bare"},
                                  "aws": {"endpoint_url": aws.endpoint, "region": "us-east-1"}})
    assert cli.main(["ddl", "--apply", "--config", cfg]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["tables"] == {}
    assert outcome["skipped"]["from_cloudtrail_raw"] == "sources.cloudtrail.bucket is not set"
    assert outcome["skipped"]["quarantine"] == "readready.location is not set"


def test_ddl_apply_creates_the_view_through_athena(aws, tmp_path, capsys):
    cfg = write_config(tmp_path, {**CONFIG, "aws": {"endpoint_url": aws.endpoint, "region": "us-east-1"}})
    argv = ["ddl", "--apply", "--athena", "--athena-output", "s3://athena-results/", "--table", "sessions",
            "--config", cfg]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["views"] == {"sessions": "created (Athena)"}
    athena = sql.storage.client("athena", aws.endpoint, "us-east-1")
    [qid] = athena.list_query_executions()["QueryExecutionIds"]
    execution = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    assert execution["Query"] == statements()["sessions"].sql
    assert cli.main(["ddl", "--athena", "--config", cfg]) == 2  # --athena only with --apply

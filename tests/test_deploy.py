"""The deployment: CloudFormation template, its IAM policies against the code's AWS
calls, and the reproducible artifacts of `make package`.

The IAM check reads the code, not a list kept by hand: every boto3 operation called in
lib/, addapart/ and glue_jobs/ is found in the syntax tree, and the function calling it
must be listed in CALL_SITES with the deployed components that run it. A new AWS call
therefore fails here until it is classified, and once classified until the role of
every component that runs it allows the matching IAM action.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore import xform_name
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from loglake import catalog, deploy, keys, package
from loglake.config import Config
from loglake.sources import SOURCES

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "loglake.yaml"

# --------------------------------------------------------------------------- template


@pytest.fixture(scope="module")
def template() -> dict:
    return deploy.render_template()


def _resources(template: dict, type_: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _unsub(value):
    """The template value back as table_inputs gives it: Fn::Sub strings unwrapped."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"]
        return {k: _unsub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsub(v) for v in value]
    return value


def test_committed_template_is_current():
    assert TEMPLATE.read_text() == deploy.render_yaml(), (
        "deploy/loglake.yaml differs from what lib/loglake/deploy.py renders: run `make template` and commit it"
    )


def test_template_passes_cfn_lint(tmp_path):
    rendered = tmp_path / "loglake.yaml"
    rendered.write_text(deploy.render_yaml())
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    proc = subprocess.run([cfn_lint, str(rendered)], capture_output=True, text=True)
    assert proc.returncode == 0, f"cfn-lint found problems:\n{proc.stdout}{proc.stderr}"


def test_glue_tables_are_the_catalog_definitions(template):
    """Every table of catalog.table_inputs and no other, with its columns as declared."""
    expected = {t["Name"]: t for t in catalog.table_inputs(Config(), "s3://b/p", {s: "s3://raw/" for s in SOURCES})}
    tables = {r["Properties"]["TableInput"]["Name"]: r for r in _resources(template, "AWS::Glue::Table").values()}
    assert sorted(tables) == sorted(expected)
    for name, resource in tables.items():
        tinput = _unsub(resource["Properties"]["TableInput"])
        want = expected[name]
        assert tinput["PartitionKeys"] == want["PartitionKeys"], name
        assert tinput["StorageDescriptor"]["Columns"] == want["StorageDescriptor"]["Columns"], name
        assert tinput["StorageDescriptor"]["SerdeInfo"] == want["StorageDescriptor"]["SerdeInfo"], name
        assert resource["Properties"]["DatabaseName"] == {"Ref": "Database"}
    readready = _unsub(tables["from_cloudtrail_readready"]["Properties"]["TableInput"])
    assert readready["StorageDescriptor"]["Location"] == "s3://${ReadreadyBucket}/${ReadreadyPrefix}/from_cloudtrail_readready/"


def test_one_scheduled_glue_job_per_source(template):
    jobs = {k: v for k, v in _resources(template, "AWS::Glue::Job").items() if k != "AlertsJob"}
    triggers = {k: v for k, v in _resources(template, "AWS::Glue::Trigger").items() if k != "AlertsTrigger"}
    assert len(jobs) == len(triggers) == len(SOURCES)
    scripts = {_unsub(j["Properties"]["Command"]["ScriptLocation"]) for j in jobs.values()}
    assert scripts == {f"s3://${{ArtifactBucket}}/${{ArtifactPrefix}}/glue_jobs/{s}_readready.py" for s in SOURCES}
    for job in jobs.values():
        props = job["Properties"]
        assert props["GlueVersion"] == "5.0"
        assert props["WorkerType"] == {"Ref": "WorkerType"} and props["NumberOfWorkers"] == {"Ref": "NumberOfWorkers"}
        args = props["DefaultArguments"]
        assert args["--config"] == {"Ref": "ConfigUri"}
        # loglake's wheel and every wheel Glue lacks, from the artifact prefix, with no index.
        separator, modules = args["--additional-python-modules"]["Fn::Join"]
        assert separator == "," and [_unsub(m) for m in modules] == [
            f"s3://${{ArtifactBucket}}/${{ArtifactPrefix}}/{path}" for path in deploy.glue_modules()]
        assert deploy.glue_modules()[0] == deploy.wheel_name() and len(modules) > 1
        assert set(deploy.glue_modules()) <= set(deploy.artifacts())
        assert args["--python-modules-installer-option"] == "--no-index"
    for trigger in triggers.values():
        props = trigger["Properties"]
        assert props["Type"] == "SCHEDULED" and props["Schedule"] == {"Ref": "Schedule"}
        # No selection: the job's scheduled mode picks up what is new since its last run.
        assert all(set(action) == {"JobName"} for action in props["Actions"])


def test_the_alerts_runner_is_off_by_default_and_runs_after_each_conversion(template):
    assert template["Parameters"]["AlertsRunner"]["Default"] == "off"
    assert template["Conditions"]["RunAlerts"] == {"Fn::Equals": [{"Ref": "AlertsRunner"}, "on"]}
    alerts = {k: v for k, v in template["Resources"].items() if k.startswith("Alerts")}
    assert sorted(alerts) == ["AlertsJob", "AlertsRole", "AlertsTrigger"]
    assert all(r["Condition"] == "RunAlerts" for r in alerts.values())
    job = alerts["AlertsJob"]["Properties"]
    assert _unsub(job["Command"]["ScriptLocation"]).endswith("/glue_jobs/alerts.py")
    assert deploy.ALERTS_SCRIPT in deploy.artifacts() and (ROOT / deploy.ALERTS_SCRIPT).exists()
    assert _unsub(job["DefaultArguments"]["--sink"]) == "sns:${AlarmTopic}"
    trigger = alerts["AlertsTrigger"]["Properties"]
    assert trigger["Type"] == "CONDITIONAL" and trigger["Predicate"]["Logical"] == "ANY"
    conditions = [c["Fn::If"] for c in trigger["Predicate"]["Conditions"]]
    assert [(c[0], c[1]["JobName"], c[1]["State"]) for c in conditions] == [
        (f"Has{deploy._camel(s)}", {"Ref": f"{deploy._camel(s)}Job"}, "SUCCEEDED") for s in SOURCES]
    # least privilege: reads the lake, writes only its state and Athena's results, deletes nothing
    statements = {s["Sid"]: s for s in _statements(alerts["AlertsRole"]["Properties"]["Policies"][0]["PolicyDocument"])}
    actions = {a for s in statements.values() for a in s["Action"]}
    assert not {"s3:DeleteObject", "glue:BatchCreatePartition", "glue:UpdateTable"} & actions
    writes = statements["WriteAlertStateAndResults"]
    assert writes["Action"] == ["s3:PutObject"] and sorted(_unsub(r) for r in writes["Resource"]) == sorted(
        f"arn:${{AWS::Partition}}:s3:::${{ReadreadyBucket}}/${{ReadreadyPrefix}}/{p}" for p in ("_state/alerts/*",
                                                                                              "_athena/*"))
    assert statements["PublishAlerts"]["Resource"] == [{"Ref": "AlarmTopic"}]


def test_addapart_function_and_queue(template):
    fn = template["Resources"]["AddAPartFunction"]["Properties"]
    assert fn["Handler"] == "handler.handler" and fn["Runtime"] == "python3.11"
    assert fn["Environment"]["Variables"]["LOGLAKE_CONFIG"] == {"Ref": "ConfigUri"}
    assert _unsub(fn["Code"]["S3Key"]) == f"${{ArtifactPrefix}}/{deploy.LAMBDA_ZIP}"
    esm = template["Resources"]["AddAPartEventSource"]["Properties"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["Queue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * fn["Timeout"]
    alarms = {r["Properties"]["MetricName"] for r in _resources(template, "AWS::CloudWatch::Alarm").values()}
    assert {"ApproximateNumberOfMessagesVisible", "TriggeredRules"} <= alarms


# --------------------------------------------------------------------------- IAM vs code

SCANNED = ("lib/loglake", "addapart", "glue_jobs")
SERVICES = ("glue", "s3", "sqs", "athena", "sns")
# Modules whose AWS calls never run in the deployment: they are excluded by name.
NOT_DEPLOYED = {
    "lib/loglake/demo.py": "the local demo (creates buckets, queues, notifications on moto)",
    "lib/loglake/localaws.py": "the local moto server",
    "lib/loglake/cli.py": "the operator's `loglake` command",
}
LAMBDA, JOB, ALERTS, OPERATOR = "lambda", "job", "alerts", "operator"
ROLES = {LAMBDA: "AddAPartRole", JOB: "JobRole", ALERTS: "AlertsRole"}
# Every function that calls AWS -> the components that run it. OPERATOR = only the
# `loglake` command on someone's machine (drain, backfill, table set-up), no role.
CALL_SITES = {
    "lib/loglake/storage.py:read_bytes": {LAMBDA, JOB, ALERTS},  # the config (all); raw objects; runs rows, state
    "lib/loglake/storage.py:list_objects": {JOB, ALERTS},  # raw partitions; the runs rows (alerts); backfill
    "lib/loglake/storage.py:exists": {JOB, ALERTS, OPERATOR},  # listing plans; alert state and published files
    "lib/loglake/storage.py:write_bytes": {LAMBDA, JOB, ALERTS},  # inbox, key errors; summaries, state; alert state
    "lib/loglake/storage.py:move_file": {JOB},  # readready ORC files, from the job's tasks (orcwrite)
    "lib/loglake/storage.py:_delete_keys": {JOB},  # delete_tree: replaced generation folders, staging
    "lib/loglake/storage.py:copy_object": {JOB},  # staged files into generation folders, quarantine files
    "lib/loglake/storage.py:read_versioned": {JOB, ALERTS},  # watermark, lock, intent, index, manifests
    "lib/loglake/storage.py:put_conditional": {JOB},  # the lock and the manifests (If-None-Match / If-Match)
    "lib/loglake/storage.py:delete": {JOB},  # claimed inbox files, the intent
    "lib/loglake/storage.py:delete_conditional": {JOB},  # releasing the lock (If-Match: only our own version)
    "lib/loglake/catalog.py:PartitionRegistrar.storage_descriptor": {LAMBDA, JOB},
    "lib/loglake/catalog.py:PartitionRegistrar._register_chunk": {LAMBDA, JOB},
    "lib/loglake/catalog.py:list_partitions": {JOB},
    "lib/loglake/catalog.py:move_partitions": {JOB},  # compaction / rebuild: the new generation folder
    "lib/loglake/catalog.py:partition_locations": {JOB},  # retention: Glue must not name a replaced folder
    "lib/loglake/catalog.py:ensure_database": {OPERATOR},  # the stack creates the database
    "lib/loglake/catalog.py:ensure_table": {OPERATOR},  # ... and the tables
    "lib/loglake/catalog.py:table_location": {OPERATOR},
    "lib/loglake/addapart.py:drain": {OPERATOR},  # in Lambda the event source mapping polls
    "lib/loglake/athena.py:run_athena": {OPERATOR, ALERTS},  # `loglake query/ddl --engine athena`; the alerts job
    "lib/loglake/alert_sinks.py:SnsSink.send": {OPERATOR, ALERTS},  # `loglake alerts run --sink sns:`; the alerts job
}
# What the platform does for a component with its role, beyond the code's own calls.
PLATFORM = {
    LAMBDA: {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",  # event source mapping
             "logs:CreateLogStream", "logs:PutLogEvents"},
    JOB: {"s3:GetObject",  # the script and the wheel
          "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",  # Spark writing quarantine ORC
          "logs:CreateLogStream", "logs:PutLogEvents"},
    # Athena reads the catalog and the data, and writes its results, with the caller's permissions
    ALERTS: {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:PutObject",
             "glue:GetDatabase", "glue:GetTable", "glue:GetPartitions", "logs:CreateLogStream", "logs:PutLogEvents"},
}
# Operations whose IAM actions are not the one named like the operation.
IAM_ACTIONS = {
    ("s3", "list_objects"): ("s3:ListBucket",),
    ("s3", "list_objects_v2"): ("s3:ListBucket",),
    ("s3", "head_object"): ("s3:GetObject",),
    ("s3", "head_bucket"): ("s3:ListBucket",),
    ("s3", "copy_object"): ("s3:GetObject", "s3:PutObject"),  # read the source, write the copy
    ("s3", "delete_objects"): ("s3:DeleteObject",),
    ("s3", "upload_file"): ("s3:PutObject",),  # boto3's transfer helpers, not API operations
    ("s3", "upload_fileobj"): ("s3:PutObject",),
    ("s3", "download_file"): ("s3:GetObject",),
    ("s3", "download_fileobj"): ("s3:GetObject",),
    ("sqs", "delete_message_batch"): ("sqs:DeleteMessage",),
    ("sqs", "send_message_batch"): ("sqs:SendMessage",),
    ("sqs", "change_message_visibility_batch"): ("sqs:ChangeMessageVisibility",),
}


def _iam_actions() -> dict[str, set[str]]:
    """service -> every IAM action name, lower case (the list cfn-lint ships)."""
    spec = json.loads((importlib.resources.files("cfnlint.data.AdditionalSpecs") / "Policies.json").read_text())
    return {service: set(spec[service]["Actions"]) for service in SERVICES}


def _operations() -> dict[str, dict[str, tuple[str, ...]]]:
    """service -> {snake_case method: IAM actions it needs}."""
    session = botocore.session.get_session()
    out = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        out[service] = {xform_name(op): (f"{service}:{op}",) for op in model.operation_names}
    for (service, method), actions in IAM_ACTIONS.items():
        out[service][method] = actions
    return out


class _CallFinder(ast.NodeVisitor):
    """AWS calls in one module: ``x.<operation>(...)`` and ``x.get_paginator("<operation>")``,
    each with the function it is in. Calls on loglake's own modules are not AWS calls."""

    def __init__(self, methods: set[str]):
        self.methods = methods
        self.scope: list[str] = []
        self.own_modules: set[str] = set()
        self.calls: list[tuple[str, str, int]] = []  # (qualified function, method, line)
        self.clients: list[tuple[str, int]] = []  # client("service") literals

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "loglake":
            self.own_modules |= {a.asname or a.name for a in node.names}

    def _scoped(self, node) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        where = ".".join(self.scope) or "<module>"
        if name == "client" and isinstance(first, str):
            self.clients.append((first, node.lineno))
        if isinstance(func, ast.Attribute):
            own = isinstance(func.value, ast.Name) and func.value.id in self.own_modules
            if name == "get_paginator" and isinstance(first, str):
                self.calls.append((where, first, node.lineno))
            elif name in self.methods and not own:
                self.calls.append((where, name, node.lineno))
        self.generic_visit(node)


@functools.cache
def _code_calls() -> tuple[dict, ...]:
    """Every AWS operation the deployed code calls: where, with which IAM action (the code
    is read once per test run)."""
    operations = _operations()
    iam = _iam_actions()
    methods = set().union(*operations.values())
    found = []
    files = sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in NOT_DEPLOYED:
            continue
        finder = _CallFinder(methods)
        finder.visit(ast.parse(path.read_text(), rel))
        for service, line in finder.clients:
            assert service in SERVICES, (
                f"{rel}:{line} creates a {service!r} client: add {service!r} to SERVICES in tests/test_deploy.py "
                "and its permissions to lib/loglake/deploy.py"
            )
        for function, method, line in finder.calls:
            services = [s for s in SERVICES if method in operations[s]]
            assert len(services) == 1, f"{rel}:{line}: {method} is an operation of {services}: disambiguate"
            for action in operations[services[0]][method]:
                service, name = action.split(":")
                assert name.lower() in iam[service], (
                    f"{rel}:{line}: {method} needs some IAM action, but {action} is none: "
                    "add the method to IAM_ACTIONS in tests/test_deploy.py"
                )
                found.append({"site": f"{rel}:{function}", "line": line, "method": method, "action": action})
    return tuple(found)


def _statements(document: dict) -> list[dict]:
    """Statements of a policy document, with both branches of any Fn::If."""
    out = []
    for item in document["Statement"]:
        branches = item["Fn::If"][1:] if "Fn::If" in item else [item]
        out += [b for b in branches if b != {"Ref": "AWS::NoValue"}]
    return out


def _role_actions(template: dict, role: str) -> set[str]:
    actions = set()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in _statements(policy["PolicyDocument"]):
            actions |= set(statement["Action"])
    return actions


def _all_policy_statements(template: dict) -> list[tuple[str, dict]]:
    out = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        out += [(name, s) for d in documents for s in _statements(d)]
    return out


def test_scanner_sees_the_known_calls():
    """Guards the scanner itself: if it stopped finding these, the IAM test would pass vacuously."""
    seen = {(c["site"], c["action"]) for c in _code_calls()}
    assert ("lib/loglake/catalog.py:PartitionRegistrar._register_chunk", "glue:BatchCreatePartition") in seen
    assert ("lib/loglake/storage.py:list_objects", "s3:ListBucket") in seen
    assert ("lib/loglake/catalog.py:list_partitions", "glue:GetPartitions") in seen


def test_every_aws_call_is_classified():
    sites = {c["site"] for c in _code_calls()}
    unknown = sorted(sites - set(CALL_SITES))
    assert not unknown, (
        f"new AWS calls in {unknown}: add them to CALL_SITES in tests/test_deploy.py with the components that "
        "run them (lambda, job, operator), and grant the actions in lib/loglake/deploy.py"
    )
    stale = sorted(set(CALL_SITES) - sites)
    assert not stale, f"CALL_SITES lists {stale}, which no longer call AWS: remove them"


@pytest.mark.parametrize("component", [LAMBDA, JOB, ALERTS])
def test_roles_allow_every_call_their_component_makes(template, component):
    allowed = _role_actions(template, ROLES[component])
    needed = {(c["action"], f"{c['site']} ({c['method']}, line {c['line']})")
              for c in _code_calls() if component in CALL_SITES.get(c["site"], ())}
    needed |= {(action, "the platform") for action in PLATFORM[component]}
    missing = sorted((action, why) for action, why in needed if action not in allowed)
    assert not missing, "\n".join(
        [f"{ROLES[component]} ({component}) lacks actions the code needs; grant them in lib/loglake/deploy.py "
         "and run `make template`:"] + [f"  {action}  <- {why}" for action, why in missing]
    )


def test_operator_only_calls_are_not_granted(template):
    """Least privilege: creating tables or draining the queue is not the deployment's business."""
    granted = _role_actions(template, "AddAPartRole") | _role_actions(template, "JobRole")
    for action in ("glue:CreateTable", "glue:UpdateTable", "glue:CreateDatabase", "sqs:SendMessage"):
        assert action not in granted


def test_no_wildcard_permissions(template):
    for name, statement in _all_policy_statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        assert not [a for a in actions if "*" in a], f"{name}: wildcard action in {statement}"
        if "*" in resources:
            # The one action with no resource-level permissions, and only in Glue's namespace.
            assert actions == ["cloudwatch:PutMetricData"] and "Condition" in statement, f"{name}: {statement}"


def test_addapart_role_is_scoped_to_raw_tables_and_config(template):
    statements = _statements(template["Resources"]["AddAPartRole"]["Properties"]["Policies"][0]["PolicyDocument"])
    [glue] = [s for s in statements if any(a.startswith("glue:") for a in s["Action"])]
    resources = [_unsub(r["Fn::If"][1] if "Fn::If" in r else r) for r in glue["Resource"]]
    assert sorted(r for r in resources if ":table/" in r) == sorted(
        f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:table/${{DatabaseName}}/"
        f"{Config().table(source, 'raw')}" for source in SOURCES
    )
    s3 = {s["Sid"]: s for s in statements if any(a.startswith("s3:") for a in s["Action"])}
    assert sorted(s3) == ["HandOverKeyErrors", "ReadConfig", "WriteInbox"]
    assert s3["ReadConfig"]["Action"] == ["s3:GetObject"] and len(s3["ReadConfig"]["Resource"]) == 1  # config only
    # Writes new objects below the lake's rejected_keys and inbox folders, nothing else: no
    # read, no delete, no data.
    for sid, folder in (("HandOverKeyErrors", "rejected_keys"), ("WriteInbox", "inbox")):
        assert s3[sid]["Action"] == ["s3:PutObject"]
        [resource] = s3[sid]["Resource"]
        assert _unsub(resource).endswith(f"${{ReadreadyBucket}}/${{ReadreadyPrefix}}/_state/*/{folder}/*")


# --------------------------------------------------------------------------- packaging


def _tree(root: Path, files: dict[str, bytes], mtime: int, mode: int) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))
    return root


def test_deterministic_zip_ignores_times_order_and_umask(tmp_path):
    files = {"handler.py": b"x = 1\n", "pkg/b.py": b"b\n", "pkg/a.py": b"a\n", "pkg/__pycache__/a.pyc": b"\0"}
    one = _tree(tmp_path / "one", files, 1_600_000_000, 0o664)
    two = _tree(tmp_path / "two", dict(reversed(files.items())), 1_700_000_000, 0o644)
    a = package.deterministic_zip(one, tmp_path / "a.zip", epoch=0)
    b = package.deterministic_zip(two, tmp_path / "b.zip", epoch=0)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist() == ["handler.py", "pkg/a.py", "pkg/b.py"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """One copy of what a build reads from the checkout, so that concurrent edits to the
    working tree cannot make two builds differ."""
    snapshot = tmp_path_factory.mktemp("checkout")
    for name in package.INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, snapshot / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, snapshot / name)
    return snapshot


@pytest.fixture(scope="module")
def built(snapshot, tmp_path_factory) -> Path:
    """`make package` of the snapshot, once per test run: the dist/ the tests below check.
    Needs PyPI for the Lambda's manylinux wheels, the Glue wheels and the pinned setuptools."""
    out = tmp_path_factory.mktemp("dist") / "dist"
    package.build(out, snapshot)
    return out


@pytest.fixture(scope="module")
def builds(built, snapshot, tmp_path_factory) -> tuple[Path, Path]:
    """`make package` twice from the same snapshot: the second build makes the wheel and
    the Lambda zip again from scratch, and takes the locked Glue wheels from the first
    build's glue-wheels/ instead of PyPI (pip checks their sha256 against the lock as it
    does when downloading, so the files are the locked bytes either way)."""
    again = tmp_path_factory.mktemp("dist-again") / "dist"
    package.build(again, snapshot, glue_wheels_from=built / deploy.GLUE_WHEELS)
    return built, again


def test_package_is_reproducible(builds):
    one, two = builds
    assert (one / "SHA256SUMS").read_text() == (two / "SHA256SUMS").read_text()
    for line in (one / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((one / name).read_bytes()).hexdigest() == digest


def test_package_holds_what_the_template_uses(built):
    dist = built
    assert sorted(deploy.artifacts()) == sorted(
        p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file() and p.name != "SHA256SUMS"
    )
    with zipfile.ZipFile(dist / deploy.LAMBDA_ZIP) as zf:
        names = set(zf.namelist())
    assert {"handler.py", "loglake/addapart.py", "yaml/__init__.py", "orjson/__init__.py"} <= names
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"pyspark", "pandas", "pyarrow", "numpy", "great_expectations", "boto3", "botocore"}, tops
    assert any(n.startswith("orjson/") and ".cpython-311-x86_64-linux-gnu.so" in n for n in names)


# Run in a fresh interpreter on the unpacked Lambda zip (boto3 as the runtime provides
# it): the heavy libraries are not in the zip, so importing any of them is an error that
# names the import chain; then the handler acknowledges an S3 test event.
_LAMBDA_IMPORT = r"""
import importlib.abc, sys
TREE = sys.argv[1]
HEAVY = {"pyspark", "py4j", "pandas", "pyarrow", "numpy", "great_expectations", "sqlglot"}

class NotInTheZip(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in HEAVY:
            return None
        chain, frame = [], sys._getframe(1)
        while frame:
            if frame.f_code.co_filename.startswith(TREE):
                chain.append(f"{frame.f_code.co_filename[len(TREE) + 1:]}:{frame.f_lineno}")
            frame = frame.f_back
        raise ImportError(f"the Lambda imports {name}: " + " -> ".join(reversed(chain)))

sys.meta_path.insert(0, NotInTheZip())
sys.path.insert(0, TREE)
import handler, loglake
assert loglake.__file__.startswith(TREE), loglake.__file__
event = {"Records": [{"messageId": "m1", "body": '{"Service": "Amazon S3", "Event": "s3:TestEvent"}'}]}
assert handler.handler(event, None) == {"batchItemFailures": []}
"""


def test_lambda_imports_nothing_outside_its_zip(built, tmp_path):
    dist = built
    with zipfile.ZipFile(dist / deploy.LAMBDA_ZIP) as zf:
        zf.extractall(tmp_path / "lambda")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGLAKE")}
    env.update(AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    proc = subprocess.run([sys.executable, "-c", _LAMBDA_IMPORT, str(tmp_path / "lambda")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_rendered_yaml_round_trips():
    """What `make template` writes parses back to the template (no aliases, no tags)."""
    assert yaml.safe_load(deploy.render_yaml()) == deploy.render_template()


# --------------------------------------------------------------------------- Glue 5.0 installs

# What the AWS Glue 5.0 job installs: loglake's wheel and the wheels of deploy/glue-wheels.txt,
# with pip's --no-index, on top of the modules Glue provides (deploy/glue-5.0-provided.txt).
GLUE_DOCS = "https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-python-libraries.html"


def _install_requires() -> list[Requirement]:
    """install_requires of setup.py, read from its syntax tree (what the wheel declares)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    [value] = [k.value for k in call.keywords if k.arg == "install_requires"]
    return [Requirement(r) for r in ast.literal_eval(value)]


def _constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {canonicalize_name(n): v for n, v in (x.split("==") for x in lines if "==" in x and not x.startswith("#"))}


def test_glue_provided_list_names_its_source():
    text = (ROOT / package.GLUE_PROVIDED).read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(GLUE_DOCS in line for line in header) and any("Read on" in line for line in header)
    names = [line.split("==")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert len(names) == len(set(names)) == len(package.glue_provided())
    assert {"boto3", "botocore", "pyarrow", "pandas", "numpy"} <= set(package.glue_provided())


def test_wheel_requirements_admit_glue_versions():
    """Each requirement on a module Glue provides admits Glue's version (so pip keeps it),
    and constraints.txt's exact pin (so local installs stay inside the range)."""
    provided, pins = package.glue_provided(), _constraints()
    checked = []
    for req in _install_requires():
        name = canonicalize_name(req.name)
        assert pins.get(name) in req.specifier, f"constraints.txt pins {name}=={pins.get(name)}, outside {req}"
        if name in provided:
            assert req.specifier.contains(provided[name], prereleases=True), (
                f"setup.py requires {req}, which excludes the {name} {provided[name]} AWS Glue 5.0 provides: "
                f"the job would replace it")
            checked.append(name)
    assert {"boto3", "botocore", "pyarrow", "pandas", "numpy"} <= set(checked)


def test_glue_lock_ships_what_glue_lacks_at_the_pinned_versions():
    """deploy/glue-wheels.txt against setup.py and constraints.txt: run `make glue-lock` when this fails."""
    provided, pins = package.glue_provided(), _constraints()
    locked = {}
    for digest, name in deploy.glue_wheels():
        dist, version, *_ = parse_wheel_filename(name)
        assert len(digest) == 64 and name.endswith(".whl")
        assert dist not in provided, f"{name}: AWS Glue 5.0 provides {dist}; shipping it would replace Glue's"
        assert pins.get(dist) == str(version), f"{name}: constraints.txt pins {dist}=={pins.get(dist)}"
        locked[dist] = str(version)
    needed = {canonicalize_name(r.name) for r in _install_requires()} - set(provided)
    assert needed <= set(locked), f"not in {deploy.GLUE_WHEELS_LOCK}: {sorted(needed - set(locked))}"
    # Built for Glue: CPython 3.11, and no platform newer than its glibc 2.34 (x86_64).
    for _, name in deploy.glue_wheels():
        for tag in parse_wheel_filename(name)[3]:
            assert tag.interpreter in ("py3", "cp311") and tag.abi in ("none", "abi3", "cp311"), name
            assert tag.platform == "any" or (tag.platform.endswith("x86_64") and _glibc(tag.platform) <= (2, 34)), name


def _glibc(platform: str) -> tuple[int, int]:
    legacy = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12), "manylinux2014_x86_64": (2, 17)}
    if platform in legacy:
        return legacy[platform]
    _, major, minor, _ = platform.split("_", 3)
    return int(major), int(minor)


# The job's install, checked on every test run without building an environment: pip
# resolves what the template hands a job (loglake's wheel and each wheel of
# dist/glue-wheels/, --no-index) against an interpreter whose site-packages hold the
# metadata, and nothing else, of every module Glue 5.0 provides at Glue's version. That
# is all pip's resolver reads of an environment, so the dry run fails as the job would
# when a needed wheel is not shipped or a shipped one needs another version of something
# Glue provides (this machine's pip resolves, not Glue's 23.0.1: glue_venv uses that one).
# Installing for real and running the job's modules on Glue's numpy, pandas, pyarrow and
# botocore (glue_venv below) takes about 80 seconds more: `make glue-check`.


def _glue_stand_in(tmp: Path) -> Path:
    """A Python with, as far as pip can tell, exactly what Glue 5.0 provides; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name, version in package.glue_provided().items():
        info = Path(site) / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("glue-5.0-provided\n")
        (info / "RECORD").write_text("")
    return python


def _dry_run_job_install(python: Path, wheels: list[Path], report: Path) -> subprocess.CompletedProcess:
    # --isolated: no pip configuration or PIP_* variables (find-links, extra indexes) of this machine.
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
                           "--python", str(python), "install", "--dry-run", "--no-index", "--report", str(report)]
                          + [str(w) for w in wheels], capture_output=True, text=True)


@pytest.fixture(scope="module")
def glue_stand_in(tmp_path_factory) -> Path:
    return _glue_stand_in(tmp_path_factory.mktemp("glue-stand-in"))


def test_glue_job_install_needs_only_the_shipped_wheels(built, glue_stand_in, tmp_path):
    """What the template hands a job installs with no index on top of what Glue provides:
    exactly the shipped wheels and loglake's, replacing none of Glue's modules."""
    report = tmp_path / "report.json"
    proc = _dry_run_job_install(glue_stand_in, [built / path for path in deploy.glue_modules()], report)
    assert proc.returncode == 0, f"a Glue 5.0 job could not install dist/ with no index:\n{proc.stderr[-3000:]}"
    install = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
               for item in json.loads(report.read_text())["install"]}
    provided = package.glue_provided()
    replaced = {name: (provided[name], version) for name, version in install.items() if name in provided}
    assert not replaced, f"the job's install would replace what Glue provides (Glue's, shipped): {replaced}"
    listed = [parse_wheel_filename(path.rsplit("/", 1)[-1]) for path in deploy.glue_modules()]
    assert install == {str(name): str(version) for name, version, *_ in listed}


def test_glue_job_install_check_fails_without_a_needed_wheel(built, glue_stand_in, tmp_path):
    """Guards the check above: with one wheel left out (a requirement of a requirement of
    loglake's), the dry run fails and names it."""
    missing = "pydantic-core"
    wheels = [built / path for path in deploy.glue_modules()]
    kept = [w for w in wheels if canonicalize_name(parse_wheel_filename(w.name)[0]) != missing]
    assert len(kept) == len(wheels) - 1
    proc = _dry_run_job_install(glue_stand_in, kept, tmp_path / "report.json")
    assert proc.returncode != 0 and "No matching distribution" in proc.stderr, proc.stderr[-3000:]
    assert re.search(missing.replace("-", "[-_.]"), proc.stderr, re.IGNORECASE), proc.stderr[-3000:]


# `make glue-check` (LOGLAKE_GLUE_CHECK=1) installs into a real Glue stand-in and runs the job's modules.
glue_check_only = pytest.mark.skipif(
    os.environ.get("LOGLAKE_GLUE_CHECK") != "1",
    reason="a venv of Glue 5.0's versions from PyPI (about 80 seconds): run by `make glue-check`")


def _requires_dist(wheel: Path) -> list[Requirement]:
    """The wheel's own requirements that apply on Glue (CPython 3.11 on Linux, no extras)."""
    with zipfile.ZipFile(wheel) as zf:
        [meta] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        lines = zf.read(meta).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1]) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _installed(python: Path) -> dict[str, str]:
    """canonical name -> version of everything installed in that Python's environment (as
    `pip list` finds it: pip reads installed metadata with importlib.metadata on 3.11)."""
    script = "import importlib.metadata as m, json; print(json.dumps([[d.name, d.version] for d in m.distributions()]))"
    proc = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, check=True)
    return {canonicalize_name(name): version for name, version in json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def glue_venv(built, tmp_path_factory) -> dict:
    """A throwaway venv standing in for a Glue 5.0 job: the modules Glue provides that the
    shipped wheels require, at Glue's versions (with Glue's pip and setuptools), from PyPI;
    then what the job installs, as the template passes it: the built wheels, no index."""
    dist = built
    provided = package.glue_provided()
    wheels = [dist / deploy.wheel_name()] + [dist / deploy.GLUE_WHEELS / name for _, name in deploy.glue_wheels()]
    wanted = {canonicalize_name(r.name) for w in wheels for r in _requires_dist(w)} & set(provided)
    wanted |= {"pip", "setuptools"}
    tmp = tmp_path_factory.mktemp("glue")
    # No ensurepip: this pip installs Glue's pip and setuptools along with the rest, and the
    # job's install below runs Glue's pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    glue = tmp / "glue-provided.txt"
    glue.write_text("".join(f"{n}=={v}\n" for n, v in sorted(provided.items())))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(python),
           "install", "--no-compile"]
    subprocess.run(pip + ["--only-binary=:all:", "-c", str(glue)] + [f"{n}=={provided[n]}" for n in sorted(wanted)],
                   check=True)
    before = _installed(python)
    assert (before["pip"], before["setuptools"]) == (provided["pip"], provided["setuptools"])
    # --isolated: no pip configuration or PIP_* variables (find-links, extra indexes) of this machine.
    proc = subprocess.run([str(python), "-m", "pip", "--isolated", "install", "--no-compile", "--no-index"]
                          + [str(w) for w in wheels],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"the job's install fails with no index:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return {"python": python, "before": before, "after": _installed(python), "wanted": wanted, "tmp": tmp}


@glue_check_only
def test_glue_install_replaces_nothing_glue_provides(glue_venv):
    before, after = glue_venv["before"], glue_venv["after"]
    provided = package.glue_provided()
    assert {n: before.get(n) for n in glue_venv["wanted"]} == {n: provided[n] for n in glue_venv["wanted"]}
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, f"installing the job's wheels replaced what Glue provides: {changed}"
    shipped = {parse_wheel_filename(name)[0] for _, name in deploy.glue_wheels()}
    assert shipped | {"loglake"} == set(after) - set(before)


# Run by the Glue stand-in's Python, outside the checkout: the job's modules import with
# Glue's numpy, pandas and pyarrow, the GX suites build, and pyarrow writes the runs table's ORC.
_GLUE_RUN = r"""
import io, sys
import numpy, pandas, pyarrow, pyarrow.orc as orc, boto3
import loglake, loglake.convert, loglake.jobs, loglake.quality
from loglake.schema import RUNS
assert "site-packages" in loglake.__file__, loglake.__file__
versions = dict(v.split("==") for v in sys.argv[1:])
for module in (numpy, pandas, pyarrow, boto3):
    assert module.__version__ == versions[module.__name__], (module.__name__, module.__version__)
for source in ("cloudtrail", "cloudwatch"):
    assert loglake.quality.suite(source).expectations
schema = RUNS.orc_arrow()
buf = io.BytesIO()
orc.write_table(pyarrow.Table.from_pylist([], schema=schema), buf, compression="zlib")
assert orc.ORCFile(io.BytesIO(buf.getvalue())).schema.names == schema.names
"""


def _run_in_glue_venv(glue_venv: dict, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGLAKE", "PYTHON", "VIRTUAL_ENV"))}
    env.update(GX_ANALYTICS_ENABLED="False", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    return subprocess.run([str(glue_venv["python"]), "-c", script, *args], capture_output=True, text=True,
                          cwd=glue_venv["tmp"], env=env)


@glue_check_only
def test_glue_install_runs_the_job_modules(glue_venv):
    provided = package.glue_provided()
    versions = [f"{n}=={provided[n]}" for n in ("numpy", "pandas", "pyarrow", "boto3")]
    proc = _run_in_glue_venv(glue_venv, _GLUE_RUN, *versions)
    assert proc.returncode == 0, proc.stderr[-3000:]


# What the writing and compacting tasks run on the executors, with Glue's pyarrow: the
# writer and its gate tally, compaction's dedup and its nulls-first sort.
_GLUE_TASKS = r"""
import datetime as dt, json, tempfile
import pyarrow as pa
from loglake import compact, orcwrite, quality
from loglake.sources.cloudtrail import CLOUDTRAIL as T
arrow = pa.schema([*T.orc_arrow(), *(pa.field(n, pa.string()) for n in T.partition_names)])
rows = [{"org": "none", "account": "012345678901", "region": "us-east-1", "dt": "2024-05-01",
         "eventid": f"id-{i % 49}", "eventtime": dt.datetime(2024, 5, 1, 10, i),
         "eventsource": "ec2.amazonaws.com" if i % 3 else None, "eventname": "Describe", "awsregion": "us-east-1"}
        for i in range(50)]
table = pa.Table.from_pylist(rows, schema=arrow)
tally = quality.StagedGate("cloudtrail")()
layout = orcwrite.Layout(tempfile.mkdtemp(), tuple(T.partition_names), T.orc_arrow(), ("eventid",), 1000)
[(_, _, n)] = orcwrite.write_sorted(iter(table.to_batches()), layout, 0, tally)
result = quality.judge_counts([json.loads(json.dumps(tally.counts()))], "cloudtrail", True,
                              [*T.orc_arrow().names, *T.partition_names])
assert n == 50 and [f.split("(")[0] for f in result.failed] == ["expect_compound_columns_to_be_unique"], result.failed
kept = orcwrite.first_of_each_key(table.select(T.orc_arrow().names), ["eventid"])
ordered = kept.take(orcwrite.sort_order(kept, ("eventsource", "eventname", "eventtime")))
assert kept.num_rows == 49 and ordered["eventsource"][0].as_py() is None
"""


@glue_check_only
def test_glue_pyarrow_runs_the_writing_and_compacting_tasks(glue_venv):
    proc = _run_in_glue_venv(glue_venv, _GLUE_TASKS)
    assert proc.returncode == 0, proc.stderr[-3000:]


# The scheduled runs' lock is an S3 conditional put (storage.put_conditional): with a
# stubbed client, botocore validates the call against the S3 model of Glue's version.
_GLUE_CONDITIONAL_PUT = r"""
import botocore
from botocore.stub import Stubber
from loglake import storage
s3 = storage.client("s3")
storage._s3 = lambda: s3
with Stubber(s3) as stub:
    stub.add_response("put_object", {"ETag": '"1"'})
    stub.add_response("put_object", {"ETag": '"2"'})
    assert storage.put_conditional("s3://bucket/lock", b"x", None)
    assert storage.put_conditional("s3://bucket/lock", b"y", '"1"')
"""


@glue_check_only
def test_glue_botocore_takes_the_conditional_put(glue_venv):
    # botocore 1.34.131 (Glue 5.0's) predates S3 conditional writes: its PutObject has no
    # IfNoneMatch / IfMatch parameters, so storage.put_conditional sends them as headers.
    proc = _run_in_glue_venv(glue_venv, _GLUE_CONDITIONAL_PUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_org_id_parameter_takes_what_key_parsing_takes(template):
    """OrgId is checked by shape, like the keys the jobs parse (keys.ORG_RE), not by a length rule."""
    pattern = template["Parameters"]["OrgId"]["AllowedPattern"]
    assert re.fullmatch(pattern, "")  # no organization trail
    for org in ("o-a1b2c3d4e", "o-abcdefghij", "o-" + "a1" * 20, "o-", "o-ABCDEFGHIJ", "o-abc/def", "r-abcdefghij"):
        assert bool(re.fullmatch(pattern, org)) == bool(keys.ORG_RE.match(org)), org
    assert re.fullmatch(pattern, "o-a1b2c3d4e")  # 9 characters, as in AWS's published samples

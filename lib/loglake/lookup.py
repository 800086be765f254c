"""Lookup tables the query library joins to: reference data that is not in the logs.

``connect_users`` resolves Amazon Connect user ids (what CloudTrail records in
``requestParameters.UserId``) to user names. It is loaded from saved output of
``aws connect list-users --instance-id ID`` (``{"UserSummaryList": [{"Id", "Arn",
"Username", ...}]}``), written as ORC/ZLIB below ``<lake>/connect_users/``, one file per
Connect instance: loading an instance again replaces exactly its file.

The files are written with pyarrow, so loading needs no Spark; Spark and Athena read
them like any other readready table.
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from typing import Any

from loglake import storage
from loglake.schema import Column, TableSchema

CONNECT_USERS_TABLE = "connect_users"
CONNECT_USERS = TableSchema(
    (
        Column("id", "string", "Amazon Connect user id (UserSummary.Id), as in CloudTrail requestParameters.UserId"),
        Column("username", "string", "UserSummary.Username"),
        Column("instance", "string", "Connect instance id the user belongs to"),
        Column("arn", "string", "UserSummary.Arn"),
    ),
    (),
)

# arn:aws:connect:REGION:ACCOUNT:instance/INSTANCE_ID/agent/USER_ID
_USER_ARN = re.compile(r"^arn:[\w-]+:connect:[^:]*:[^:]*:instance/(?P<instance>[^/]+)/agent/(?P<user>[^/]+)$")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")


class LookupInputError(ValueError):
    """Bad lookup input; the message says what and where."""


def _summaries(doc: Any) -> Iterable[dict]:
    pages = doc if isinstance(doc, list) else [doc]
    for i, page in enumerate(pages):
        if not isinstance(page, dict) or not isinstance(page.get("UserSummaryList"), list):
            raise LookupInputError(
                f"page {i}: expected the JSON output of `aws connect list-users` "
                '({"UserSummaryList": [...]}), or a list of such pages'
            )
        yield from page["UserSummaryList"]


def parse_list_users(doc: Any, instance: str | None = None) -> list[dict[str, str]]:
    """Rows (id, username, instance, arn) from saved ListUsers output.

    The instance comes from ``instance`` or, per user, from the user's ARN; a user whose
    instance cannot be known is an error (a lookup row without it would join wrongly).
    """
    if instance is not None and not _INSTANCE_ID.match(instance):
        raise LookupInputError(f"--instance {instance!r} is not a Connect instance id")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for n, user in enumerate(_summaries(doc)):
        if not isinstance(user, dict) or not isinstance(user.get("Id"), str) or not user["Id"]:
            raise LookupInputError(f"UserSummaryList[{n}] has no Id")
        arn = user.get("Arn") if isinstance(user.get("Arn"), str) else None
        m = _USER_ARN.match(arn or "")
        inst = instance or (m.group("instance") if m else None)
        if not inst:
            raise LookupInputError(f"UserSummaryList[{n}] ({user['Id']}): no instance in its Arn; pass --instance")
        if m and instance and m.group("instance") != instance:
            raise LookupInputError(
                f"UserSummaryList[{n}] ({user['Id']}) belongs to instance {m.group('instance')}, not {instance}")
        username = user.get("Username") if isinstance(user.get("Username"), str) else None
        rows[(inst, user["Id"])] = {"id": user["Id"], "username": username, "instance": inst, "arn": arn}
    return [rows[k] for k in sorted(rows)]


def location(lake_root: str) -> str:
    return storage.join(lake_root, CONNECT_USERS_TABLE)


def write_connect_users(rows: list[dict[str, str]], lake_root: str) -> dict[str, Any]:
    """Write one ORC/ZLIB file per instance (replacing that instance's previous load)."""
    import pyarrow as pa
    import pyarrow.orc as orc

    by_instance: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_instance.setdefault(row["instance"], []).append(row)
    files = []
    for inst, inst_rows in sorted(by_instance.items()):
        table = pa.Table.from_pylist(inst_rows, schema=CONNECT_USERS.orc_arrow())
        buf = io.BytesIO()
        orc.write_table(table, buf, compression="zlib")
        uri = storage.join(location(lake_root), f"{inst}.orc")
        storage.write_bytes(uri, buf.getvalue())
        files.append(uri)
    return {
        "table": CONNECT_USERS_TABLE,
        "location": location(lake_root),
        "rows": len(rows),
        "instances": {inst: len(r) for inst, r in sorted(by_instance.items())},
        "files": files,
    }


def load_connect_users(path: str, lake_root: str, instance: str | None = None) -> dict[str, Any]:
    """``loglake lookup load connect-users FILE``: parse saved ListUsers output and write it."""
    try:
        doc = json.loads(storage.read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        raise LookupInputError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LookupInputError(f"{path}: not JSON: {exc}") from None
    try:
        rows = parse_list_users(doc, instance)
    except LookupInputError as exc:  # the parser says where in the document; this says which file
        raise LookupInputError(f"{path}: {exc}") from None
    if not rows:
        raise LookupInputError(f"{path}: UserSummaryList is empty; nothing to load")
    return write_connect_users(rows, lake_root)


def table_input(readready_root: str, name: str = CONNECT_USERS_TABLE) -> dict:
    """The Glue TableInput of the lookup table (same shape as catalog.table_inputs)."""
    from loglake import catalog

    return catalog.table_input(
        name, CONNECT_USERS, f"{readready_root.rstrip('/')}/{name}", "orc",
        "Amazon Connect users (id -> username) loaded by `loglake lookup load connect-users`",
    )


def register(spark, lake_root: str) -> str:
    """Temp view ``connect_users`` over the loaded files (empty when nothing was loaded)."""
    loc = location(lake_root)
    try:
        present = any(o.key.endswith(".orc") for o in storage.list_objects(loc))
    except FileNotFoundError:
        present = False
    if present:
        df = spark.read.orc(storage.spark_uri(loc))
    else:
        df = spark.createDataFrame([], CONNECT_USERS.spark_ddl())
    df.createOrReplaceTempView(CONNECT_USERS_TABLE)
    return CONNECT_USERS_TABLE

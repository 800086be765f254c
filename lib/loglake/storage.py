"""Object storage behind one interface: s3:// URIs through boto3, everything else local.

The jobs never assume where data lives: raw objects are read here (inside Spark
executors, since local Spark has no s3:// filesystem), and output locations are
handed to Spark as URIs that it can write (file:// locally, s3:// on Glue).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    key: str  # the object key for s3://, the absolute path for local files
    size: int
    mtime: float = 0.0  # S3 LastModified / file mtime, epoch seconds


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> str:
    if uri.startswith("file://"):
        return urlparse(uri).path
    return os.path.abspath(uri)


def spark_uri(uri: str) -> str:
    """A location Spark can write: s3:// as is (Glue), local paths as file:// URIs."""
    if is_s3(uri):
        return uri
    return "file://" + local_path(uri)


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


@functools.lru_cache(maxsize=16)
def client(service: str, endpoint_url: str | None = None, region: str | None = None, max_attempts: int = 8,
           timeout: float | None = None):
    """A boto3 client, one per process and settings (clients are thread-safe, sessions are not).

    ``max_attempts`` is botocore's own retry budget; callers that retry with their own
    bounded loop (the partition registrar) pass 1 so retries do not multiply.
    ``timeout``: seconds to connect and to wait for an answer (botocore: 60 each), for a
    caller with less time than that (AddAPart runs in a 60 s Lambda).
    """
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url or None,
        region_name=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=BotoConfig(retries={"max_attempts": max_attempts, "mode": "standard"}, max_pool_connections=32,
                          **({"connect_timeout": timeout, "read_timeout": timeout} if timeout else {})),
    )


_endpoint: dict[str, str | None] = {"url": None, "region": None}


def configure(endpoint_url: str | None, region: str | None) -> None:
    """Set the endpoint used for s3:// URIs in this process (moto locally; None on AWS)."""
    _endpoint["url"], _endpoint["region"] = endpoint_url, region


def _s3():
    return client("s3", _endpoint["url"], _endpoint["region"])


def list_objects(uri: str, newer_than: float | None = None) -> Iterator[ObjectInfo]:
    """Every object below a prefix or directory, recursively, in key order; only those
    modified after ``newer_than`` when given (a scheduled run's watermark: by a day's end
    an hourly run lists some 22,000 files of which 900 are new, and making an object of
    each old one was a third of the listing)."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        paginator = _s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                mtime = obj["LastModified"].timestamp()
                if newer_than is None or mtime > newer_than:
                    yield ObjectInfo(f"s3://{bucket}/{obj['Key']}", obj["Key"], obj["Size"], mtime)
        return
    root = local_path(uri)
    if os.path.isfile(root):
        stat = os.stat(root)
        if newer_than is None or stat.st_mtime > newer_than:
            yield ObjectInfo("file://" + root, root, stat.st_size, stat.st_mtime)
        return
    if not os.path.isdir(root):
        return  # like an S3 prefix with nothing below it
    yield from _walk_local(root, newer_than)


def _walk_local(folder: str, newer_than: float | None) -> Iterator[ObjectInfo]:
    """A folder's files (sorted by name), then each subfolder's, as ``os.walk`` gives
    them, with one ``scandir`` entry's ``stat`` per file (no path joined in Python). A
    symbolic link to a folder is not followed (as ``os.walk``); a folder that cannot be
    read is an error (``os.walk`` skipped it, and its files with it, silently)."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    folders = []
    for entry in entries:
        if entry.is_dir():
            if not entry.is_symlink():
                folders.append(entry.path)
            continue
        stat = entry.stat()
        if newer_than is None or stat.st_mtime > newer_than:
            yield ObjectInfo("file://" + entry.path, entry.path, stat.st_size, stat.st_mtime)
    for sub in folders:
        yield from _walk_local(sub, newer_than)


def exists(uri: str) -> bool:
    """A local file or folder exists, or an S3 prefix holds at least one object."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        return bool(_s3().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))
    return os.path.exists(local_path(uri))


def read_bytes(uri: str) -> bytes:
    """Whole object. Raises FileNotFoundError for a missing local file or S3 key."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3 = _s3()
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"no such object: {uri}") from exc
    with open(local_path(uri), "rb") as fh:
        return fh.read()


def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = local_path(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def move_file(path: str, uri: str) -> None:
    """Move a finished local file to ``uri``, where it appears complete: on S3 one
    upload (multipart when large), then the local file is removed; locally a rename
    (``path`` must be on the same file system, e.g. in the destination's folder)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3().upload_file(path, bucket, key)
        os.remove(path)
        return
    dest = local_path(uri)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(path, dest)


DELETE_ATTEMPTS = 5
DELETE_BACKOFF_S = 0.2  # doubled after each attempt


class DeleteFailed(OSError):
    """S3 kept refusing to delete some objects: the caller must not go on as if they were
    gone (an old file left beside its replacement doubles a partition)."""


def delete_tree(uri: str) -> int:
    """Remove everything below a prefix/directory; returns how many objects went. On S3,
    the keys a DeleteObjects call reports under ``Errors`` are tried again, and
    :class:`DeleteFailed` is raised when some are still there after DELETE_ATTEMPTS."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        prefix = prefix.rstrip("/") + "/"
        keys = [o.key for o in list_objects(f"s3://{bucket}/{prefix}")]
        for i in range(0, len(keys), 1000):
            _delete_keys(bucket, keys[i : i + 1000])
        return len(keys)
    path = local_path(uri)
    if not os.path.exists(path):
        return 0
    count = sum(len(files) for _, _, files in os.walk(path))
    shutil.rmtree(path)
    return count


def _delete_keys(bucket: str, keys: list[str]) -> None:
    """One DeleteObjects batch (<= 1000 keys). It answers 200 even when it deleted only
    some keys, naming the others under ``Errors`` (InternalError, SlowDown, AccessDenied)."""
    pending, errors = keys, []
    for attempt in range(DELETE_ATTEMPTS):
        if attempt:
            time.sleep(DELETE_BACKOFF_S * 2 ** (attempt - 1))
        resp = _s3().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in pending], "Quiet": True})
        errors = resp.get("Errors") or []
        pending = [e["Key"] for e in errors]
        if not pending:
            return
    e = errors[0]
    raise DeleteFailed(f"S3 did not delete {len(pending)} object(s) after {DELETE_ATTEMPTS} attempts, e.g. "
                       f"s3://{bucket}/{e['Key']}: {e.get('Code')} {e.get('Message', '')}".rstrip())


def copy_object(src: str, dst: str) -> None:
    """Copy one object; the copy appears whole (S3 CopyObject; locally a temp file renamed)."""
    if is_s3(src):
        sb, sk = split_s3(src)
        db, dk = split_s3(dst)
        _s3().copy_object(Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk})
        return
    dst_path = local_path(dst)
    os.makedirs(os.path.dirname(dst_path), exist_ok=True)
    tmp = dst_path + ".tmp"
    if os.path.lexists(tmp):  # what a crashed copy left
        os.remove(tmp)
    # A hard link where the file system allows it: the bytes are not written again (an
    # hourly run publishes a file into each of the ~80 partitions it touched). Sound
    # because the files copied here (staged ORC, quarantine) are never changed in place
    # once written, only removed, which leaves the other name whole.
    try:
        os.link(local_path(src), tmp)
    except OSError:  # another file system (EXDEV), or one without hard links
        shutil.copyfile(local_path(src), tmp)
    os.replace(tmp, dst_path)


def read_versioned(uri: str) -> tuple[bytes, str] | None:
    """An object's bytes and a version tag (S3 ETag, or a hash of the file's bytes), or None."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3 = _s3()
        try:
            resp = s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.NoSuchKey:
            return None
        return resp["Body"].read(), resp["ETag"]
    path = local_path(uri)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    return data, hashlib.sha256(data).hexdigest()


_condition = threading.local()  # the conditional headers of the put or delete this thread is making
_CONDITION_HANDLER = "loglake-conditional-put"


def _condition_headers(request, **_) -> None:
    for name, value in (getattr(_condition, "headers", None) or {}).items():
        request.headers[name] = value


def put_conditional(uri: str, data: bytes, expect: str | None) -> bool:
    """Write only if the object is absent (``expect=None``) or still at version ``expect``;
    False when another writer got there first. S3 conditional writes (If-None-Match /
    If-Match) make this atomic across hosts; locally, O_EXCL and a version check."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        condition = {"If-None-Match": "*"} if expect is None else {"If-Match": expect}
        s3 = _s3()
        # As headers, not as IfNoneMatch/IfMatch parameters: the botocore of AWS Glue 5.0
        # (1.34.131) predates S3 conditional writes and rejects those parameters, while S3
        # honours the headers whatever the client's version.
        s3.meta.events.register("before-sign.s3.PutObject", _condition_headers, unique_id=_CONDITION_HANDLER)
        _condition.headers = condition
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        finally:
            _condition.headers = None
    # Locally: the new content is written to a temporary file first and appears in one
    # step (link or rename), so a reader never finds the object missing or half written;
    # check-and-replace is serialised by an advisory lock beside it.
    import fcntl

    path = local_path(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    try:
        if expect is None:
            try:
                os.link(tmp, path)  # fails if the object exists
            except FileExistsError:
                return False
            return True
        with open(path + ".cas", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = read_versioned(uri)
            if current is None or current[1] != expect:
                return False
            os.replace(tmp, path)
            return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def delete_conditional(uri: str, expect: str) -> bool:
    """Delete only if the object is still at version ``expect``; False when it changed
    (or is gone). S3 conditional deletes (If-Match) make this atomic, as for writes."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        s3 = _s3()
        # a unique id of its own: botocore keeps one handler per id, whatever the event
        s3.meta.events.register("before-sign.s3.DeleteObject", _condition_headers,
                                unique_id=_CONDITION_HANDLER + "-delete")
        _condition.headers = {"If-Match": expect}
        try:
            s3.delete_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                            "NoSuchKey", "404"):
                return False
            raise
        finally:
            _condition.headers = None
    import fcntl

    path = local_path(uri)
    try:
        with open(path + ".cas", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = read_versioned(uri)
            if current is None or current[1] != expect:
                return False
            os.remove(path)
            return True
    except FileNotFoundError:
        return False


def delete(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3().delete_object(Bucket=bucket, Key=key)
        return
    try:
        os.remove(local_path(uri))
    except FileNotFoundError:
        pass

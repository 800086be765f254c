"""S3 storage edge cases on the moto server: what S3 reports per key must not be ignored."""
from __future__ import annotations

import pytest

from loglake import storage


class KeyRefusal:
    """DeleteObjects answers 200 but lists keys it did not delete under Errors (S3 does
    that per key: AccessDenied, InternalError, SlowDown). This keeps ``key`` out of the
    next ``times`` calls and reports it as an error, as S3 would."""

    def __init__(self, s3, key: str, times: int):
        self.key, self.times, self.calls = key, times, 0
        s3.meta.events.register("provide-client-params.s3.DeleteObjects", self.params, unique_id="refuse-params")
        s3.meta.events.register("after-call.s3.DeleteObjects", self.response, unique_id="refuse-response")
        self.s3 = s3

    def params(self, params, **_):
        self.calls += 1
        self.refused = self.times > 0 and any(o["Key"] == self.key for o in params["Delete"]["Objects"])
        if self.refused:
            self.times -= 1
            # Sent for a key that does not exist instead, so S3 deletes nothing real for it.
            params["Delete"]["Objects"] = [{"Key": o["Key"] + ".decoy"} if o["Key"] == self.key else o
                                           for o in params["Delete"]["Objects"]]

    def response(self, parsed, **_):
        if self.refused:
            parsed.setdefault("Errors", []).append(
                {"Key": self.key, "Code": "InternalError", "Message": "We encountered an internal error."})

    def close(self):
        self.s3.meta.events.unregister("provide-client-params.s3.DeleteObjects", unique_id="refuse-params")
        self.s3.meta.events.unregister("after-call.s3.DeleteObjects", unique_id="refuse-response")


@pytest.fixture
def bucket(aws):
    aws.s3.create_bucket(Bucket="lake")
    for i in range(5):
        aws.s3.put_object(Bucket="lake", Key=f"t/part=1/f{i}.orc", Body=b"x")
    aws.s3.put_object(Bucket="lake", Key="t/part=2/keep.orc", Body=b"x")
    return aws


def _keys(aws, prefix="t/"):
    return sorted(o["Key"] for o in aws.s3.list_objects_v2(Bucket="lake", Prefix=prefix).get("Contents", []))


def test_delete_tree_retries_the_keys_s3_did_not_delete(bucket, monkeypatch):
    monkeypatch.setattr(storage, "DELETE_BACKOFF_S", 0.0)
    refusal = KeyRefusal(storage._s3(), "t/part=1/f3.orc", times=2)
    try:
        assert storage.delete_tree("s3://lake/t/part=1") == 5
    finally:
        refusal.close()
    assert refusal.calls == 3  # the whole list, then the refused key twice more
    assert _keys(bucket) == ["t/part=2/keep.orc"]


def test_delete_tree_fails_naming_a_key_that_cannot_be_deleted(bucket, monkeypatch):
    monkeypatch.setattr(storage, "DELETE_BACKOFF_S", 0.0)
    refusal = KeyRefusal(storage._s3(), "t/part=1/f3.orc", times=100)
    try:
        with pytest.raises(storage.DeleteFailed, match=r"t/part=1/f3.orc.*InternalError"):
            storage.delete_tree("s3://lake/t/part=1")
    finally:
        refusal.close()
    assert refusal.calls == storage.DELETE_ATTEMPTS
    # Never an old file beside its replacement: the caller knows, and the run fails.
    assert _keys(bucket) == ["t/part=1/f3.orc", "t/part=2/keep.orc"]


def test_a_local_copy_is_whole_replaces_its_target_and_outlives_its_source(tmp_path):
    """Locally a copy is a hard link where it can be: the target must still read as the
    source's bytes once the source is removed (staging is deleted after a publish), a
    second copy to the same name (a rerun) must replace it, and a temporary file a
    crashed copy left must not stop it."""
    src, other = tmp_path / "staged" / "a.orc", tmp_path / "staged" / "b.orc"
    src.parent.mkdir()
    src.write_bytes(b"first")
    other.write_bytes(b"second")
    dst = tmp_path / "lake" / "p" / "i-0.zlib.orc"
    storage.copy_object(str(src), str(dst))
    src.unlink()
    assert dst.read_bytes() == b"first"
    (dst.parent / (dst.name + ".tmp")).write_bytes(b"left by a crash")
    storage.copy_object("file://" + str(other), "file://" + str(dst))
    assert dst.read_bytes() == b"second" and sorted(p.name for p in dst.parent.iterdir()) == [dst.name]
    assert dst.stat().st_ino == other.stat().st_ino  # linked, not written again (one file system here)


def test_listing_only_what_changed_after_a_time_locally_and_on_s3(bucket, tmp_path):
    """``newer_than`` (a scheduled run's watermark) leaves out what was modified at or
    before it; the rest comes in the order ``os.walk`` gave: a folder's files by name,
    then its subfolders. A link to a folder is not followed."""
    import os

    root = tmp_path / "raw"
    times = {"a/2.gz": 100, "a/1.gz": 300, "a/b/3.gz": 200, "z.gz": 250, "a/b/c/4.gz": 400}
    for name, mtime in times.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        os.utime(path, (mtime, mtime))
    (root / "link").symlink_to(root / "a")
    listed = [(o.key[len(str(root)) + 1:], o.size, o.mtime) for o in storage.list_objects(str(root))]
    assert [k for k, _, _ in listed] == ["z.gz", "a/1.gz", "a/2.gz", "a/b/3.gz", "a/b/c/4.gz"]
    assert all(size == len(k) and mtime == times[k] for k, size, mtime in listed)
    newer = [o.uri for o in storage.list_objects("file://" + str(root), newer_than=200)]
    assert newer == [f"file://{root}/{k}" for k in ("z.gz", "a/1.gz", "a/b/c/4.gz")]
    assert [o.key for o in storage.list_objects(str(root / "z.gz"), newer_than=250)] == []
    # S3: LastModified is the put's time
    s3_objects = list(storage.list_objects("s3://lake/t/"))
    assert len(s3_objects) == 6
    cut = min(o.mtime for o in s3_objects) - 1
    assert [o.uri for o in storage.list_objects("s3://lake/t/", newer_than=cut)] == [o.uri for o in s3_objects]
    assert list(storage.list_objects("s3://lake/t/", newer_than=max(o.mtime for o in s3_objects))) == []

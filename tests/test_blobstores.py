"""One behaviour suite for both blob stores: a local folder, and S3 on a real SeaweedFS server."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path

import pytest

from semcache.blobstores import (
    InvalidBlobKey,
    LocalBlobStore,
    S3BlobStore,
    blob_key,
    content_type_for_key,
    validate_key,
)
from semcache.errors import BlobNotFound, BlobStoreError
from semcache.interfaces import BlobStore
from s3server import S3Server, new_bucket_name, s3_server  # noqa: F401  (s3_server: fixture)

KEY_SHAPE = re.compile(r"[0-9a-f]{64}\.png")
OUTAGE_LIMIT_SECONDS = 5.0


def png_bytes(label: str = "") -> bytes:
    """Bytes that look like a PNG and differ from call to call."""
    return b"\x89PNG\r\n\x1a\n" + label.encode() + os.urandom(48)


@pytest.fixture
def server(s3_server: S3Server) -> S3Server:
    """The shared server, running (a fault test that failed half-way may have left it down)."""
    s3_server.resume()
    return s3_server.start()


def make_s3_store(server: S3Server, bucket: str | None = None, **options: object) -> S3BlobStore:
    return S3BlobStore(
        bucket or server.create_bucket(),
        prefix="pixels",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return make_s3_store(request.getfixturevalue("server"))


def stored_objects(store: BlobStore) -> list[str]:
    """Every object/file the store holds, by its name in the backend."""
    if isinstance(store, LocalBlobStore):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3BlobStore)
    listing = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def overwrite_raw(store: BlobStore, key: str, data: bytes) -> None:
    """Replace a blob's bytes behind the store's back."""
    if isinstance(store, LocalBlobStore):
        store.path_for(key).write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        store.client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=data)


# --- the shared suite --------------------------------------------------------------------------


def test_satisfies_the_protocol(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_get_round_trip(store: BlobStore) -> None:
    data = png_bytes()
    key = store.put(data)
    assert KEY_SHAPE.fullmatch(key)
    assert store.get(key) == data
    assert store.exists(key)


def test_key_is_the_content_hash(store: BlobStore) -> None:
    data = png_bytes()
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest() + ".png" == blob_key(data)


def test_same_content_same_key_and_one_object(store: BlobStore) -> None:
    data = png_bytes()
    first = store.put(data)
    second = store.put(bytes(data))
    assert first == second
    assert len(stored_objects(store)) == 1


def test_different_content_different_key(store: BlobStore) -> None:
    a, b = png_bytes("a"), png_bytes("b")
    key_a, key_b = store.put(a), store.put(b)
    assert key_a != key_b
    assert store.get(key_a) == a and store.get(key_b) == b
    assert len(stored_objects(store)) == 2


def test_content_type_picks_the_extension(store: BlobStore) -> None:
    data = png_bytes()
    key = store.put(data, content_type="image/jpeg")
    assert key.endswith(".jpg")
    assert content_type_for_key(key) == "image/jpeg"
    assert store.get(key) == data


def test_unsupported_content_type_is_refused(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="content type"):
        store.put(b"<html>", content_type="text/html")
    assert stored_objects(store) == []


def test_get_missing_key_raises_blob_not_found(store: BlobStore) -> None:
    missing = blob_key(b"never stored")
    with pytest.raises(BlobNotFound):
        store.get(missing)
    assert not store.exists(missing)


def test_delete_is_idempotent(store: BlobStore) -> None:
    key = store.put(png_bytes())
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get(key)
    store.delete(key)
    store.delete(blob_key(b"never stored"))
    assert stored_objects(store) == []


def test_delete_keeps_other_blobs(store: BlobStore) -> None:
    keep, drop = store.put(png_bytes("keep")), store.put(png_bytes("drop"))
    store.delete(drop)
    assert store.exists(keep) and not store.exists(drop)


def test_keys_never_come_from_user_text(store: BlobStore) -> None:
    for text in ["../../etc/passwd", "a dog/../cat", "C:\\Windows", "x" * 500, "🐕"]:
        data = text.encode()
        key = store.put(data)
        assert KEY_SHAPE.fullmatch(key), key
        assert text not in key
    names = stored_objects(store)
    assert all(".." not in name for name in names)


HOSTILE_KEYS = [
    "../etc/passwd",
    "/etc/passwd",
    "..",
    "",
    "a" * 64,
    "A" * 64 + ".png",
    "g" * 64 + ".png",
    "a" * 63 + ".png",
    "a" * 64 + ".png/../../x",
    "a" * 64 + ".exe",
    "a" * 64 + ".png\n",
    "a" * 64 + ".png\x00",
    " " + "a" * 64 + ".png",
    "ab/cd/" + "a" * 64 + ".png",
    "../" + "a" * 64 + ".png",
]


def test_hostile_keys_are_rejected(store: BlobStore) -> None:
    store.put(png_bytes())
    for key in HOSTILE_KEYS:
        for operation in (store.get, store.delete, store.exists):
            with pytest.raises(InvalidBlobKey):
                operation(key)
    assert len(stored_objects(store)) == 1


def test_invalid_key_error_is_a_blob_store_error_and_a_value_error() -> None:
    with pytest.raises(BlobStoreError):
        validate_key("../etc/passwd")
    with pytest.raises(ValueError):
        validate_key("../etc/passwd")
    with pytest.raises(InvalidBlobKey):
        validate_key(None)  # type: ignore[arg-type]


def test_corrupt_blob_is_reported_not_served(store: BlobStore) -> None:
    key = store.put(png_bytes())
    overwrite_raw(store, key, b"tampered")
    with pytest.raises(BlobStoreError, match="corrupt") as caught:
        store.get(key)
    assert not isinstance(caught.value, BlobNotFound)


def test_concurrent_puts_of_the_same_image(store: BlobStore) -> None:
    data = png_bytes()
    keys: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            keys.append(store.put(data))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(keys)) == 1
    assert store.get(keys[0]) == data
    assert len(stored_objects(store)) == 1


def test_keys_are_the_same_in_both_stores(tmp_path: Path, server: S3Server) -> None:
    data = png_bytes()
    local = LocalBlobStore(tmp_path)
    s3 = make_s3_store(server)
    assert local.put(data) == s3.put(data)


# --- local folder ------------------------------------------------------------------------------


def test_local_name_and_layout(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "nested" / ".." / "blobs")
    assert store.root == (tmp_path / "blobs").resolve()
    assert store.name == f"local folder {store.root}"
    key = store.put(png_bytes())
    assert stored_objects(store) == [f"{key[0:2]}/{key[2:4]}/{key}"]


def test_local_cannot_read_outside_its_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"private")
    store = LocalBlobStore(tmp_path / "blobs")
    for key in ["../secret.png", str(secret), "../../" + secret.name]:
        with pytest.raises(InvalidBlobKey):
            store.get(key)
    assert secret.read_bytes() == b"private"


def test_local_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    keys = {store.put(png_bytes(str(i))) for i in range(20)}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(keys)


def test_local_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    data = png_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("semcache.blobstores.os.replace", failing_replace)
    with pytest.raises(BlobStoreError, match="No space left"):
        store.put(data)
    monkeypatch.undo()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not store.exists(blob_key(data))
    assert store.get(store.put(data)) == data


def test_local_put_replaces_a_damaged_copy(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = png_bytes()
    key = store.put(data)
    store.path_for(key).write_bytes(b"half a file")
    assert store.put(data) == key
    assert store.get(key) == data


def test_local_files_are_readable_by_others(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = store.put(png_bytes())
    assert store.path_for(key).stat().st_mode & 0o777 == 0o644


def test_local_unwritable_folder_is_a_blob_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(BlobStoreError, match="Cannot create the blob folder") as caught:
        LocalBlobStore(blocker / "blobs")
    assert str(tmp_path) not in str(caught.value)


def test_local_errors_name_no_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store's errors can reach any user (a picture that could not be had): they say what
    failed, and the server's log says where."""
    root = tmp_path / "private-server-folder"
    store = LocalBlobStore(root)
    data = png_bytes("blocked")
    key = blob_key(data)
    (root / key[0:2]).write_bytes(b"a file where a folder goes")
    stored = store.put(png_bytes("readable"))
    store.path_for(stored).unlink()
    store.path_for(stored).mkdir()  # a folder where the file goes
    with caplog.at_level("ERROR", logger="semcache.blobstores"):
        for action, why in ((lambda: store.put(data), "Could not save a file in the blob store"),
                            (lambda: store.get(stored), "Could not read a file from the blob store"),
                            (lambda: store.delete(stored), "Could not delete a file from the blob store")):
            with pytest.raises(BlobStoreError, match=why) as caught:
                action()
            assert str(root) not in str(caught.value) and "private-server-folder" not in str(caught.value)
    assert all(str(root) in record.getMessage() for record in caplog.records)
    assert len(caplog.records) == 3


# --- S3 ----------------------------------------------------------------------------------------


def test_s3_name_prefix_and_content_type(server: S3Server) -> None:
    store = make_s3_store(server)
    assert store.name == f"s3://{store.bucket}/pixels/"
    png_key = store.put(png_bytes())
    jpg_key = store.put(png_bytes(), content_type="image/jpeg")
    assert stored_objects(store) == sorted([f"pixels/{png_key}", f"pixels/{jpg_key}"])
    head = store.client.head_object(Bucket=store.bucket, Key=f"pixels/{png_key}")
    assert head["ContentType"] == "image/png"
    assert store.stored_content_type(jpg_key) == "image/jpeg"
    assert store.stored_content_type(blob_key(b"missing")) is None


def test_s3_without_prefix(server: S3Server) -> None:
    store = S3BlobStore(
        server.create_bucket(),
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
    )
    key = store.put(png_bytes())
    assert store.name == f"s3://{store.bucket}/"
    assert stored_objects(store) == [key]


def test_s3_missing_bucket_and_ensure_bucket(server: S3Server) -> None:
    store = make_s3_store(server, bucket=new_bucket_name())
    with pytest.raises(BlobStoreError, match="does not exist") as caught:
        store.put(png_bytes())
    assert not isinstance(caught.value, BlobNotFound)
    assert store.bucket not in str(caught.value) and server.endpoint_url not in str(caught.value)
    store.ensure_bucket()
    store.ensure_bucket()
    key = store.put(png_bytes())
    assert store.exists(key)


def test_s3_wrong_secret_is_refused_without_leaking_it(server: S3Server) -> None:
    bucket = server.create_bucket()
    wrong_secret = "wrong-secret-0123456789abcdef"
    store = S3BlobStore(
        bucket,
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        access_key_id=server.access_key,
        secret_access_key=wrong_secret,
        max_attempts=1,
    )
    with pytest.raises(BlobStoreError, match="refused") as caught:
        store.put(png_bytes())
    assert wrong_secret not in str(caught.value)


def test_s3_outage_fails_fast_and_recovers_after_restart(server: S3Server) -> None:
    store = make_s3_store(server)  # default timeouts and retries
    data = png_bytes()
    key = store.put(data)
    server.stop()
    try:
        operations = {
            "get": lambda: store.get(key),
            "put": lambda: store.put(png_bytes()),
            "exists": lambda: store.exists(key),
            "delete": lambda: store.delete(key),
        }
        for name, operation in operations.items():
            began = time.monotonic()
            with pytest.raises(BlobStoreError) as caught:
                operation()
            elapsed = time.monotonic() - began
            assert elapsed < OUTAGE_LIMIT_SECONDS, f"{name} took {elapsed:.1f} s"
            assert not isinstance(caught.value, BlobNotFound)
            message = str(caught.value)
            assert "running" in message and server.secret_key not in message
            assert server.endpoint_url not in message and store.bucket not in message
    finally:
        server.start()
    assert store.get(key) == data
    assert store.get(store.put(data)) == data


def test_s3_hung_server_times_out(server: S3Server) -> None:
    store = make_s3_store(server, connect_timeout=1, read_timeout=1, max_attempts=1)
    key = store.put(png_bytes())
    server.pause()
    try:
        began = time.monotonic()
        with pytest.raises(BlobStoreError, match="did not answer in time"):
            store.get(key)
        assert time.monotonic() - began < OUTAGE_LIMIT_SECONDS
    finally:
        server.resume()
    assert store.exists(key)


def test_s3_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        S3BlobStore("bucket", max_attempts=0)
    with pytest.raises(ValueError):
        S3BlobStore("bucket", read_timeout=0)
    with pytest.raises(ValueError):
        S3BlobStore("")


def test_s3_server_restarts_on_the_same_endpoint(server: S3Server) -> None:
    endpoint = server.endpoint_url
    server.stop()
    assert not server.running
    server.start()
    assert server.endpoint_url == endpoint
    assert server.startup_seconds is not None and server.startup_seconds < 15

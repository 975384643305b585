"""Blob stores: where the cache keeps image bytes.

Both stores are content-addressed and name blobs the same way (see ``blob_key``): the key is the
SHA-256 of the bytes in lowercase hex plus an extension from the content type, e.g.
``"3a7bd3e2…c9f1.png"``. A key never contains user text, so the same image always gets the same
key, keys can be copied between stores, and a key can be checked before it is turned into a path.

    LocalBlobStore(Path("/var/cache/pixels"))   # files under ab/cd/<key>
    S3BlobStore("pixels", prefix="cache/", endpoint_url="http://127.0.0.1:8333",
                access_key_id="...", secret_access_key="...")   # objects cache/<key>
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from semcache.errors import BlobNotFound, BlobStoreError

__all__ = [
    "InvalidBlobKey",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_key",
    "content_type_for_key",
    "validate_key",
]

_EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "application/octet-stream": "bin",
}
_CONTENT_TYPES: dict[str, str] = {extension: ctype for ctype, extension in _EXTENSIONS.items()}
_KEY = re.compile(r"[0-9a-f]{64}\.(?:%s)" % "|".join(sorted(_CONTENT_TYPES)))

log = logging.getLogger(__name__)


class InvalidBlobKey(BlobStoreError, ValueError):
    """A string that is not a key this module made (``<64 hex>.<ext>``); nothing was read."""


def _extension(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        return _EXTENSIONS[media_type]
    except KeyError:
        raise ValueError(
            f"Unsupported content type {content_type!r} for a blob; "
            f"use one of {', '.join(sorted(_EXTENSIONS))}."
        ) from None


def blob_key(data: bytes, content_type: str = "image/png") -> str:
    """The key every store uses for ``data``: sha256 hex of the bytes + ``.`` + extension."""
    return f"{hashlib.sha256(data).hexdigest()}.{_extension(content_type)}"


def validate_key(key: str) -> str:
    """Return ``key`` if it has the exact shape ``blob_key`` makes; raise InvalidBlobKey otherwise."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        shown = key[:80] if isinstance(key, str) else type(key).__name__
        raise InvalidBlobKey(
            f"{shown!r} is not a blob key; keys are 64 lowercase hex characters and an "
            "extension, as returned by put()."
        )
    return key


def content_type_for_key(key: str) -> str:
    """The content type a key was stored with, read from its extension."""
    return _CONTENT_TYPES[validate_key(key).rsplit(".", 1)[1]]


def _check_content(key: str, data: bytes, where: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != key[:64]:
        log.error("Blob %s in %s is corrupt: its bytes no longer match its hash.", key, where)
        raise BlobStoreError(
            f"Blob {key} in the store is corrupt: its bytes no longer match its hash. "
            "Delete it so the image is made again."
        )
    return data


class LocalBlobStore:
    """Blobs as files in a folder: ``<root>/ab/cd/<key>`` where ``abcd…`` starts the hash.

    Writes go to a temporary file in the target folder, are fsynced, and are renamed into place,
    so a reader (or a crash) sees the whole file or none.

    Error messages say what failed and what to check, never the folder's path (they may reach
    any user of an app); the log has the path and the operating system's error.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.name = f"local folder {self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            log.error("Cannot create the blob folder %s: %s", self.root, error)
            raise BlobStoreError(
                f"Cannot create the blob folder ({_reason(error)}). Choose a folder this program may "
                "write to; the server's log names the one it tried."
            ) from error

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (which is validated first, so it stays under ``root``)."""
        validate_key(key)
        return self.root / key[0:2] / key[2:4] / key

    def put(self, data: bytes, content_type: str = "image/png") -> str:
        key = blob_key(data, content_type)
        path = self.path_for(key)
        if _same_bytes(path, data):
            return key  # a damaged copy (same name, other bytes) is replaced below
        temp_name: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fchmod(temp.fileno(), 0o644)
                os.fsync(temp.fileno())
            os.replace(temp_name, path)
            temp_name = None
            _fsync_dir(path.parent)
        except OSError as error:
            log.error("Could not write blob %s to %s: %s", key, self.name, error)
            raise BlobStoreError(
                f"Could not save a file in the blob store ({_reason(error)}). Check that its folder "
                "exists, is writable and has free space."
            ) from error
        finally:
            if temp_name is not None:
                try:
                    os.unlink(temp_name)
                except OSError:
                    pass
        return key

    def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"No blob {key} in the store.") from None
        except OSError as error:
            log.error("Could not read blob %s from %s: %s", key, self.name, error)
            raise BlobStoreError(
                f"Could not read a file from the blob store ({_reason(error)})."
            ) from error
        return _check_content(key, data, self.name)

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.error("Could not delete blob %s from %s: %s", key, self.name, error)
            raise BlobStoreError(
                f"Could not delete a file from the blob store ({_reason(error)})."
            ) from error

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()


def _reason(error: OSError) -> str:
    """The operating system's reason ("Permission denied"), without the path str(error) has."""
    return error.strerror or type(error).__name__


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
)


class S3BlobStore:
    """Blobs as objects ``<prefix><key>`` in an S3 bucket (AWS or any S3-compatible server).

    Settings are plain arguments. Credentials left as None fall back to boto3's own lookup
    (its environment variables, config files, instance roles); pass them explicitly to avoid
    that. With ``endpoint_url`` set (SeaweedFS, MinIO, Garage, ...) requests use path-style
    addressing (``http://host/bucket/key``), which those servers need.

    Every request is bounded: ``connect_timeout`` and ``read_timeout`` (seconds) per attempt and
    ``max_attempts`` attempts in all (including the first), so an outage surfaces as a
    BlobStoreError instead of hanging the caller: at once when the server refuses connections,
    after at most about ``max_attempts * (connect_timeout + read_timeout)`` seconds (15 s with
    the defaults) when it accepts them and never answers.

    ``put`` sends the SHA-256 of the body (which is also the key), so the server rejects an
    upload that arrived damaged; ``get`` checks the bytes against the key as well.

    Error messages say what failed and what to check, never the bucket, prefix or endpoint (they
    may reach any user of an app); the log has those.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"{bucket!r} is not an S3 bucket name.")
        if max_attempts < 1:
            raise ValueError("max_attempts counts the first request too, so it must be at least 1.")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive numbers of seconds.")
        prefix = prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.name = f"s3://{bucket}/{prefix}"
        if client is None:
            client = _make_client(
                endpoint_url=endpoint_url,
                region_name=region_name,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            )
        self.client = client

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3BlobStore({self.bucket!r}, prefix={self.prefix!r}{where})"

    def object_key(self, key: str) -> str:
        """The S3 object key for a blob key (validated first)."""
        return self.prefix + validate_key(key)

    def put(self, data: bytes, content_type: str = "image/png") -> str:
        key = blob_key(data, content_type)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        with self._errors("write", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                Body=data,
                ContentType=content_type,
                ChecksumSHA256=checksum,
            )
        return key

    def get(self, key: str) -> bytes:
        object_key = self.object_key(key)
        with self._errors("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            with response["Body"] as body:
                data = body.read()
        return _check_content(key, data, self.name)

    def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)

    def exists(self, key: str) -> bool:
        object_key = self.object_key(key)
        try:
            with self._errors("check", key):
                self.client.head_object(Bucket=self.bucket, Key=object_key)
        except BlobNotFound:
            return False
        return True

    def stored_content_type(self, key: str) -> str | None:
        """The Content-Type stored with the object (None when missing)."""
        object_key = self.object_key(key)
        try:
            with self._errors("check", key):
                response = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except BlobNotFound:
            return None
        return response.get("ContentType")

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (useful with a local S3-compatible server)."""
        from botocore.exceptions import ClientError

        try:
            with self._errors("check", None):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except BlobNotFound:
            pass
        region = self.client.meta.region_name
        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1" and self.endpoint_url is None:
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with self._errors("create", None):
                self.client.create_bucket(**arguments)
        except BlobStoreError as error:
            cause = error.__cause__
            if isinstance(cause, ClientError) and _error_code(cause) in {
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            }:
                return
            raise

    @contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        """Turn botocore exceptions into BlobNotFound / BlobStoreError with a sentence for people.

        Messages name neither the bucket, its prefix, the endpoint nor the credentials; the log
        has all but the credentials.
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        what = "a stored file" if key else "the bucket"
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            code = _error_code(error) if isinstance(error, ClientError) else ""
            level = logging.INFO if code in _NOT_FOUND_CODES else logging.ERROR
            log.log(level, "S3: could not %s %s in %s%s: %s", action, key or "the bucket", self.name, at, error)
            if isinstance(error, ClientError):
                if code in _NOT_FOUND_CODES:
                    raise BlobNotFound("No such file in the bucket." if key else "The S3 bucket does not exist.") from error
                if code == "NoSuchBucket":
                    raise BlobStoreError(
                        "The S3 bucket for stored files does not exist; create it (S3BlobStore.ensure_bucket) "
                        "or fix the bucket name. The server's log names it."
                    ) from error
                if code in _AUTH_CODES:
                    raise BlobStoreError(
                        f"The S3 server refused to {action} {what} ({code}); check the access key, secret "
                        "and bucket permissions."
                    ) from error
                raise BlobStoreError(f"The S3 server failed to {action} {what} ({code}).") from error
            if isinstance(error, NoCredentialsError):
                raise BlobStoreError(
                    "There are no S3 credentials for the bucket; pass access_key_id and secret_access_key."
                ) from error
            if isinstance(error, (ConnectTimeoutError, ReadTimeoutError)):
                raise BlobStoreError(
                    f"The S3 server did not answer in time when asked to {action} {what}; check that it "
                    "is running and reachable."
                ) from error
            if isinstance(error, EndpointConnectionError):
                raise BlobStoreError(
                    f"Could not connect to the S3 server to {action} {what}; check that it is running "
                    "and that its endpoint URL is right."
                ) from error
            raise BlobStoreError(
                f"Could not {action} {what} ({type(error).__name__}); check that the S3 server is "
                "running and reachable."
            ) from error


def _error_code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _make_client(
    *,
    endpoint_url: str | None,
    region_name: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        signature_version="s3v4",
    )
    # A private session: the client shares no state (or credentials) with boto3's default one.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name or ("us-east-1" if endpoint_url else None),
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )

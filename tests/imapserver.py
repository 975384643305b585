"""A real IMAP server (Dovecot) on loopback, for tests.

    with ImapServer() as server:
        server.append("INBOX", raw_bytes)
        source = ImapSource(server.host, server.port, user=server.user, password=server.password,
                            security="plain")
        ...

Dovecot (Debian: ``dovecot-imapd``, which pulls in ``dovecot-core``; ``openssl`` makes the
certificate for the implicit-TLS port) runs in the foreground, ``dovecot -F -c <config>``, with a
minimal configuration of its own: plain IMAP and IMAPS on free ports of 127.0.0.1, users from a
passwd-file, mail in ``maildir:<workdir>/mail/%u/Maildir``, logs to a file. Nothing of the
system's ``/etc/dovecot`` is read, and everything it writes stays in one temporary folder that
``close()`` removes.

As root, Dovecot's helper processes run as the package's ``dovecot``/``dovenull`` users and the
mail as ``nobody`` (Dovecot never serves mail as root); otherwise everything runs as the current
user. Without the binary the fixture fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Iterator

import pytest

from conftest import require

USERS = ("alice", "bob")


class ImapServerUnavailable(RuntimeError):
    """The test IMAP server cannot run here (binary missing) or did not come up."""


def find_dovecot() -> Path | None:
    for candidate in (shutil.which("dovecot"), "/usr/sbin/dovecot"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


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


def quote_mailbox(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapServer:
    """One Dovecot master process serving IMAP on ``127.0.0.1:<port>`` (plain, with STARTTLS
    offered when a certificate could be made) and, then, IMAPS on ``127.0.0.1:<tls_port>``.

    Users are ``alice`` (``.user``/``.password``) and ``bob`` (``.passwords["bob"]``), each with
    a fresh random password.
    """

    host = "127.0.0.1"

    def __init__(self, *, dovecot: Path | None = None, startup_timeout: float = 15.0) -> None:
        found = dovecot or find_dovecot()
        if found is None:
            raise ImapServerUnavailable(
                "The Dovecot IMAP server was not found on PATH or in /usr/sbin; install it with "
                "`apt-get install dovecot-imapd`."
            )
        self.dovecot = found
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
        # As root the helper users (dovecot, dovenull, nobody) must reach into the folder.
        os.chmod(self.workdir, 0o755)
        self.config_path = self.workdir / "dovecot.conf"
        self.log_path = self.workdir / "dovecot.log"
        self.users_path = self.workdir / "users"
        self.mail_root = self.workdir / "mail"
        self.cert_path = self.workdir / "cert.pem"
        self.key_path = self.workdir / "key.pem"
        self.port, self.tls_port = free_ports(2)
        self.passwords = {name: secrets.token_urlsafe(12) for name in USERS}
        self.user = USERS[0]
        self.password = self.passwords[self.user]
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self.tls = self._make_certificate()
            self._write_config()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    # --- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The exact command line used to launch the server."""
        return [str(self.dovecot), "-F", "-c", str(self.config_path)]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ImapServer:
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the master stops its children on SIGTERM
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only its children
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ImapServer:
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

    def maildir(self, user: str | None = None) -> Path:
        """Where ``user``'s Maildir lives (owned by the mail user; prefer ``append()``)."""
        return self.mail_root / (user or self.user) / "Maildir"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        if not self.tls:
            raise ImapServerUnavailable("No TLS: openssl was not found to make a certificate.")
        return ssl.create_default_context(cafile=str(self.cert_path))

    def client(self, user: str | None = None) -> imaplib.IMAP4:
        """A logged-in plain-IMAP client (the caller logs out)."""
        name = user or self.user
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(name, self.passwords[name])
        return client

    def create_folder(self, folder: str, user: str | None = None) -> None:
        client = self.client(user)
        try:
            typ, data = client.create(quote_mailbox(folder))
            if typ != "OK":
                raise ImapServerUnavailable(f"CREATE {folder} failed: {data!r}")
        finally:
            client.logout()

    def delete_folder(self, folder: str, user: str | None = None) -> None:
        client = self.client(user)
        try:
            typ, data = client.delete(quote_mailbox(folder))
            if typ != "OK":
                raise ImapServerUnavailable(f"DELETE {folder} failed: {data!r}")
        finally:
            client.logout()

    def append(self, folder: str, raw: bytes, *, flags: str = "", user: str | None = None) -> None:
        """Store one message in ``folder`` (created when missing) through IMAP APPEND."""
        client = self.client(user)
        try:
            if folder.upper() != "INBOX":
                client.create(quote_mailbox(folder))  # NO when it exists: fine
            typ, data = client.append(quote_mailbox(folder), f"({flags})" if flags else None,
                                      None, raw)
            if typ != "OK":
                raise ImapServerUnavailable(f"APPEND to {folder} failed: {data!r}")
        finally:
            client.logout()

    def flags(self, folder: str, user: str | None = None) -> dict[int, str]:
        """UID → the FLAGS list as the server reports it, for every message in ``folder``."""
        client = self.client(user)
        try:
            client.select(quote_mailbox(folder), readonly=True)
            typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
            found: dict[int, str] = {}
            for line in data:
                if not isinstance(line, bytes):
                    continue
                text = line.decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                found[uid] = text.split("FLAGS (", 1)[1].split(")", 1)[0]
            return found
        finally:
            client.logout()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- internals -------------------------------------------------------------------------

    def _make_certificate(self) -> bool:
        openssl = shutil.which("openssl")
        if openssl is None:
            return False
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.key_path), "-out", str(self.cert_path)],
            check=True, capture_output=True, timeout=30,
        )
        return True

    def _accounts(self) -> tuple[str, str, str, int, int]:
        """(internal user, its group, login user, mail uid, mail gid) for our privileges."""
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(me.pw_gid).gr_name
            return me.pw_name, group, me.pw_name, me.pw_uid, me.pw_gid
        for name in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                raise ImapServerUnavailable(
                    f"The system user {name!r} that Dovecot's package creates is missing; "
                    "reinstall dovecot-core."
                ) from None
        nobody = pwd.getpwnam("nobody")
        return "dovecot", "dovecot", "dovenull", nobody.pw_uid, nobody.pw_gid

    def _write_config(self) -> None:
        internal, internal_group, login, uid, gid = self._accounts()
        self.mail_root.mkdir()
        os.chown(self.mail_root, uid, gid)
        lines = [
            f"{name}:{{PLAIN}}{password}:{uid}:{gid}::{self.mail_root / name}::"
            for name, password in self.passwords.items()
        ]
        self.users_path.write_text("\n".join(lines) + "\n")
        # Test passwords only; the auth process runs as the internal user and must read them.
        self.users_path.chmod(0o644)
        ssl_lines = (
            [
                "ssl = yes",
                f"ssl_cert = <{self.cert_path}",
                f"ssl_key = <{self.key_path}",
            ]
            if self.tls
            else ["ssl = no"]
        )
        if self.tls:
            self.key_path.chmod(0o600)  # read by the master (root or us) only
        imaps_listener = (
            [f"  inet_listener imaps {{\n    address = {self.host}\n    port = {self.tls_port}\n"
             "    ssl = yes\n  }"]
            if self.tls
            else []
        )
        run = self.workdir / "run"
        state = self.workdir / "state"
        state.mkdir()
        config = "\n".join([
            f"base_dir = {run}",
            f"state_dir = {state}",
            f"instance_name = dovecot-test-{self.port}",
            "protocols = imap",
            f"listen = {self.host}",
            f"log_path = {self.log_path}",
            f"default_internal_user = {internal}",
            f"default_internal_group = {internal_group}",
            f"default_login_user = {login}",
            "first_valid_uid = 1",
            "last_valid_uid = 0",
            "first_valid_gid = 0",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",  # a wrong-password test must not wait 2 s
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.users_path}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {self.users_path}",
            "}",
            f"mail_location = maildir:{self.mail_root}/%u/Maildir",
            "mail_fsync = never",
            *ssl_lines,
            "service imap-login {",
            "  inet_listener imap {",
            f"    address = {self.host}",
            f"    port = {self.port}",
            "  }",
            *imaps_listener,
            "  chroot =",
            "}",
            "service anvil {",
            "  chroot =",
            # without this socket the auth process skips its per-IP delay after failed logins
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
            "",
        ])
        self.config_path.write_text(config)

    def _wait_until_ready(self, deadline: float) -> None:
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ImapServerUnavailable(
                    f"dovecot exited with code {self._process.returncode} while starting; "
                    f"last log lines:\n{self.log_tail()}"
                )
            try:
                client = self.client()
                client.logout()
                return
            except (OSError, imaplib.IMAP4.error) as error:
                last_error = str(error)
            time.sleep(0.05)
        raise ImapServerUnavailable(
            f"dovecot did not accept a login on {self.host}:{self.port} within "
            f"{self.startup_timeout:.0f} s ({last_error}); last log lines:\n{self.log_tail()}"
        )


@pytest.fixture(scope="session")
def imap_server() -> Iterator[ImapServer]:
    """One running ImapServer for the test session, removed at the end."""
    try:
        server = ImapServer()
    except ImapServerUnavailable as error:
        require(False, str(error))
        raise
    try:
        server.start()
        yield server
    finally:
        server.close()

"""The app's imports, one call per way in: browser uploads, a path on the server, an IMAP account,
and the demo mailbox. Each answers with an `ImportSummary` or raises a `MailError` whose message
is a sentence to show as it is:

    MailError
    ├── ImportRefused    the source as a whole: not mail, a zip that escapes or expands too far,
    │                    an upload over the limit, a failed IMAP login (nothing was imported)
    ├── SourceInterrupted  an IMAP connection broke part-way
    └── ImportStopped    the database or the embedding model went away part-way

After `SourceInterrupted` or `ImportStopped`, what was stored before stays: importing again adds
only the rest (messages are keyed by owner and Message-ID).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from mail.sources import ImapSource, Limits, Source, open_source, open_upload
from mail.sources.addresses import _is_loopback
from mail.store import BatchCallback, ProgressCallback, imap_account, imap_state, import_messages
from mail.types import ImportRefused, ImportSummary, MailError, StorageError

__all__ = [
    "ImportStopped", "Security", "check_imap", "import_imap", "import_path", "import_uploads",
    "load_demo", "parse_folders", "reporting_outages",
]

Security = Literal["ssl", "starttls", "plain"]
_DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "plain": 143}


class ImportStopped(MailError):
    """The import stopped for a reason outside the mailbox: the database or the embedding model
    could not be reached."""


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


@contextmanager
def reporting_outages() -> Iterator[None]:
    """Turn a database or embedding-model outage into `ImportStopped` with what to do. Any other
    database error (a `StorageError` that is no outage included) goes on as the database raised
    it: nobody can act on it but the operator, who finds it in the log."""
    from semcache.errors import EmbeddingError

    try:
        yield
    except (OperationalError, InterfaceError) as error:
        raise _database_unreachable(error) from None
    except StorageError as error:
        if error.unavailable:
            raise _database_unreachable(error.__cause__) from None
        raise error.__cause__ from None  # a statement refused is no outage: unexpected, as it was raised
    except EmbeddingError as error:
        raise ImportStopped(
            f"The embedding model failed ({_first_line(error)}). Try again in a moment; messages "
            "stored before it failed are kept, and importing again adds only the rest."
        ) from None


def _database_unreachable(error: BaseException) -> ImportStopped:
    return ImportStopped(
        f"The database could not be reached ({_first_line(error)}). Check that PostgreSQL is "
        "running and try again; messages stored before it went away are kept, and importing "
        "again adds only the rest.")


def _byte_limits(max_message_mb: float | None, max_upload_mb: float | None) -> dict[str, int | None]:
    return {"max_message_bytes": int(max_message_mb * 2**20) if max_message_mb else None,
            "max_upload_bytes": int(max_upload_mb * 2**20) if max_upload_mb else None}


class _Chain:
    """Several opened sources read one after the other, as one source for `import_messages`."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = sources

    @property
    def total(self) -> int | None:
        totals = [source.total for source in self.sources]
        return None if any(t is None for t in totals) else sum(totals)  # type: ignore[arg-type]

    def __iter__(self):
        for source in self.sources:
            yield from source


def import_uploads(engine: Engine, owner: str, files: Sequence[tuple[str, bytes]], *, embedder=None,
                   progress: ProgressCallback | None = None, max_message_mb: float | None = None,
                   max_upload_mb: float | None = None, skip: int = 0,
                   on_batch: BatchCallback | None = None) -> ImportSummary:
    """Import browser uploads, given as (file name, bytes): mbox files, .eml files, .zip files.
    Every file is checked before anything is imported, so one refused file (not mail, over the
    size limit, an unsafe zip) imports nothing. ``skip`` and ``on_batch``: see `import_messages`."""
    if not files:
        raise ImportRefused("Choose at least one file to import.")
    limits = _byte_limits(max_message_mb, max_upload_mb)
    with ExitStack() as stack:
        sources = [stack.enter_context(open_upload(name, data, **limits)) for name, data in files]
        with reporting_outages():
            return import_messages(engine, owner, _Chain(sources), embedder=embedder, progress=progress,
                                   skip=skip, on_batch=on_batch)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def import_path(engine: Engine, owner: str, path: str | os.PathLike[str], *, embedder=None,
                progress: ProgressCallback | None = None, max_message_mb: float | None = None,
                skip: int = 0, on_batch: BatchCallback | None = None) -> ImportSummary:
    """Import an mbox file, a Maildir, a folder of .eml files (or one) or a .zip of them, at a
    path on the machine the app runs on (``~`` is expanded)."""
    text = os.fspath(path).strip()
    if not text:
        raise ImportRefused("Give the path of an mbox file, a Maildir, a folder of .eml files or a .zip.")
    if _URL.match(text):
        raise ImportRefused(f"{text.split('://')[0]}:// is an address, not a path on the server; "
                            "import an IMAP account with its host, user name and password.")
    target = Path(text).expanduser()
    with open_source(target, **_byte_limits(max_message_mb, None)) as source, reporting_outages():
        return import_messages(engine, owner, source, embedder=embedder, progress=progress,
                               skip=skip, on_batch=on_batch)


def parse_folders(text: str | Sequence[str] | None) -> list[str]:
    """"INBOX, Archive/2024" → ["INBOX", "Archive/2024"]; nothing given → ["INBOX"]."""
    parts = text.split(",") if isinstance(text, str) else list(text or [])
    folders = list(dict.fromkeys(part.strip() for part in parts if part and part.strip()))
    return folders or ["INBOX"]


def check_imap(*, host: str, user: str, password: str, port: int | None = None,
               security: Security = "ssl") -> tuple[str, str, int]:
    """What can be refused about an IMAP account without connecting: (host, user, port) with
    the usual port filled in, or `ImportRefused` with what to fix."""
    host, user = (host or "").strip(), (user or "").strip()
    if not host:
        raise ImportRefused("Give the IMAP server's host name, e.g. imap.example.com.")
    if not user or not password:
        raise ImportRefused(f"Give the user name and password for {host}.")
    if security not in _DEFAULT_PORTS:
        raise ImportRefused("Choose SSL/TLS, STARTTLS or plain (localhost only) for the connection.")
    port = int(port) if port else _DEFAULT_PORTS[security]
    if not 0 < port < 65536:
        raise ImportRefused(f"{port} is not a port number; IMAP servers use 993 (SSL/TLS) or 143.")
    if security == "plain" and not _is_loopback(host):
        raise ImportRefused(
            f"Refusing to send the password for {user} unencrypted to {host}; choose SSL/TLS or "
            "STARTTLS (plain is for an IMAP server on this machine only).")
    return host, user, port


def import_imap(engine: Engine, owner: str, *, host: str, user: str, password: str,
                port: int | None = None, security: Security = "ssl",
                folders: str | Sequence[str] | None = "INBOX", embedder=None,
                progress: ProgressCallback | None = None, max_message_mb: float | None = None,
                ssl_context=None, timeout: float = 30.0, on_batch: BatchCallback | None = None,
                allow_private_hosts: bool = False) -> ImportSummary:
    """Import IMAP folders (read-only; nothing is marked read), continuing from where the
    previous import of the same account stopped. "plain" is refused for hosts other than
    localhost; a host on this machine or a private network needs ``allow_private_hosts``
    (checked when connecting, see `mail.sources.resolve_imap_host`). The password is used for
    the login only and appears in no error."""
    host, user, port = check_imap(host=host, user=user, password=password, port=port, security=security)
    scheme = "imaps" if security == "ssl" else "imap"
    account = imap_account(f"{scheme}://{host}:{port}/", user)
    with reporting_outages():
        state = imap_state(engine, owner, account)
    limits = Limits(max_message_bytes=int(max_message_mb * 2**20)) if max_message_mb else None
    with ImapSource(host, port, user=user, password=password, security=security,
                    folders=parse_folders(folders), state=state, ssl_context=ssl_context,
                    timeout=timeout, limits=limits, allow_private_hosts=allow_private_hosts) as source, \
            reporting_outages():
        return import_messages(engine, owner, source, embedder=embedder, progress=progress, account=account,
                               on_batch=on_batch)


DEMO_MESSAGES = 300


def load_demo(engine: Engine, owner: str, data_dir: str | os.PathLike[str], *, embedder=None,
              progress: ProgressCallback | None = None, skip: int = 0,
              on_batch: BatchCallback | None = None) -> ImportSummary:
    """Write the made-up demo mailbox into ``data_dir`` (once) and import it as a path is
    (`import_path`). Loading it again adds nothing: the messages are the same."""
    try:
        path = _demo_mailbox(Path(data_dir).absolute())
        return import_path(engine, owner, path, embedder=embedder, progress=progress, skip=skip,
                           on_batch=on_batch)
    except OSError as error:
        raise ImportRefused(f"The demo mailbox cannot be written to {data_dir} "
                            f"({error.strerror or error}); check DATA_DIR.") from None


def _demo_mailbox(data_dir: Path, count: int = DEMO_MESSAGES) -> Path:
    """``data_dir``/demo.mbox, written first if it is not there (whole or not at all)."""
    from mail.demo import write_demo_mbox

    path = data_dir / "demo.mbox"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        write_demo_mbox(partial, count=count)
        os.replace(partial, path)  # a reader at the same time sees no half-written mailbox
    return path

"""An IMAP account's folders, read without changing them, over a connection to checked addresses."""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mail.sources.addresses import _Address, _is_loopback, _said, resolve_imap_host
from mail.sources.base import (
    ImapRefused,
    Limits,
    MiB,
    Skipped,
    Source,
    SourceInterrupted,
    SourceItem,
    _too_large,
)
from mail.types import ImportRefused, RawMessage

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501, 5.1.3): "Entwürfe" → "Entw&APw-rfe"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _quote_mailbox(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: Sequence[int]) -> str:
    """"1:3,7,9:10" for [1, 2, 3, 7, 9, 10] (sorted input)."""
    ranges: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        ranges.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    ranges.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(ranges)


def _server_text(data: Iterable[object]) -> str:
    """What the server said, for an error's ``detail`` only (never its message)."""
    texts = [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
             for item in data if item is not None]
    return (" ".join(texts).strip() or "no reason given")[:300]


def _open_socket(addresses: Sequence[_Address], timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers."""
    last: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as error:
            sock.close()
            last = error
    assert last is not None
    raise last


class _PinnedIMAP4(imaplib.IMAP4):
    """imaplib's client, connected to addresses checked beforehand rather than to the name."""

    def __init__(self, host: str, port: int, addresses: Sequence[_Address], timeout: float) -> None:
        self._addresses = addresses
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return _open_socket(self._addresses, timeout)


class _PinnedIMAP4_SSL(imaplib.IMAP4_SSL):
    """The same with TLS from the start; the certificate is checked against the host name."""

    def __init__(self, host: str, port: int, addresses: Sequence[_Address], ssl_context: ssl.SSLContext,
                 timeout: float) -> None:
        self._addresses = addresses
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self.ssl_context.wrap_socket(_open_socket(self._addresses, timeout),
                                            server_hostname=self.host)


@dataclass
class _FolderPlan:
    folder: str
    uidvalidity: int
    uids: list[int] = field(default_factory=list)


class ImapSource(Source):
    """One IMAP account's folders, read without changing them.

    Connects and logs in when constructed (so a wrong password or host is an `ImportRefused`
    straight away), then, per folder: EXAMINE (read-only), ``UID SEARCH UID n:*`` for the UIDs
    above the previous import's last one, ``UID FETCH (RFC822.SIZE)`` to skip oversized
    messages unread, and ``UID FETCH (BODY.PEEK[])`` in batches, so nothing is marked \\Seen.

    ``security``: "ssl" (implicit TLS, imaps, port 993), "starttls" (port 143, upgraded before
    login) or "plain" (unencrypted; refused for hosts other than loopback unless
    ``allow_plaintext``). ``ssl_context`` defaults to the system's trusted certificates.

    The host is resolved once and every address checked (`resolve_imap_host`): loopback,
    private, link-local and carrier-grade NAT addresses only with ``allow_private_hosts``,
    cloud metadata, multicast and reserved ones never. The connection goes to a checked
    address, not to the name resolved again; TLS still verifies the certificate against the
    name. Errors are `ImapRefused` / `SourceInterrupted` whose message repeats nothing the
    server sent (its words are in their ``detail``).

    Incremental imports: pass the ``state`` saved from last time (folder → (uidvalidity,
    last_uid)); only newer UIDs are fetched. A folder whose UIDVALIDITY changed since is
    fetched again in full and listed in ``uidvalidity_changed``. Each yielded item carries
    folder, uid and uidvalidity; ``new_state()`` is the state to save once everything yielded
    so far is stored.

    The password is used for the login and not kept: not on the object, not in imaplib's
    command log, not in any error text.
    """

    kind = "imap"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        user: str,
        password: str,
        security: Literal["ssl", "starttls", "plain"] = "ssl",
        folders: Sequence[str] = ("INBOX",),
        state: Mapping[str, tuple[int, int]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        allow_plaintext: bool = False,
        allow_private_hosts: bool = False,
        batch_size: int = 100,
        batch_bytes: int = 32 * MiB,
        limits: Limits | None = None,
    ) -> None:
        if security not in ("ssl", "starttls", "plain"):
            raise ValueError(f"security must be 'ssl', 'starttls' or 'plain', not {security!r}.")
        if not folders:
            raise ValueError("Give at least one IMAP folder to import.")
        if batch_size < 1 or batch_bytes < 1:
            raise ValueError("batch_size and batch_bytes must be at least 1.")
        self.host = host
        self.port = port or (993 if security == "ssl" else 143)
        self.user = user
        self.security = security
        self.folders = list(dict.fromkeys(folders))
        self.timeout = timeout
        self.allow_private_hosts = allow_private_hosts
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.limits = limits or Limits()
        scheme = "imaps" if security == "ssl" else "imap"
        self.name = f"{scheme}://{user}@{host}:{self.port}" + (
            "?starttls=1" if security == "starttls" else "")
        self.uidvalidity_changed: list[str] = []
        """Folders whose UIDVALIDITY differs from ``state``: everything there is fetched again."""
        self._previous = dict(state or {})
        self._state: dict[str, tuple[int, int]] = {}
        self._conn: imaplib.IMAP4 | None = None
        self._plans: list[_FolderPlan] = []

        if security == "plain" and not allow_plaintext and not _is_loopback(host):
            raise ImportRefused(
                f"Refusing to send the password for {user} unencrypted to {host}; use imaps:// "
                "(port 993) or imap:// with ?starttls=1."
            )
        self._conn = self._connect(ssl_context)
        try:
            self._login(password)
            del password
            for folder in self.folders:
                self._plans.append(self._plan(folder))
        except BaseException:
            self.close()
            raise

    # -- connection

    def _connect(self, context: ssl.SSLContext | None) -> imaplib.IMAP4:
        where = f"{self.host}:{self.port}"
        unreachable = (f"Could not reach an IMAP server at {where}; check the host, the port and "
                       "the security setting (SSL/TLS, usually port 993, or STARTTLS, port 143).")
        addresses = resolve_imap_host(self.host, self.port, allow_private_hosts=self.allow_private_hosts)
        name = self.host.strip().removeprefix("[").removesuffix("]")
        if self.security != "plain" and context is None:
            context = ssl.create_default_context()
        try:
            if self.security == "ssl":
                assert context is not None
                return _PinnedIMAP4_SSL(name, self.port, addresses, context, self.timeout)
            conn = _PinnedIMAP4(name, self.port, addresses, self.timeout)
        except ssl.SSLCertVerificationError as error:
            raise ImapRefused(
                f"The IMAP server {where} presented a certificate that is not trusted; check the "
                "host name, or give the server's certificate authority.",
                f"The IMAP server {where} presented a certificate that is not trusted "
                f"({error.verify_message})."
            ) from None
        except ssl.SSLError as error:
            raise ImapRefused(unreachable, f"TLS with the IMAP server {where} failed "
                                           f"({error.reason or _said(error)}).") from None
        except (OSError, imaplib.IMAP4.error) as error:
            raise ImapRefused(unreachable, f"Could not connect to the IMAP server {where} "
                                           f"({_said(error)}).") from None
        if self.security == "starttls":
            try:
                conn.starttls(context)
            except ssl.SSLCertVerificationError as error:
                self._drop(conn)
                raise ImapRefused(
                    f"The IMAP server {where} presented a certificate that is not trusted; check "
                    "the host name, or give the server's certificate authority.",
                    f"The IMAP server {where} presented a certificate that is not trusted "
                    f"({error.verify_message})."
                ) from None
            except (OSError, imaplib.IMAP4.error) as error:
                self._drop(conn)
                raise ImapRefused(
                    f"The IMAP server {where} did not start TLS; use SSL/TLS (imaps://) if it "
                    "expects TLS from the start.",
                    f"The IMAP server {where} did not start TLS ({_said(error)})."
                ) from None
        return conn

    @staticmethod
    def _drop(conn: imaplib.IMAP4) -> None:
        try:
            conn.shutdown()
        except OSError:
            pass

    def _login(self, password: str) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if (self.user + password).isascii() or "AUTH=PLAIN" not in conn.capabilities:
                conn.login(self.user, password)
            else:  # LOGIN cannot carry non-ASCII; SASL PLAIN is UTF-8
                credentials = f"\0{self.user}\0{password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: credentials)
        except (imaplib.IMAP4.error, UnicodeError) as error:
            reason = str(error)
            if reason.startswith(("b'", 'b"')):  # imaplib passes the server's reply as bytes
                reason = reason[2:-1]
            reason = reason.replace(password, "***") if password else reason
            if isinstance(error, UnicodeError):
                reason = "the user name or password has characters this server cannot accept"
            advice = ("check the user name and password (some providers, like Gmail, want an app "
                      "password).")
            raise ImapRefused(
                f"The IMAP server {self.host} refused the login for {self.user!r}; {advice}",
                f"The IMAP server {self.host} refused the login for {self.user!r} ({reason}); {advice}"
            ) from None
        except OSError as error:
            raise ImapRefused(
                f"The IMAP server {self.host} dropped the connection during login; try again later.",
                f"The IMAP server {self.host} dropped the connection during login ({_said(error)})."
            ) from None
        finally:
            # imaplib keeps the last lines it sent, LOGIN "password" included, for debugging.
            log = getattr(conn, "_cmd_log", None)
            if isinstance(log, dict):
                log.clear()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            self._drop(conn)

    # -- planning

    def _folder_names(self) -> list[str]:
        assert self._conn is not None
        try:
            typ, data = self._conn.list()
        except (OSError, imaplib.IMAP4.error):
            return []
        names = []
        for line in data if typ == "OK" else []:
            if isinstance(line, bytes):
                match = re.search(rb'\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)$', line)
                if match:
                    names.append(match.group(1).decode("utf-8", "replace").strip('"'))
        return names

    def _examine(self, folder: str) -> int:
        """Select ``folder`` read-only; its UIDVALIDITY."""
        conn = self._conn
        assert conn is not None
        typ, data = conn.select(_quote_mailbox(folder), readonly=True)
        if typ != "OK":
            known = self._folder_names()
            listing = f" Folders there: {', '.join(known[:30])}." if known else ""
            missing = (f"The IMAP account {self.user}@{self.host} has no folder {folder!r} that "
                       "can be opened")
            raise ImapRefused(f"{missing}.{listing}", f"{missing} ({_server_text(data)}).{listing}")
        _, values = conn.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise ImportRefused(
                f"The IMAP server {self.host} did not report a UIDVALIDITY for {folder!r}, so it "
                "cannot be imported reliably."
            )
        return int(values[0])

    def _search(self, since: int) -> list[int]:
        assert self._conn is not None
        typ, data = self._conn.uid("SEARCH", f"UID {since + 1}:*")
        if typ != "OK":
            raise SourceInterrupted(f"The IMAP server {self.host} refused to list the messages; "
                                    "try again later.",
                                    f"The IMAP server {self.host} refused UID SEARCH "
                                    f"({_server_text(data)}).")
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in {int(x) for x in (data[0] or b"").split()} if uid > since)

    def _plan(self, folder: str) -> _FolderPlan:
        try:
            uidvalidity = self._examine(folder)
            since = 0
            previous = self._previous.get(folder)
            if previous is not None:
                if int(previous[0]) == uidvalidity:
                    since = int(previous[1])
                else:
                    self.uidvalidity_changed.append(folder)
            self._state[folder] = (uidvalidity, since)
            return _FolderPlan(folder, uidvalidity, self._search(since))
        except (OSError, imaplib.IMAP4.error) as error:
            raise ImapRefused(
                f"The IMAP server {self.host} failed while listing {folder!r}; try again later.",
                f"The IMAP server {self.host} failed while listing {folder!r} ({_said(error)})."
            ) from None

    @property
    def total(self) -> int:
        return sum(len(plan.uids) for plan in self._plans)

    def new_state(self) -> dict[str, tuple[int, int]]:
        """folder → (uidvalidity, highest UID yielded so far): save it once those are stored."""
        return dict(self._state)

    # -- fetching

    def _fetch(self, command: str, uids: Sequence[int]) -> list[object]:
        assert self._conn is not None
        typ, data = self._conn.uid("FETCH", _uid_set(uids), command)
        if typ != "OK":
            raise imaplib.IMAP4.error(_server_text(data))
        return list(data)

    def _sizes(self, uids: Sequence[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for line in self._fetch("(UID RFC822.SIZE)", uids):
            meta = line[0] if isinstance(line, tuple) else line
            if isinstance(meta, bytes):
                uid, size = _FETCH_UID.search(meta), _FETCH_SIZE.search(meta)
                if uid and size:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    def _bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """UID → raw message; the UID may come before or after the literal in the answer."""
        wanted = set(uids)
        bodies: dict[int, bytes] = {}
        waiting: bytes | None = None
        for part in self._fetch("(UID BODY.PEEK[])", uids):
            if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
                match = _FETCH_UID.search(part[0])
                if match:
                    uid = int(match.group(1))
                    if uid in wanted:
                        bodies[uid] = part[1]
                    waiting = None
                else:
                    waiting = part[1]
            elif isinstance(part, bytes) and waiting is not None:
                match = _FETCH_UID.search(part)
                if match and int(match.group(1)) in wanted:
                    bodies[int(match.group(1))] = waiting
                waiting = None
        return bodies

    def _batches(self, uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
        batch: list[int] = []
        weight = 0
        for uid in uids:
            size = sizes[uid] if sizes[uid] <= self.limits.max_message_bytes else 0
            if batch and (len(batch) >= self.batch_size or weight + size > self.batch_bytes):
                yield batch
                batch, weight = [], 0
            batch.append(uid)
            weight += size
        if batch:
            yield batch

    def __iter__(self) -> Iterator[SourceItem]:
        if self._conn is None:
            raise SourceInterrupted(f"The IMAP connection to {self.host} is closed; open the "
                                    "source again.")
        limit = self.limits.max_message_bytes
        for plan in self._plans:
            if not plan.uids:
                continue
            folder, uidvalidity = plan.folder, plan.uidvalidity
            try:
                if self._examine(folder) != uidvalidity:
                    raise SourceInterrupted(
                        f"The folder {folder!r} on {self.host} was recreated during the import; "
                        "run the import again."
                    )
                step = self.batch_size * 10
                for start in range(0, len(plan.uids), step):
                    sizes = self._sizes(plan.uids[start:start + step])
                    present = [uid for uid in plan.uids[start:start + step] if uid in sizes]
                    for batch in self._batches(present, sizes):
                        small = [uid for uid in batch if sizes[uid] <= limit]
                        bodies = self._bodies(small) if small else {}
                        for uid in batch:
                            source_id = f"{folder} UID {uid}"
                            item: SourceItem
                            if sizes[uid] > limit:
                                item = Skipped(source_id, _too_large(sizes[uid], self.limits),
                                               folder, uid, uidvalidity)
                            elif uid in bodies:
                                item = RawMessage(raw=bodies.pop(uid), source_id=source_id,
                                                  folder=folder, uid=uid, uidvalidity=uidvalidity)
                            else:
                                continue  # expunged between the two fetches
                            self._state[folder] = (uidvalidity, uid)
                            yield item
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort) as error:
                again = "run the import again: it continues after the last message stored."
                raise SourceInterrupted(
                    f"The IMAP connection to {self.host} broke while reading {folder!r}; {again}",
                    f"The IMAP connection to {self.host} broke while reading {folder!r} "
                    f"({_said(error)}); {again}"
                ) from None


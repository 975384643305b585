"""Opening a source: a path or an IMAP URL (`open_source`, `open_imap_url`), or uploaded bytes
(`open_upload`), the kind told apart by content."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from mail.sources.base import (
    _PEEK,
    NOT_MAIL,
    Limits,
    Source,
    _is_mbox,
    _is_zip,
    _looks_like_message,
    _size,
)
from mail.sources.files import EmlFileSource, EmlFolderSource, MaildirSource, _is_maildir
from mail.sources.imap import ImapSource
from mail.sources.mbox import MboxSource
from mail.sources.zips import ZipSource
from mail.types import ImportRefused


def _limits(**values: int | float | None) -> Limits:
    return Limits(**{name: value for name, value in values.items() if value is not None})


def open_imap_url(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    folders: Sequence[str] | None = None,
    state: Mapping[str, tuple[int, int]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    allow_plaintext: bool = False,
    allow_private_hosts: bool = False,
    limits: Limits | None = None,
) -> ImapSource:
    """``imaps://user:password@host:port/Folder`` (implicit TLS) or ``imap://...?starttls=1``;
    a plain ``imap://`` URL without STARTTLS is for loopback only unless ``allow_plaintext``,
    and a server on this machine or a private network needs ``allow_private_hosts``.
    User and password given as arguments win over those in the URL; ``folders`` wins over the
    URL's path; the default folder is INBOX."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = f"{scheme}://{parts.hostname or ''}"
    if scheme not in ("imap", "imaps") or not parts.hostname:
        raise ImportRefused(f"{shown} is not an IMAP address; write imaps://user@host/INBOX.")
    query = {key.lower(): values[-1] for key, values in parse_qs(parts.query).items()}
    starttls = query.pop("starttls", "0").lower() in ("1", "true", "yes", "on")
    if query:
        raise ImportRefused(f"The IMAP address {shown} has options this app does not know "
                            f"({', '.join(sorted(query))}); only ?starttls=1 is understood.")
    if scheme == "imaps" and starttls:
        raise ImportRefused("Use either imaps:// (TLS from the start) or imap:// with "
                            "?starttls=1, not both.")
    try:
        port = parts.port
    except ValueError:
        raise ImportRefused(f"The port in the IMAP address {shown} is not a number.") from None
    user = user or (unquote(parts.username) if parts.username else None)
    password = password if password is not None else (
        unquote(parts.password) if parts.password is not None else None)
    if not user or password is None:
        raise ImportRefused(f"Give a user name and password for {shown}.")
    path = unquote(parts.path.lstrip("/"))
    chosen = list(folders) if folders else [path] if path else ["INBOX"]
    security: Literal["ssl", "starttls", "plain"] = (
        "ssl" if scheme == "imaps" else "starttls" if starttls else "plain")
    return ImapSource(parts.hostname, port, user=user, password=password, security=security,
                      folders=chosen, state=state, ssl_context=ssl_context, timeout=timeout,
                      allow_plaintext=allow_plaintext, allow_private_hosts=allow_private_hosts,
                      limits=limits)


def open_source(
    path_or_url: str | os.PathLike[str],
    *,
    user: str | None = None,
    password: str | None = None,
    folders: Sequence[str] | None = None,
    state: Mapping[str, tuple[int, int]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    allow_plaintext: bool = False,
    allow_private_hosts: bool = False,
    max_message_bytes: int | None = None,
    max_upload_bytes: int | None = None,
    max_zip_entries: int | None = None,
    max_zip_total_bytes: int | None = None,
    max_compression_ratio: float | None = None,
) -> Source:
    """The source at a path on this machine, or an ``imap://`` / ``imaps://`` URL (see
    `open_imap_url`; the IMAP-only arguments are ignored for paths). Unset limits keep the
    `Limits` defaults. Raises `ImportRefused` when it is none of the kinds this module reads."""
    limits = _limits(max_message_bytes=max_message_bytes, max_upload_bytes=max_upload_bytes,
                     max_zip_entries=max_zip_entries, max_zip_total_bytes=max_zip_total_bytes,
                     max_compression_ratio=max_compression_ratio)
    text = os.fspath(path_or_url)
    if isinstance(text, str) and re.match(r"(?i)imaps?://", text):
        return open_imap_url(text, user=user, password=password, folders=folders, state=state,
                             ssl_context=ssl_context, timeout=timeout,
                             allow_plaintext=allow_plaintext,
                             allow_private_hosts=allow_private_hosts, limits=limits)
    if isinstance(text, str) and re.match(r"(?i)[a-z][a-z0-9+.-]*://", text):
        raise ImportRefused(f"{text.split('://')[0]}:// addresses cannot be imported; give an "
                            "imaps:// address or a path on the server.")
    path = Path(text)
    if path.is_dir():
        if _is_maildir(path):
            return MaildirSource(path, limits=limits)
        source = EmlFolderSource(path, limits=limits)
        if source.total == 0:
            raise ImportRefused(f"The folder {path} {NOT_MAIL} (no .eml files, no cur/ and new/).")
        return source
    try:
        with open(path, "rb") as f:
            head = f.read(_PEEK)
    except FileNotFoundError:
        raise ImportRefused(f"{path} does not exist; check the path.") from None
    except OSError as error:
        raise ImportRefused(f"{path} cannot be read ({error.strerror or error}).") from None
    if not head:
        raise ImportRefused(f"{path} is empty.")
    if _is_zip(head):
        return ZipSource(path, limits=limits)
    if _is_mbox(head):
        return MboxSource(path, limits=limits)
    if path.suffix.lower() == ".eml" or _looks_like_message(head):
        return EmlFileSource(path, limits=limits)
    raise ImportRefused(f"{path} {NOT_MAIL}.")


def open_upload(
    name: str,
    data: bytes,
    *,
    max_message_bytes: int | None = None,
    max_upload_bytes: int | None = None,
    max_zip_entries: int | None = None,
    max_zip_total_bytes: int | None = None,
    max_compression_ratio: float | None = None,
) -> Source:
    """A source for bytes uploaded through the browser: an mbox file, one .eml or a .zip, told
    apart by content (the name is only used in messages and source_ids)."""
    limits = _limits(max_message_bytes=max_message_bytes, max_upload_bytes=max_upload_bytes,
                     max_zip_entries=max_zip_entries, max_zip_total_bytes=max_zip_total_bytes,
                     max_compression_ratio=max_compression_ratio)
    label = os.path.basename(name.replace("\\", "/")) or "upload"
    if len(data) > limits.max_upload_bytes:
        raise ImportRefused(
            f"The upload {label} is {_size(len(data))}, over the {_size(limits.max_upload_bytes)} "
            "limit for uploads; split it, or put it on the server and import it from its path."
        )
    if not data.strip():
        raise ImportRefused(f"The upload {label} is empty.")
    head = data[:_PEEK]
    if _is_zip(head):
        return ZipSource(data=data, name=label, limits=limits)
    if _is_mbox(head):
        return MboxSource(data=data, name=label, limits=limits)
    if label.lower().endswith(".eml") or _looks_like_message(head):
        return EmlFileSource(data=data, name=label, limits=limits)
    raise ImportRefused(f"The upload {label} {NOT_MAIL}.")

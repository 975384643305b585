"""A search's messages as an mbox file, rebuilt from what is stored of each message: the
From/To/Cc/Subject/Date/Message-ID/In-Reply-To headers and the body as text/plain. The raw
bytes are not kept, so attachments are not in the copy: their names (type, size) are listed
in an ``X-Attachments-Not-Included`` header.

The file is mboxrd: a body line starting with "From " (after any number of ">") gets one more
">", so no reader takes it for the start of a message. Every header value is cleaned of control
characters (CR and LF included) before it is written, so nothing stored can add a header.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from datetime import datetime, timezone
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

import numpy as np
from sqlalchemy import Engine

from mail import sql
from mail.query import Query, parse_query
from mail.search import search

__all__ = ["mbox_of_search", "mbox_of_messages", "MAX_EXPORT_MESSAGES", "MAX_EXPORT_BYTES"]

MAX_EXPORT_MESSAGES = 10_000
"""At most this many messages of a search are exported (the first ones in the search's order)."""
MAX_EXPORT_BYTES = 256 * 2**20
"""An export stops before the message that would take it past this size."""
_CHUNK = 500
_MAX_HEADER_CHARS = 2000
_FROM_LINE = re.compile(rb"^(?=>*From )", re.MULTILINE)
_ID_SAFE = re.compile(r"[^\x21-\x7e]")
_ADDR_UNSAFE = re.compile(r"[\s<>,;\"()\[\]\\]")


def mbox_of_search(engine: Engine, owner: str, query: str | Query, *, embedder=None,
                   query_vector: np.ndarray | None = None) -> bytes:
    """Every message of ``owner``'s search for ``query`` (as the Search page finds them, up to
    `MAX_EXPORT_MESSAGES`), oldest first, as mbox bytes."""
    if not isinstance(query, Query):
        query = parse_query(query)
    results = search(engine, owner, query, embedder=embedder, limit=MAX_EXPORT_MESSAGES, offset=0,
                     query_vector=query_vector)
    return mbox_of_messages(engine, owner, [hit.id for hit in results.hits])


def mbox_of_messages(engine: Engine, owner: str, message_pks: list[int]) -> bytes:
    """``owner``'s messages of ``message_pks`` (others are skipped), oldest first, as mbox bytes."""
    rows = []
    with sql.storage_errors("exporting your mail"), engine.connect() as conn:
        for start in range(0, min(len(message_pks), MAX_EXPORT_MESSAGES), _CHUNK):
            rows += sql.export_rows(conn, owner, message_pks[start:min(start + _CHUNK, MAX_EXPORT_MESSAGES)])
    rows.sort(key=lambda row: (row.sent_at or datetime.min.replace(tzinfo=timezone.utc), row.id))
    out = bytearray()
    for row in rows:
        message = _message(row)
        if out and len(out) + len(message) > MAX_EXPORT_BYTES:
            break
        out += message
    return bytes(out)


def _clean(value: object, limit: int = _MAX_HEADER_CHARS) -> str:
    """One line of text: control, format and separator characters (CR, LF, NUL, U+2028...)
    become spaces, runs of spaces one."""
    text = str(value or "")[:limit * 2]
    if not text.isprintable():  # plain text, the common case, is not looked at character by character
        text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(text.split())[:limit]


def _header(name: str, value: str) -> bytes:
    value = _clean(value)
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}\n".encode("ascii")
    if not value.isascii() and len(value) < 30:  # one encoded word: what Header would make, made faster
        return f"{name}: =?utf-8?b?{base64.b64encode(value.encode()).decode()}?=\n".encode("ascii")
    if value.isascii():
        encoded = Header(value, "us-ascii", header_name=name).encode(linesep="\n")
    else:
        encoded = Header(value, "utf-8", header_name=name).encode(linesep="\n")
    return f"{name}: {encoded}\n".encode("ascii")


def _address(text: str) -> str:
    name, addr = parseaddr(_clean(text, 500))
    addr = _ADDR_UNSAFE.sub("", addr)
    if not addr:
        return ""
    name = _clean(name, 200)
    try:
        return formataddr((name, addr), charset="utf-8") if name else addr
    except (UnicodeError, ValueError):
        return addr


def _address_header(name: str, values: list[str]) -> bytes:
    addresses = [a for a in (_address(v) for v in values[:500]) if a]
    if not addresses:
        return b""
    # formataddr has already encoded any non-ASCII name; fold between addresses.
    return (f"{name}: " + ",\n ".join(addresses) + "\n").encode("utf-8", "replace")


def _message_id(value: str | None) -> str:
    value = _ID_SAFE.sub("", _clean(value, 500)).strip("<>")
    return f"<{value}>" if value else ""


def _message(row) -> bytes:
    sender_addr = _ADDR_UNSAFE.sub("", _clean(row.from_addr, 500))
    sent = row.sent_at
    envelope_date = (sent or datetime(1970, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc)
    envelope_sender = sender_addr if sender_addr.isascii() else ""
    lines = [f"From {envelope_sender or 'MAILER-DAEMON'} {envelope_date.strftime('%a %b %e %H:%M:%S %Y')}\n".encode()]
    sender = formataddr((_clean(row.from_name, 200), sender_addr), charset="utf-8") if sender_addr else ""
    if sender:
        lines.append(f"From: {sender}\n".encode("utf-8", "replace"))
    elif row.from_name:
        lines.append(_header("From", row.from_name))
    lines.append(_address_header("To", list(row.to_addrs or [])))
    lines.append(_address_header("Cc", list(row.cc_addrs or [])))
    lines.append(_header("Subject", row.subject or ""))
    if sent is not None:
        lines.append(f"Date: {format_datetime(sent)}\n".encode())
    for name, value in (("Message-ID", row.message_id), ("In-Reply-To", row.in_reply_to)):
        if _message_id(value):
            lines.append(f"{name}: {_message_id(value)}\n".encode())
    attachments = [a for a in (row.attachments or []) if isinstance(a, dict)]
    if attachments:
        listed = "; ".join(
            f"{_clean(a.get('filename'), 200) or 'unnamed'} ({_clean(a.get('content_type'), 100) or 'unknown type'}, "
            f"{int(a.get('size') or 0):,} bytes)" for a in attachments[:100])
        lines.append(_header("X-Attachments-Not-Included", listed))
    if row.folder:
        lines.append(_header("X-Folder", row.folder))
    lines.append(b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
    body = str(row.body or "").replace("\r\n", "\n").replace("\r", "\n")
    body = body.encode("utf-8", "replace")
    body = _FROM_LINE.sub(b">", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    lines.append(body + b"\n")
    return b"".join(lines)

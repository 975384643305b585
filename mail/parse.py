"""Turn one raw message into a `ParsedMessage`, surviving the mail that real mailboxes hold.

`parse_message` reads with the standard library's `email` package under `email.policy.default`
and repairs what it can instead of failing: headers the policy cannot parse fall back to their raw
text, undeclared or wrong charsets are guessed (declared, then UTF-8, then detected, then
cp1252), broken dates become None, HTML becomes plain text. Each repair adds a short warning to
`ParsedMessage.warnings` ("charset: ...", "date: ...", ...; the word before the colon is its
kind). Only input that is not an email at all raises `ParseError`.

Decisions worth knowing:

- A date earlier than 1970, exactly the Unix epoch (an unset clock) or more than two days after
  the moment of parsing is treated as unreadable: None plus a warning. A message cannot have been
  written after it was imported, and a broken clock's date would otherwise sort first forever.
- A Message-ID (or a reference) must look like ``left@right`` with no whitespace; anything else
  ("<>", "<unknown>", bare words) is None / dropped, so that garbage never threads messages.
- A forwarded message (message/rfc822 part) is part of the body, after a "Forwarded message"
  line with its From/Date/Subject: a forward's substance is what was forwarded. Its own
  attachments are listed; the rfc822 part itself is not an attachment.
- Images and other resources inside multipart/related are the HTML's furniture: neither body nor
  attachments. Every other non-text part, and any part marked ``attachment``, is an attachment.
- `signed` means a PGP signature (PGP/MIME or inline). The signature part of an S/MIME
  multipart/signed is dropped too but does not set `signed`.
- The excerpt trims replies, not forwards: quoted lines, "On ... wrote:" lines and everything
  after "-----Original Message-----" go (unless the subject says it is a forward), as do
  signatures, mobile footers and mailing-list footers; forwarded text stays.
- Hostile input costs time in proportion to its size. Headers are cut before anything reads
  them (Date at 256 characters, Message-IDs at 1,000, any other at 20,000; the standard
  library's parsers, quadratic on hostile headers, see at most 2,000). No pattern rescans the
  rest of the text per match: PGP armour, comments, end tags and footers are found in one pass.
"""

from __future__ import annotations

import binascii
import codecs
import contextvars
import email
import email.utils
import functools
import hashlib
import re
from bisect import bisect_left
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import Message
from html import unescape as _html_unescape
from urllib.parse import unquote_to_bytes

from mail.types import Attachment, ParsedMessage, ParseError

__all__ = ["parse_message", "html_to_text", "make_excerpt", "EXCERPT_CHARS", "ENCRYPTED_NOTE"]

EXCERPT_CHARS = 1000
"""About how many characters of body the excerpt keeps after the subject."""

ENCRYPTED_NOTE = "[This message is encrypted; its text cannot be read without the key.]"

_MAX_DEPTH = 30
_MAX_DETECTIONS = 16
"""How many times one message may ask the charset detector (about a millisecond each): a
message of thousands of raw 8-bit names or parts gets UTF-8 or cp1252 for the rest."""
_detections_left: contextvars.ContextVar[int] = contextvars.ContextVar("detections_left", default=_MAX_DETECTIONS)
_MAX_HEADER_CHARS = 20_000
"""No header is read past this many characters (each one byte of the message)."""
_MAX_PARSED_HEADER_CHARS = 2_000
"""The standard library's structured-header parsers slow down with the square of a hostile
header's length; they see at most this much of one header, and longer subjects and address
lists are read by the lenient decoders here, which are linear."""
_HEADER_CAPS = {"date": 256, "message-id": 1_000, "in-reply-to": 1_000, "content-id": 1_000}
_FUTURE_SLACK = timedelta(days=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"SQLite format 3\x00", "an SQLite database"),
)

# Headers that only mail carries; a text whose header block has none of them is not a message.
_MAIL_HEADERS = frozenset(
    """from to cc bcc subject date message-id sender reply-to received return-path mime-version
    content-type content-transfer-encoding in-reply-to references delivered-to x-mailer
    user-agent newsgroups resent-from resent-to resent-date list-id x-original-to envelope-to
    x-from x-to""".split()
)

_CHARSET_ALIASES = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "windows-1252": "cp1252",
    "cp-1252": "cp1252",
    "x-user-defined": "cp1252",
    "unknown-8bit": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "unicode-1-1-utf-8": "utf-8",
    "utf8": "utf-8",
}
_NOT_TEXT_CODECS = frozenset(
    {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem",
     "charmap", "palmos"}
)

_SURROGATES = re.compile("[\udc80-\udcff]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_EW_GAP = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?)")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r")
_SPACES = re.compile(r"\s+")
_MSGID = re.compile(r"<([^<>]*)>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2028\u2029\u2060-\u2064\ufeff\u034f]")


def parse_message(raw: bytes) -> ParsedMessage:
    """Read one RFC 5322 message. Raises `ParseError` only when the bytes are not an email."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_message takes the message's bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    _refuse_non_mail(raw)
    budget = _detections_left.set(_MAX_DETECTIONS)
    try:
        return _parse(raw)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("The message is nested too deeply to be read; it was skipped.") from None
    except Exception as exc:  # a safety net: one unreadable message must not stop an import
        raise ParseError(
            f"The message could not be read (internal error {type(exc).__name__}: {exc}); "
            "it was skipped, please report it."
        ) from exc
    finally:
        _detections_left.reset(budget)


def _refuse_non_mail(raw: bytes) -> None:
    if not raw.strip():
        raise ParseError("The message is empty: there is nothing to import.")
    for magic, what in _BINARY_MAGIC:
        if raw.startswith(magic):
            raise ParseError(f"This is {what}, not an email message; import .eml, mbox or Maildir files.")
    head = raw[:65536].lstrip(b"\r\n")
    end = re.search(rb"\r?\n\r?\n", head)
    block = head[: end.start()] if end else head
    names = re.findall(rb"^([!-9;-~]+)[ \t]*:", block, flags=re.MULTILINE)
    if not any(n.decode("ascii").lower() in _MAIL_HEADERS or n[:2].lower() == b"x-" for n in names):
        raise ParseError(
            "This is not an email message: it has no mail headers (From, Date, Subject...); "
            "import .eml, mbox or Maildir files."
        )


class _CappedPolicy(policy.EmailPolicy):
    """`policy.default`, with each header cut to `_MAX_PARSED_HEADER_CHARS` before it is parsed,
    and parsed once: the package parses a part's Content-Type anew for every question asked of
    it, and a hostile part asks the same header the same question many times."""

    def header_fetch_parse(self, name, value):  # type: ignore[no-untyped-def]
        if hasattr(value, "name"):
            return value
        value = value.replace("\r", "").replace("\n", "")
        return _parsed_header(self, name, value[:_MAX_PARSED_HEADER_CHARS])


@functools.lru_cache(maxsize=512)
def _parsed_header(capped: policy.EmailPolicy, name: str, value: str):  # type: ignore[no-untyped-def]
    return policy.EmailPolicy.header_fetch_parse(capped, name, value)


_POLICY = _CappedPolicy()


def _parse(raw: bytes) -> ParsedMessage:
    msg = email.message_from_bytes(raw, policy=_POLICY)
    warnings: list[str] = []
    if not msg.keys():
        raise ParseError(
            "This is not an email message: no headers could be read; import .eml, mbox or Maildir files."
        )
    subject = _collapse(_text_header(msg, "subject", warnings))
    from_name, from_addr = _sender(msg, warnings)
    to = _recipients(msg, "to", warnings)
    cc = _recipients(msg, "cc", warnings)
    date = _date(_raw_header(msg, "date"), warnings)

    message_id = _first_id(_raw_header(msg, "message-id"))
    if message_id is None and _raw_header(msg, "message-id").strip():
        warnings.append("message-id: unusable Message-ID ignored")
    in_reply_to = _first_id(_raw_header(msg, "in-reply-to"))
    references = _reference_ids(_raw_header(msg, "references"), in_reply_to, message_id)

    walker = _BodyWalker(warnings)
    segments = walker.walk(msg, 0)
    body, is_html = _join_segments(segments)
    body, inline_signed = _strip_inline_pgp(body, warnings)
    body = _tidy(body)

    return ParsedMessage(
        message_id=message_id,
        content_hash=hashlib.sha256(raw).hexdigest(),
        subject=subject,
        from_name=from_name,
        from_addr=from_addr,
        to=to,
        cc=cc,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        body=body,
        excerpt=make_excerpt(subject, body),
        attachments=walker.attachments,
        is_html=is_html,
        signed=walker.signed or inline_signed,
        size=len(raw),
        warnings=_dedupe(warnings),
    )


# ---------------------------------------------------------------- charsets


def _codec(name: str | None) -> str | None:
    """The Python codec for a declared charset name, or None when it is unknown or not text."""
    if not name:
        return None
    key = name.strip().strip("\"'").strip().lower()
    key = _CHARSET_ALIASES.get(key, key)
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT_CODECS:
        return None
    return info.name


def _guess(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8, else a detector for text that is mostly non-ASCII
    (Cyrillic, CJK...), else cp1252 (what undeclared Western mail nearly always is)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    sample = data[:4096]
    high = len(sample) - len(sample.decode("latin-1").encode("ascii", "ignore"))
    # A detector needs material: on a few bytes it guesses wildly, so short or mostly-ASCII
    # text (a name, a pound sign in a subject) is cp1252.
    if high >= 32 and high > 0.2 * len(sample) and (left := _detections_left.get()) > 0:
        _detections_left.set(left - 1)
        try:
            from charset_normalizer import from_bytes

            best = from_bytes(data[:65536]).best()
            if best is not None and _codec(best.encoding):
                return data.decode(best.encoding, errors="replace")
        except Exception:
            pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_bytes(data: bytes, declared: str | None, warnings: list[str], where: str) -> str:
    """Decode with the declared charset when it fits the bytes; otherwise guess and warn."""
    if not data:
        return ""
    codec = _codec(declared)
    if declared and codec is None:
        warnings.append(f"charset: unknown charset {declared.strip()[:40]!r} in {where}")
    if codec is not None:
        if codec == "cp1252" and not data.isascii():
            # Labelled ASCII/Latin-1 but valid UTF-8: it is UTF-8 (Latin-1 text is almost never valid UTF-8).
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                warnings.append(f"charset: {where} says {declared.strip()[:40]} but is UTF-8")
                return text
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, ValueError, LookupError):
            warnings.append(f"charset: {where} is not valid {declared.strip()[:40]}")
    elif not declared and not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append(f"charset: undeclared 8-bit text in {where}")
    return _guess(data)


def _fix_surrogates(text: str) -> str:
    """Replace raw 8-bit bytes that the parser kept as surrogate escapes by decoded text."""
    if not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub(lambda m: _guess(m.group().encode("utf-8", "surrogateescape")), text)


def _decode_words(value: str) -> str:
    """A lenient RFC 2047 decoder: a broken encoded-word stays as it was written, bad charsets are
    guessed, adjacent words are joined before decoding so split characters survive."""
    value = _EW_GAP.sub(r"\1", value)
    out: list[str] = []
    pos = 0
    pending: bytearray = bytearray()
    pending_cs: str | None = None

    def flush() -> None:
        nonlocal pending, pending_cs
        if pending:
            codec = _codec(pending_cs)
            try:
                out.append(bytes(pending).decode(codec) if codec else _guess(bytes(pending)))
            except (UnicodeDecodeError, LookupError, ValueError):
                out.append(_guess(bytes(pending)))
        pending, pending_cs = bytearray(), None

    for m in _ENCODED_WORD.finditer(value):
        if m.start() > pos:
            flush()
            out.append(_fix_surrogates(value[pos : m.start()]))
        charset, kind, payload = m.group(1).split("*", 1)[0], m.group(2).upper(), m.group(3)
        try:
            if kind == "B":
                data = binascii.a2b_base64(payload + "=" * (-len(payload) % 4))
            else:
                data = binascii.a2b_qp(payload.encode("ascii", "surrogateescape"), header=True)
        except (binascii.Error, ValueError):  # e.g. raw 8-bit bytes inside the word
            flush()
            out.append(_fix_surrogates(m.group()))
            pos = m.end()
            continue
        if pending and pending_cs != charset:
            flush()
        pending_cs = charset
        pending += data
        pos = m.end()
    flush()
    out.append(_fix_surrogates(value[pos:]))
    return "".join(out)


# ---------------------------------------------------------------- headers


def _raw_header(msg: Message, name: str) -> str:
    """The first raw value of a header, cut to its cap and unfolded, with 8-bit bytes as
    surrogate escapes."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            value = value if isinstance(value, str) else str(value)
            return _FOLD.sub("", value[: _HEADER_CAPS.get(name, _MAX_HEADER_CHARS)])
    return ""


def _text_header(msg: Message, name: str, warnings: list[str]) -> str:
    raw = _raw_header(msg, name)
    if not raw:
        return ""
    if len(raw) <= _MAX_PARSED_HEADER_CHARS and not _SURROGATES.search(raw):
        try:
            value = str(msg[name])
        except Exception:
            warnings.append(f"header: {name} could not be parsed, raw value used")
        else:
            if "\ufffd" not in value:
                return value
            repaired = _decode_words(raw)
            if "\ufffd" in repaired:
                return value
            warnings.append(f"charset: {name} had mis-encoded words, decoded leniently")
            return repaired
    else:
        warnings.append(f"header: {name} has raw 8-bit or oversized text")
    return _decode_words(raw)


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", _CONTROL.sub("", text)).strip()


def _address_pairs(msg: Message, name: str, warnings: list[str]) -> list[tuple[str, str]]:
    raw = _raw_header(msg, name)
    if not raw.strip():
        return []
    pairs: list[tuple[str, str]] = []
    parsed = False
    if len(raw) <= _MAX_PARSED_HEADER_CHARS:
        try:
            header = msg[name]
            for address in header.addresses:
                pairs.append((address.display_name or "", address.addr_spec or ""))
            parsed = True
        except Exception:
            warnings.append(f"header: {name} could not be parsed, read leniently")
    if not parsed:
        try:
            pairs = [(n, a) for n, a in email.utils.getaddresses([_decode_words(raw)])]
        except RecursionError:  # thousands of nested comments or groups
            warnings.append(f"header: {name} is nested too deeply to be read")
            return []
    cleaned: list[tuple[str, str]] = []
    for display, addr in pairs:
        display = _collapse(_fix_surrogates(display)).strip("\"' ")
        if "=?" in display:
            display = _collapse(_decode_words(display))
        addr = _collapse(_fix_surrogates(addr)).strip("<> ").lower()
        if display or addr:
            cleaned.append((display, addr))
    return cleaned


def _sender(msg: Message, warnings: list[str]) -> tuple[str, str]:
    for name in ("from", "sender"):
        pairs = _address_pairs(msg, name, warnings)
        if pairs:
            display, addr = pairs[0]
            if not display:
                # "addr (Full Name)": the old comment form carries the name only as a comment.
                try:
                    comment_name, _ = email.utils.parseaddr(_decode_words(_raw_header(msg, name)))
                except RecursionError:
                    comment_name = ""
                if comment_name and "@" not in comment_name:
                    display = _collapse(comment_name)
            if name == "sender":
                warnings.append("header: no From, Sender used")
            return display, addr
    warnings.append("header: no From")
    return "", ""


def _recipients(msg: Message, name: str, warnings: list[str]) -> list[str]:
    out: list[str] = []
    for display, addr in _address_pairs(msg, name, warnings):
        if display and addr and display.lower() != addr:
            out.append(f"{display} <{addr}>")
        else:
            out.append(addr or display)
    return _dedupe(out)


def _clean_id(value: str) -> str | None:
    value = value.strip().strip("<>").strip()
    if not value or len(value) > 500 or _SPACES.search(value) or _CONTROL.search(value):
        return None
    left, at, right = value.rpartition("@")
    if not at or not left or not right or _SURROGATES.search(value):
        return None
    return value


def _ids(raw: str) -> list[str]:
    found = _MSGID.findall(raw) or raw.split()
    return [i for i in (_clean_id(v) for v in found) if i]


def _first_id(raw: str) -> str | None:
    ids = _ids(raw)
    return ids[0] if ids else None


def _reference_ids(raw: str, in_reply_to: str | None, own_id: str | None) -> list[str]:
    ids = _ids(raw)
    if in_reply_to:
        ids.append(in_reply_to)
    return [i for i in _dedupe(ids) if i != own_id]


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------- dates

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "oct": 10, "nov": 11, "dec": 12, "mai": 5, "okt": 10, "dez": 12, "mrz": 3, "mär": 3,
    "janv": 1, "févr": 2, "fev": 2, "avr": 4, "juin": 6, "juil": 7, "aoû": 8, "aou": 8,
    "déc": 12, "ene": 1, "abr": 4, "ago": 8, "dic": 12, "gen": 1, "giu": 6, "lug": 7,
    "set": 9, "ott": 10,
}
_ZONES = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 60, "IST": 60, "CET": 60, "MET": 60,
    "MEZ": 60, "WEST": 60, "CEST": 120, "MEST": 120, "MESZ": 120, "EET": 120, "EEST": 180,
    "MSK": 180, "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600, "JST": 540, "KST": 540,
    "HKT": 480, "SGT": 480, "AEST": 600, "AEDT": 660, "NZST": 720, "NZDT": 780,
}
_D_ISO = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_D_DMY_NAME = re.compile(r"\b(\d{1,2})[\s.\-/]*([^\W\d_]{3,})\.?[\s.\-/,]*(\d{4}|\d{2})\b(?!:)")
_D_MD_NAME = re.compile(r"\b([^\W\d_]{3,})\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b,?(?!:)")
_D_YEAR = re.compile(r"\b(\d{4})\b(?!:)")
_D_NUMERIC = re.compile(r"\b(\d{1,2})([./])(\d{1,2})[./](\d{4}|\d{2})\b")
_T_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?\s*([AaPp]\.?[Mm]\b\.?)?")
_AM_PM = re.compile(r"\d\s*[AaPp]\.?[Mm]\b")
_T_ZONE = re.compile(r"(?:^|\s)([+-])(\d{2}):?(\d{2})\b|\b([A-Z]{1,5})\b")
_ZONE_WORD = re.compile(r"\b([A-Z]{2,5})\s*(\(|$)")


def _date(raw: str, warnings: list[str]) -> datetime | None:
    raw = _collapse(_fix_surrogates(raw))
    if not raw:
        warnings.append("date: no Date header")
        return None
    value: datetime | None = None
    if not _AM_PM.search(raw):  # parsedate ignores AM/PM
        try:
            value = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    if value is None:
        value = _lenient_date(raw)
        if value is not None:
            warnings.append("date: nonstandard Date read leniently")
    if value is None:
        warnings.append("date: unreadable Date")
        return None
    if value.tzinfo is None:
        # No zone, "-0000", or a zone name parsedate does not know (CEST, JST...).
        zone = _trailing_zone(raw)
        minutes = _ZONES.get(zone, 0) if zone else 0
        value = value.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    try:
        value = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        warnings.append("date: Date out of range")
        return None
    if value <= _EPOCH or value > datetime.now(timezone.utc) + _FUTURE_SLACK:
        warnings.append("date: implausible Date ignored")
        return None
    return value


def _trailing_zone(text: str) -> str | None:
    """The first capitalised word of 2 to 5 letters that ends the date, or that only a
    parenthesised comment running to the end follows: "... 10:00 CEST (Central Europe)"."""
    commented = text.endswith(")")
    for m in _ZONE_WORD.finditer(text):
        if not m.group(2) or commented:
            return m.group(1)
    return None


def _without_comments(text: str) -> str:
    """Each "(" up to the next ")" becomes a space; an unclosed "(" stays."""
    out: list[str] = []
    pos = 0
    while (start := text.find("(", pos)) >= 0 and (end := text.find(")", start)) >= 0:
        out += [text[pos:start], " "]
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 70 else 1900
    return year


def _month(name: str) -> int | None:
    name = name.lower()
    return _MONTHS.get(name[:4]) or _MONTHS.get(name[:3])


def _lenient_date(raw: str) -> datetime | None:
    """Dates that `parsedate_to_datetime` refuses: ISO 8601, "22.08.2002 10:13", "August 22, 2002",
    foreign month names, zone names like CEST. Returns None rather than guess a missing part."""
    text = _without_comments(raw)
    ymd: tuple[int, int, int] | None = None
    used: list[tuple[int, int]] = []
    if m := _D_ISO.search(text):
        ymd = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        used.append(m.span())
    if ymd is None and (m := _D_DMY_NAME.search(text)) and (month := _month(m.group(2))):
        ymd = (_year(m.group(3)), month, int(m.group(1)))
        used.append(m.span())
    if ymd is None:
        years = list(_D_YEAR.finditer(text))
        starts = [y.start() for y in years]
        for m in _D_MD_NAME.finditer(text):
            month = _month(m.group(1))
            at = bisect_left(starts, m.end())
            if month and at < len(years):
                year = years[at]
                ymd = (int(year.group(1)), month, int(m.group(2)))
                used += [m.span(), year.span()]
                break
    if ymd is None and (m := _D_NUMERIC.search(text)):
        a, b, year = int(m.group(1)), int(m.group(3)), _year(m.group(4))
        # Dots are European (day.month); slashes are American (month/day) unless impossible.
        day, month = (a, b) if m.group(2) == "." or a > 12 else (b, a)
        ymd = (year, month, day)
        used.append(m.span())
    if ymd is None:
        return None
    for start, end in sorted(used, reverse=True):
        text = text[:start] + " " + text[end:]
    hour = minute = second = 0
    zone_text = text
    if t := _T_TIME.search(text):
        hour, minute, second = int(t.group(1)), int(t.group(2)), int(t.group(3) or 0)
        if t.group(4):
            hour = hour % 12 + (12 if t.group(4)[0] in "pP" else 0)
        zone_text = text[t.end():]
    tz = timezone.utc
    for z in _T_ZONE.finditer(zone_text):
        if z.group(1):
            minutes = int(z.group(2)) * 60 + int(z.group(3))
            if minutes < 24 * 60:
                tz = timezone(timedelta(minutes=minutes if z.group(1) == "+" else -minutes))
                break
        elif z.group(4) in _ZONES:
            tz = timezone(timedelta(minutes=_ZONES[z.group(4)]))
            break
    try:
        return datetime(ymd[0], ymd[1], ymd[2], hour, minute, second, tzinfo=tz)
    except (ValueError, OverflowError):
        return None


# ---------------------------------------------------------------- body


class _Segment:
    __slots__ = ("text", "html")

    def __init__(self, text: str, html: bool) -> None:
        self.text = text
        self.html = html


class _BodyWalker:
    """Collects the readable text of a MIME tree and the attachments it carries."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.attachments: list[Attachment] = []
        self.signed = False
        self._encrypted_noted = False

    def walk(self, part: Message, depth: int) -> list[_Segment]:
        if depth > _MAX_DEPTH:
            self.warnings.append("structure: MIME nesting too deep, inner parts skipped")
            return []
        ctype = _content_type(part)
        maintype, _, subtype = ctype.partition("/")
        if part.is_multipart():
            parts = [p for p in part.get_payload() if isinstance(p, Message)]
            if maintype == "message":  # message/rfc822 and friends parsed as a sub-message
                return self._forwarded(parts[0], depth) if parts else []
            if subtype == "alternative":
                return self._alternative(parts, depth)
            if subtype == "related":
                return self._related(part, parts, depth)
            if subtype == "signed":
                return self._signed(part, parts, depth)
            if subtype == "encrypted":
                return [self._encrypted("PGP/MIME")]
            segments: list[_Segment] = []
            for child in parts:
                segments.extend(self.walk(child, depth + 1))
            return segments
        disposition = _disposition(part)
        if maintype == "multipart":
            self.warnings.append(f"structure: {ctype} without readable parts, read as text")
            return [_Segment(self._text(part, ctype), False)]
        if maintype == "text" and subtype in ("plain", "html") and disposition != "attachment":
            text = self._text(part, ctype)
            if subtype == "html":
                return [_Segment(html_to_text(text), True)]
            if _is_flowed(part):
                text = _unflow(text, _param(part, "delsp").lower() == "yes")
            return [_Segment(text, False)]
        if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime") and disposition != "attachment":
            return [self._encrypted("S/MIME")]
        self._attach(part, ctype)
        return []

    def _alternative(self, parts: list[Message], depth: int) -> list[_Segment]:
        rendered = [self.walk(p, depth + 1) for p in parts]
        plain = [r for r in rendered if r and not r[0].html and any(s.text.strip() for s in r)]
        if plain:
            return plain[0]
        filled = [r for r in rendered if any(s.text.strip() for s in r)]
        return filled[-1] if filled else []

    def _related(self, part: Message, parts: list[Message], depth: int) -> list[_Segment]:
        if not parts:
            return []
        start = _param(part, "start").strip().strip("<>")
        root = parts[0]
        if start:
            for p in parts:
                if _raw_header(p, "content-id").strip().strip("<>") == start:
                    root = p
                    break
        segments = self.walk(root, depth + 1)
        for p in parts:
            if p is not root and _disposition(p) == "attachment":
                self._attach(p, _content_type(p))
        return segments

    def _signed(self, part: Message, parts: list[Message], depth: int) -> list[_Segment]:
        if "pgp-signature" in _param(part, "protocol").lower():
            self.signed = True
        return self.walk(parts[0], depth + 1) if parts else []

    def _encrypted(self, kind: str) -> _Segment:
        if not self._encrypted_noted:
            self.warnings.append(f"encrypted: {kind} encrypted body cannot be read")
            self._encrypted_noted = True
        return _Segment(ENCRYPTED_NOTE, False)

    def _forwarded(self, inner: Message, depth: int) -> list[_Segment]:
        lines = ["---------- Forwarded message ----------"]
        for name in ("from", "date", "subject", "to"):
            value = _collapse(_text_header(inner, name, self.warnings))
            if value:
                lines.append(f"{name.capitalize()}: {value}")
        segments = self.walk(inner, depth + 1)
        head = _Segment("\n".join(lines), False)
        return [head, *segments] if segments else [head]

    def _text(self, part: Message, ctype: str) -> str:
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:
            self.warnings.append(f"encoding: {ctype} part could not be decoded, raw text used")
            payload = part.get_payload()
            data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        return _decode_bytes(data, _param(part, "charset") or None, self.warnings, ctype)

    def _attach(self, part: Message, ctype: str) -> None:
        try:
            data = part.get_payload(decode=True)
        except Exception:
            data = None
        if data is None:
            payload = part.get_payload()
            size = len(payload) if isinstance(payload, (str, bytes)) else 0
        else:
            size = len(data)
        self.attachments.append(Attachment(filename=_filename(part), content_type=ctype, size=size))


def _content_type(part: Message) -> str:
    try:
        return _CONTROL.sub("", part.get_content_type()) or "application/octet-stream"
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    raw = _raw_header(part, "content-disposition")
    return raw.split(";", 1)[0].strip().lower()


def _param(part: Message, name: str, header: str = "content-type") -> str:
    try:
        value = part.get_param(name, header=header)
    except Exception:
        value = None
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    if value is None:
        m = re.search(rf"(?i)\b{name}\s*=\s*\"?([^\";]*)", _raw_header(part, header))
        value = m.group(1) if m else ""
    return _fix_surrogates(str(value)).strip()


# A charset holds no "=" or blank, so an attempt stops at the next "name*=" instead of
# running on to the end of the header.
_RFC2231_NAME = re.compile(r"(?i)\b(?:file)?name\*(?:0\*)?\s*=\s*\"?([^'\";=\s]*)'[^']*'([^\";\s]*)")
_PLAIN_NAME = re.compile(r"(?i)\b(?:file)?name\s*=\s*(\"[^\"]*\"|[^;\s]+)")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None or "\ufffd" in name or _SURROGATES.search(name):
        raw = _raw_header(part, "content-disposition") + ";" + _raw_header(part, "content-type")
        m = _RFC2231_NAME.search(raw)
        if m:
            data = unquote_to_bytes(m.group(2).encode("utf-8", "surrogateescape"))
            codec = _codec(m.group(1))
            try:
                name = data.decode(codec) if codec else _guess(data)
            except (UnicodeDecodeError, LookupError, ValueError):
                name = _guess(data)
        elif name is None:
            m = _PLAIN_NAME.search(raw)
            name = m.group(1).strip('"') if m else None
    if name is not None:
        name = _collapse(_decode_words(_fix_surrogates(name)) if "=?" in name else _fix_surrogates(name))
        name = name.replace("\\", "/").rsplit("/", 1)[-1] or None
    return name


def _is_flowed(part: Message) -> bool:
    return _param(part, "format").lower() == "flowed"


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676: join soft-broken lines (ending in a space) of format=flowed text."""
    out: list[str] = []
    buffer: list[str] = []  # the pieces of the paragraph being joined
    buffer_depth = -1
    for line in text.splitlines():
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]
        if buffer and depth != buffer_depth:
            out.append(">" * buffer_depth + (" " if buffer_depth else "") + "".join(buffer))
            buffer = []
        buffer_depth = depth
        if content.endswith(" ") and content != "-- ":
            piece = content[:-1] if delsp else content
            if piece:
                buffer.append(piece)
            continue
        buffer.append(content)
        out.append(">" * depth + (" " if depth else "") + "".join(buffer))
        buffer = []
    if buffer:
        out.append(">" * buffer_depth + (" " if buffer_depth else "") + "".join(buffer))
    return "\n".join(out)


def _join_segments(segments: list[_Segment]) -> tuple[str, bool]:
    texts = [s for s in segments if s.text.strip()]
    if not texts:
        return "", False
    return "\n\n".join(s.text.strip("\n") for s in texts), texts[0].html


_PGP_BEGIN_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
_PGP_SIGNATURE_LINE = re.compile(r"^-----BEGIN PGP SIGNATURE-----", re.MULTILINE)
_PGP_END_SIGNATURE_LINE = re.compile(r"^-----END PGP SIGNATURE-----[ \t]*$", re.MULTILINE)
_PGP_ARMOR_HEADER = re.compile(r"[A-Za-z-]+:")
_PGP_MESSAGE = re.compile(
    r"^-----BEGIN PGP MESSAGE-----.*?(?:^-----END PGP MESSAGE-----[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)


def _strip_inline_pgp(body: str, warnings: list[str]) -> tuple[str, bool]:
    if "-----BEGIN PGP" not in body:
        return body, False
    body = body.replace("\r\n", "\n")
    body, signed = _unarmour_signed(body)
    if "-----BEGIN PGP MESSAGE-----" in body:
        body, count = _PGP_MESSAGE.subn(ENCRYPTED_NOTE, body)
        if count:
            warnings.append("encrypted: inline PGP encrypted text cannot be read")
    return body, signed


def _unarmour_signed(body: str) -> tuple[str, bool]:
    """Each clear-signed block (the BEGIN line, its armour headers, a blank line, the text, the
    signature) becomes its text with the "- " escapes removed. One pass: the signature lines are
    found once, and each BEGIN line looks up the first that follows it."""
    signatures = [m.start() for m in _PGP_SIGNATURE_LINE.finditer(body)]
    ends = [m.span() for m in _PGP_END_SIGNATURE_LINE.finditer(body)]
    out: list[str] = []
    pos = 0  # everything before pos is done
    search = 0
    while (begin := body.find(_PGP_BEGIN_SIGNED, search)) >= 0:
        search = begin + 1
        if begin and body[begin - 1] != "\n":
            continue
        text_start = _clear_signed_text_start(body, begin + len(_PGP_BEGIN_SIGNED))
        if text_start is None:
            continue
        at = bisect_left(signatures, text_start)
        if at == len(signatures):
            break  # no signature follows this BEGIN line, nor any later one
        signature = signatures[at]
        after = bisect_left(ends, (signature + 1, 0))
        if after == len(ends):
            break
        text_end = signature - 1 if signature > text_start and body[signature - 1] == "\n" else signature
        out += [body[pos:begin], re.sub(r"^- ", "", body[text_start:text_end], flags=re.MULTILINE)]
        pos = search = ends[after][1]
    if not out:
        return body, False
    out.append(body[pos:])
    return "".join(out), True


def _clear_signed_text_start(body: str, pos: int) -> int | None:
    """Where the text starts after a BEGIN line's marker at pos: past the rest of that line (only
    blanks), the armour headers ("Hash: SHA256") and one blank line; None if they are not there."""
    line_end = body.find("\n", pos)
    if line_end < 0 or body[pos:line_end].strip(" \t"):
        return None
    pos = line_end + 1
    while True:
        line_end = body.find("\n", pos)
        if line_end < 0:
            return None
        line = body[pos:line_end]
        if not line.strip(" \t"):
            return line_end + 1
        if not _PGP_ARMOR_HEADER.match(line):
            return None
        pos = line_end + 1


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n").rstrip()


# ---------------------------------------------------------------- HTML

_DROP_TAGS = frozenset(
    "script style head title noscript template svg math object embed iframe frame frameset applet "
    "meta link base select option datalist audio video canvas map area img picture source "
    "input button textarea".split()
)
_BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 ul ol dl dt dd table thead tbody tfoot tr blockquote pre address "
    "article section header footer nav aside center form fieldset figure figcaption main hr "
    "caption details summary body html".split()
)
_PARAGRAPH_TAGS = frozenset("p h1 h2 h3 h4 h5 h6 ul ol dl table blockquote pre hr".split())
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all|max-height\s*:\s*0(?:px)?\s*(?:;|$|!)",
    re.IGNORECASE,
)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*>", re.IGNORECASE)


def html_to_text(html: str) -> str:
    """Readable plain text from HTML: no scripts, styles, head, comments or hidden elements;
    paragraphs, line breaks and list items kept; blockquotes quoted with "> "."""
    if not html.strip():
        return ""
    from lxml import etree

    cleaned = _CONTROL.sub("", _XML_DECL.sub("", html))
    parser = etree.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, recover=True,
        huge_tree=True,
    )
    try:
        root = etree.fromstring(cleaned.encode("utf-8", "replace"), parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        root = None
    if root is None or any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log):
        return _crude_text(cleaned)
    return _HtmlText().render(root)


_CRUDE_DROPPED = re.compile(r"(?i)<(?:(!--)|(script|style|head|title)\b)")
_CRUDE_CLOSERS = {
    name: re.compile(rf"(?i)</{name}\s*>") for name in ("script", "style", "head", "title")
}
_CRUDE_BREAK = re.compile(r"(?i)<(?:br|/p|/div|/li|/tr|/h\d)\b[^>]*>")
_CRUDE_TAG = re.compile(r"<[^>]*>")


def _crude_text(html: str) -> str:
    """Tag stripping for HTML that libxml2 gives up on (nested past its depth limit)."""
    text = _drop_scripts_and_comments(html)
    text = _before_last_gt(_CRUDE_BREAK, "\n", text)
    text = _html_unescape(_before_last_gt(_CRUDE_TAG, " ", text))
    return _tidy("\n".join(_collapse(line) for line in text.split("\n")))


def _drop_scripts_and_comments(html: str) -> str:
    """Each <script>, <style>, <head> or <title> up to its end tag, and each comment, becomes a
    space. An opening with no end after it stays, and so does every later one of its kind, so
    the text is scanned once."""
    out: list[str] = []
    pos = 0
    search = 0
    unclosed: set[str] = set()
    while m := _CRUDE_DROPPED.search(html, search):
        kind = "!--" if m.group(1) else m.group(2).lower()
        search = m.start() + 1
        if kind in unclosed:
            continue
        if kind == "!--":
            close = html.find("-->", m.end())
            end = close + 3 if close >= 0 else -1
        else:
            closer = _CRUDE_CLOSERS[kind].search(html, m.end())
            end = closer.end() if closer else -1
        if end < 0:
            unclosed.add(kind)
            continue
        out += [html[pos : m.start()], " "]
        pos = search = end
    out.append(html[pos:])
    return "".join(out)


def _before_last_gt(pattern: re.Pattern[str], repl: str, text: str) -> str:
    """`pattern.sub` for a pattern that runs from "<" to the next ">": applied only up to the last
    ">", where every such run ends, so no attempt rescans the rest of the text."""
    cut = text.rfind(">") + 1
    return pattern.sub(repl, text[:cut]) + text[cut:]


_MAX_QUOTE_MARKS = 20
"""Blockquotes nested deeper still get 20 "> " marks: thousands of nested quotes must not write
thousands of marks on every line (quadratic text from linear HTML)."""


class _HtmlText:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.line: list[str] = []
        self.quote = 0
        self.prefix = ""

    def render(self, root: object) -> str:
        from lxml import etree

        # An explicit stack instead of recursion: (element, entering) and tails as plain strings.
        stack: list[object] = [(root, True)]
        lists: list[list[int]] = []
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                self.text(item)
                continue
            el, entering = item  # type: ignore[misc]
            tag = el.tag.lower() if isinstance(el.tag, str) else ""
            if not entering:
                if tag in ("ul", "ol") and lists:
                    lists.pop()
                if tag == "blockquote":
                    self.flush()
                    self.quote = max(0, self.quote - 1)
                if tag in _PARAGRAPH_TAGS:
                    self.paragraph()
                elif tag in _BLOCK_TAGS or tag in ("li", "tr"):
                    self.flush()
                continue
            if el.tail:
                stack.append(el.tail)
            if not tag or tag in _DROP_TAGS or _hidden(el):
                continue
            if tag == "br":
                self.flush(force=True)
                continue
            if tag in _PARAGRAPH_TAGS:
                self.paragraph()
            elif tag in _BLOCK_TAGS:
                self.flush()
            if tag == "pre":
                for line in etree.tostring(el, method="text", encoding="unicode", with_tail=False).split("\n"):
                    self.lines.append("> " * min(self.quote, _MAX_QUOTE_MARKS) + line.rstrip())
                self.paragraph()
                continue
            if tag == "blockquote":
                self.quote += 1
            elif tag in ("ul", "ol"):
                lists.append([0 if tag == "ol" else -1])
            elif tag == "li":
                self.flush()
                if lists and lists[-1][0] >= 0:
                    lists[-1][0] += 1
                    self.prefix = f"{lists[-1][0]}. "
                else:
                    self.prefix = "- "
            elif tag in ("td", "th"):
                self.line.append(" ")
            stack.append((el, False))
            for child in reversed(el):
                stack.append((child, True))
            if el.text:
                stack.append(el.text)
        self.flush()
        return _tidy("\n".join(self.lines))

    def text(self, value: str) -> None:
        self.line.append(value)

    def flush(self, force: bool = False) -> None:
        text = _collapse(_INVISIBLE.sub("", "".join(self.line).replace("\xa0", " ")))
        self.line = []
        if text or self.prefix:
            self.lines.append("> " * min(self.quote, _MAX_QUOTE_MARKS) + self.prefix + text)
            self.prefix = ""
        elif force and self.lines and self.lines[-1].strip("> "):
            self.lines.append("> " * min(self.quote, _MAX_QUOTE_MARKS))

    def paragraph(self) -> None:
        self.flush()
        if self.lines and self.lines[-1].strip("> "):
            self.lines.append("> " * min(self.quote, _MAX_QUOTE_MARKS))


def _hidden(el: object) -> bool:
    attrib = el.attrib  # type: ignore[attr-defined]
    if "hidden" in attrib:
        return True
    style = attrib.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


# ---------------------------------------------------------------- excerpt

# The line patterns below are matched against lines with their leading blanks stripped
# (str.lstrip strips what \s matches): a regex's leading \s* would backtrack over them.
_ATTRIBUTION = re.compile(
    r"(?:(?:On|Am|Le|El|Il|Op|Em|W dniu)\s.{0,250}?)?"
    r"(?:wrote|writes|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|napisał)\s*:\s*$",
    re.IGNORECASE,
)
_ON_START = re.compile(r"(?:On|Am|Le|El|Il|Op)\s", re.IGNORECASE)
_REPLY_MARKER = re.compile(
    r"(?:-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original)\s*-{2,}"
    r"|_{20,}\s*$(?=\n\s*(?:From|Von|De):)|From:\s.*\n\s*Sent:\s)",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_MARKER = re.compile(
    r"(?:-{2,}\s*Forwarded (?:message|by)|Begin forwarded message:|-{2,}\s*Weitergeleitete Nachricht)",
    re.IGNORECASE,
)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:fwd?|wg|tr|rv|fw)\s*:", re.IGNORECASE)
_MOBILE_FOOTER = re.compile(
    r"(?:Sent from my \w+|Sent from (?:Mail|Yahoo Mail|Outlook|Gmail|my mobile)\b|"
    r"Get Outlook for (?:iOS|Android)|Sent with (?:ProtonMail|Proton Mail|BlackBerry)|"
    r"Von meinem \w+ gesendet|Envoyé de mon \w+)",
    re.IGNORECASE,
)
_RULE = re.compile(r"(?:_{20,}|-{20,}|={20,})\s*$")
_LIST_FOOTER = re.compile(
    r"mailing list|listinfo|unsubscribe|mailman|list-?help|sponsored by|@lists?\.|yahoo! groups",
    re.IGNORECASE,
)


def make_excerpt(subject: str, body: str, limit: int = EXCERPT_CHARS) -> str:
    """The subject plus the start of the body without quoted replies, signatures and footers."""
    trimmed = _trim_replies(body, forward=bool(_FORWARD_SUBJECT.match(subject)))
    text = trimmed if trimmed.strip() else body
    return f"{subject}\n{_shorten(text, limit)}".strip("\n")


def _shorten(text: str, limit: int) -> str:
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.strip().split("\n")))
    text = re.sub(r"[ \t]+", " ", text)
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", int(limit * 0.8), limit)
    return text[: cut if cut > 0 else limit].rstrip() + " …"


def _trim_replies(body: str, forward: bool) -> str:
    lines = body.split("\n")
    out: list[str] = []
    skipping = False  # inside a signature or footer, until a forwarded message begins
    footer_from = -1  # a rule at or after this line has few enough lines after it to be a footer
    for i, line in enumerate(lines):
        lead = line.lstrip()
        if _FORWARD_MARKER.match(lead):
            skipping = False
            out.append(line)
            continue
        if skipping:
            continue
        stripped = line.strip()
        if stripped.startswith(">") or stripped.startswith("|>"):
            continue
        if not forward and _REPLY_MARKER.match("\n".join(lines[i : i + 3]).lstrip()):
            break
        if _ATTRIBUTION.match(lead) and _quote_follows(lines, i + 1):
            continue
        if (_ON_START.match(lead) and i + 1 < len(lines) and _ATTRIBUTION.match(lines[i + 1].lstrip())
                and _quote_follows(lines, i + 2)):
            continue
        if line.rstrip() in ("--", "-- ") or line == "-- " or _MOBILE_FOOTER.match(lead):
            skipping = True
            continue
        if _RULE.match(lead):
            if footer_from < 0:
                footer_from = _footer_start(lines)
            if i >= footer_from:
                rest = [r for r in lines[i + 1 :] if r.strip()]
                if _LIST_FOOTER.search("\n".join(rest)):
                    skipping = True
                    continue
        out.append(line)
    # A bare list footer at the very end ("http://.../mailman/listinfo/fork").
    while out and (not out[-1].strip() or (len(out[-1]) < 120 and _LIST_FOOTER.search(out[-1]))):
        out.pop()
    return "\n".join(out).strip()


def _footer_start(lines: list[str], most: int = 15) -> int:
    """The first index with at most `most` non-blank lines after it."""
    seen = 0  # non-blank lines after i
    for i in range(len(lines) - 1, -1, -1):
        if seen > most:
            return i + 1
        if lines[i].strip():
            seen += 1
    return 0


def _quote_follows(lines: list[str], start: int) -> bool:
    for line in lines[start : start + 3]:
        if line.strip():
            return line.lstrip().startswith(">")
    return False

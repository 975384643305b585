"""parse_message on hand-made messages, one for each way real mail goes wrong."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from datetime import datetime, timezone

import pytest

from mail.parse import ENCRYPTED_NOTE, html_to_text, make_excerpt, parse_message
from mail.types import ParseError


def eml(headers: str, body: bytes | str = b"Hello.\n") -> bytes:
    """A message from header lines (one per line, folding allowed) and a body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return headers.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n" + body


def has_warning(parsed, kind: str) -> bool:
    return any(w.startswith(kind + ":") for w in parsed.warnings)


BASIC = eml(
    """From: "Doe, Jane" <Jane.Doe@Example.COM>
To: Bob <bob@example.org>, carol@example.org
Cc: undisclosed-recipients:;
Subject: Quarterly numbers
Date: Thu, 22 Aug 2002 10:13:00 +0200
Message-ID:  <abc.123@mail.example.com>
In-Reply-To: <parent@example.com>
References: <root@example.com> <parent@example.com>""",
    "The numbers are in.\n",
)


# ---------------------------------------------------------------- headers


def test_well_formed_message() -> None:
    p = parse_message(BASIC)
    assert p.message_id == "abc.123@mail.example.com"
    assert p.content_hash == hashlib.sha256(BASIC).hexdigest()
    assert p.size == len(BASIC)
    assert p.subject == "Quarterly numbers"
    assert (p.from_name, p.from_addr) == ("Doe, Jane", "jane.doe@example.com")
    assert p.to == ["Bob <bob@example.org>", "carol@example.org"]
    assert p.cc == []
    assert p.date == datetime(2002, 8, 22, 8, 13, tzinfo=timezone.utc)
    assert p.in_reply_to == "parent@example.com"
    assert p.references == ["root@example.com", "parent@example.com"]
    assert p.body == "The numbers are in."
    assert p.excerpt == "Quarterly numbers\nThe numbers are in."
    assert not p.is_html and not p.signed and p.attachments == []
    assert p.warnings == []


def test_missing_from_date_subject() -> None:
    p = parse_message(eml("To: bob@example.org\nMessage-ID: <x@y>", "Just a body.\n"))
    assert (p.subject, p.from_name, p.from_addr, p.date) == ("", "", "", None)
    assert p.excerpt == "Just a body."
    assert has_warning(p, "date") and has_warning(p, "header")


def test_sender_stands_in_for_missing_from_and_comment_names_are_read() -> None:
    p = parse_message(eml("Sender: list-owner@example.org\nSubject: x"))
    assert p.from_addr == "list-owner@example.org"
    p = parse_message(eml("From: jdoe@example.com (John Doe)\nSubject: x"))
    assert (p.from_name, p.from_addr) == ("John Doe", "jdoe@example.com")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("<>", None),
        ("<unknown>", None),
        ("foo bar", None),
        ("", None),
        ("<a b@c>", None),
        ("  <ABC.1@Host.Example>  ", "ABC.1@Host.Example"),
        ("bare@example.com", "bare@example.com"),
    ],
)
def test_message_id_cleaning(value: str, expected: str | None) -> None:
    p = parse_message(eml(f"From: a@b.c\nMessage-ID: {value}"))
    assert p.message_id == expected


def test_references_in_reply_to_deduplicated_and_junk_ignored() -> None:
    raw = eml(
        """From: a@b.c
Message-ID: <me@x>
References: <r1@x>
 <r2@x> <r1@x> <not an id>
 <me@x>
In-Reply-To: Your message of "Mon, 1 Jan 2001" <r3@x> (sent by Bob)"""
    )
    p = parse_message(raw)
    assert p.references == ["r1@x", "r2@x", "r3@x"]
    assert p.in_reply_to == "r3@x"


def test_folded_headers_are_unfolded() -> None:
    p = parse_message(eml("From: a@b.c\nSubject: a subject that\n  goes on\n\tand on"))
    assert p.subject == "a subject that goes on and on"


def test_encoded_words_good_and_broken() -> None:
    raw = eml(
        """From: =?x-unknown?Q?J=F6rg?= Schmidt <JS@example.de>
To: =?utf-8?B?w4lsb2RpZQ==?= <e@example.fr>
Cc: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>, =?utf-8?B?!!!broken?= <b@x.y>
Subject: =?utf-8?Q?caf=E9?= and =?utf-8?B?w6k=?= =?utf-8?B?dMOp?="""
    )
    p = parse_message(raw)
    assert p.subject == "café and été"  # latin-1 bytes in a UTF-8 word; words joined
    assert (p.from_name, p.from_addr) == ("Jörg Schmidt", "js@example.de")
    assert p.to == ["Élodie <e@example.fr>"]
    assert p.cc[0] == "André <andre@example.fr>"
    assert p.cc[1].endswith("<b@x.y>")
    assert has_warning(p, "charset")


def test_raw_8bit_headers() -> None:
    raw = "From: Jörg <j@example.de>\r\nSubject: Grüße\r\n\r\nhi".encode("utf-8")
    p = parse_message(raw)
    assert (p.subject, p.from_name) == ("Grüße", "Jörg")
    raw = "From: Andr\xe9 <a@example.fr>\r\nSubject: \xa37,000 caf\xe9\r\n\r\nhi".encode("latin-1")
    p = parse_message(raw)
    assert (p.subject, p.from_name) == ("£7,000 café", "André")
    assert has_warning(p, "header")


def test_addresses_groups_empty_and_broken() -> None:
    raw = eml(
        """From: <>
To: Team: Ann <ANN@x.org>, ben@x.org;, undisclosed-recipients:;
Cc: broken <foo@, "Only Name" ,  , plain@x.org"""
    )
    p = parse_message(raw)
    assert p.from_addr == ""
    assert p.to == ["Ann <ann@x.org>", "ben@x.org"]
    assert "plain@x.org" in p.cc
    assert all(c.strip() for c in p.cc)


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Thu, 22 Aug 2002 10:13:00 -0400", datetime(2002, 8, 22, 14, 13, tzinfo=timezone.utc)),
        ("22 Aug 2002 10:13:00", datetime(2002, 8, 22, 10, 13, tzinfo=timezone.utc)),  # naive → UTC
        ("Thu, 22 Aug 2002 10:13:00 -0000", datetime(2002, 8, 22, 10, 13, tzinfo=timezone.utc)),
        ("Thu, 22 Aug 2002 10:13:00 CEST", datetime(2002, 8, 22, 8, 13, tzinfo=timezone.utc)),
        ("Thu, 22 Aug 02 10:13:00 EDT", datetime(2002, 8, 22, 14, 13, tzinfo=timezone.utc)),
        ("2002-08-22 10:13:00 +0200", datetime(2002, 8, 22, 8, 13, tzinfo=timezone.utc)),
        ("22.08.2002 10:13", datetime(2002, 8, 22, 10, 13, tzinfo=timezone.utc)),
        ("Donnerstag, 22. Okt 2002 10:13", datetime(2002, 10, 22, 10, 13, tzinfo=timezone.utc)),
        ("August 22, 2002 3:05 PM", datetime(2002, 8, 22, 15, 5, tzinfo=timezone.utc)),
        ("Thu Aug 22 10:13:00 2002", datetime(2002, 8, 22, 10, 13, tzinfo=timezone.utc)),
        ("Thu, 22 Aug 2002 10:13:00 +9999", datetime(2002, 8, 22, 10, 13, tzinfo=timezone.utc)),
    ],
)
def test_dates_readable(value: str, expected: datetime) -> None:
    assert parse_message(eml(f"From: a@b.c\nDate: {value}")).date == expected


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 31 Feb 2002 10:00:00 +0000",  # impossible day
        "garbage",
        "Mon, 01 Jan 1968 00:00:00 +0000",  # before 1970
        "Thu, 01 Jan 1970 00:00:00 +0000",  # the epoch: an unset clock
        "Wed, 04 Oct 2099 12:05:01 -0400",  # the future
        "99999999999999999999",
    ],
)
def test_dates_unreadable_become_none_with_warning(value: str) -> None:
    p = parse_message(eml(f"From: a@b.c\nDate: {value}"))
    assert p.date is None
    assert has_warning(p, "date")


# ---------------------------------------------------------------- charsets


def part_message(content_type: str, body: bytes, extra: str = "") -> bytes:
    head = f"From: a@b.c\nSubject: s\nMIME-Version: 1.0\nContent-Type: {content_type}\n{extra}"
    return eml(head.strip("\n"), body)


@pytest.mark.parametrize(
    "content_type, body, expected, warns",
    [
        ("text/plain; charset=us-ascii", "café £5".encode("latin-1"), "café £5", False),
        ("text/plain; charset=us-ascii", "café".encode("utf-8"), "café", True),
        ("text/plain; charset=iso-8859-1", "naïve".encode("utf-8"), "naïve", True),
        ('text/plain; charset="windows-1252 "', b"\x93quoted\x94 \x80", "\u201cquoted\u201d €", False),
        ("text/plain; charset=x-unknown", "Grüße".encode("utf-8"), "Grüße", True),
        ("text/plain; charset=x-unknown", "Gr\xfc\xdfe".encode("latin-1"), "Grüße", True),
        ("text/plain", "Gr\xfc\xdfe".encode("latin-1"), "Grüße", True),
        ("text/plain; charset=utf-8", b"broken \xe9 utf8", "broken é utf8", True),
        ("text/plain; charset=base64", b"not a codec", "not a codec", True),
        ("text/plain; charset=koi8-r", "Привет".encode("koi8-r"), "Привет", False),
    ],
)
def test_body_charsets(content_type: str, body: bytes, expected: str, warns: bool) -> None:
    p = parse_message(part_message(content_type, body))
    assert p.body == expected
    assert has_warning(p, "charset") == warns


def test_undeclared_cyrillic_is_detected() -> None:
    text = "Добрый день! Это письмо написано по-русски и отправлено без указания кодировки. " * 3
    p = parse_message(part_message("text/plain", text.encode("koi8-r")))
    assert p.body == text.strip()


def test_base64_and_quoted_printable_bodies() -> None:
    p = parse_message(part_message("text/plain; charset=utf-8", b"Y2Fmw6k=\n", "Content-Transfer-Encoding: base64"))
    assert p.body == "café"
    p = parse_message(
        part_message("text/plain; charset=iso-8859-1", b"caf=E9 soft=\nbreak\n", "Content-Transfer-Encoding: quoted-printable")
    )
    assert p.body == "café softbreak"
    p = parse_message(part_message("text/plain", b"!!!not base64!!!", "Content-Transfer-Encoding: base64"))
    assert isinstance(p.body, str)


def test_format_flowed_is_unwrapped() -> None:
    body = b"This is one long \r\nparagraph that was \r\nwrapped.\r\n\r\n> quoted \r\n> text\r\n"
    p = parse_message(part_message("text/plain; charset=utf-8; format=flowed", body))
    assert p.body.splitlines()[0] == "This is one long paragraph that was wrapped."
    assert "> quoted text" in p.body


# ---------------------------------------------------------------- HTML


HOSTILE_HTML = b"""<html><head><title>Title text</title>
<style>p { color: red } .secret { }</style>
<script>alert(1)</script></head>
<body onload="evil()">
<!-- a comment -->
<div style="display:none">preheader hidden</div>
<span hidden>also hidden</span>
<p>First&nbsp;paragraph with <b>bold</b> and <a href="http://tracker.example/x">a link</a>.</p>
<img src="http://tracker.example/pixel.gif" onerror="alert(2)" alt="pixel">
<p>Second   paragraph<br>with a break &amp; an entity &eacute;&#233;&#x41;.</p>
<ul><li>one</li><li>two</li></ul>
<ol><li>first</li><li>second</li></ol>
<table><tr><td>cell a</td><td>cell b</td></tr></table>
<script type="text/javascript">document.write("x")</script>
</body></html>"""


def test_html_only_body_becomes_clean_text() -> None:
    p = parse_message(part_message("text/html; charset=utf-8", HOSTILE_HTML))
    assert p.is_html
    lines = p.body.splitlines()
    assert "First paragraph with bold and a link." in lines
    assert "Second paragraph" in lines and "with a break & an entity ééA." in lines
    assert "- one" in lines and "- two" in lines
    assert "1. first" in lines and "2. second" in lines
    assert "cell a cell b" in lines
    assert "\n\nSecond paragraph" in p.body  # paragraphs stay apart


@pytest.mark.parametrize(
    "banned",
    ["alert", "<", ">", "script", "onerror", "onload", "color: red", "tracker", "http", "pixel",
     "hidden", "comment", "Title text", "&amp;", "&nbsp;", "\xa0", "document.write"],
)
def test_html_leaves_nothing_dangerous_or_invisible(banned: str) -> None:
    p = parse_message(part_message("text/html; charset=utf-8", HOSTILE_HTML))
    assert banned not in p.body
    assert banned not in p.excerpt


def test_html_edge_cases_do_not_raise() -> None:
    assert html_to_text("") == ""
    assert html_to_text("   ") == ""
    assert html_to_text('<?xml version="1.0" encoding="utf-8"?><p>hi</p>') == "hi"
    assert html_to_text("a\x00b<p>x</p>") == "ab\n\nx"
    assert html_to_text("<p>unclosed <b>tags <i>everywhere") == "unclosed tags everywhere"
    assert html_to_text("<blockquote>quoted</blockquote>after") == "> quoted\n\nafter"
    assert html_to_text("<pre>  keep\n    indent</pre>") == "  keep\n    indent"
    assert html_to_text("<div>" * 1000 + "deep" + "</div>" * 1000) == "deep"
    assert html_to_text("<div>" * 5000 + "<script>x()</script>deeper" + "</div>" * 5000) == "deeper"


ALTERNATIVE = b"""From: a@b.c
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=utf-8

%s
--ALT
Content-Type: text/html; charset=utf-8

<p>The <b>HTML</b> version.</p>
--ALT--
"""


def test_alternative_prefers_plain() -> None:
    p = parse_message(ALTERNATIVE.replace(b"%s", b"The plain version."))
    assert (p.body, p.is_html) == ("The plain version.", False)


def test_alternative_falls_back_to_html_when_plain_is_empty() -> None:
    p = parse_message(ALTERNATIVE.replace(b"%s", b"  \n"))
    assert (p.body, p.is_html) == ("The HTML version.", True)


# ---------------------------------------------------------------- structure


NESTED = b"""From: a@b.c
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="MIX"

--MIX
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=utf-8

See the report attached.
--ALT
Content-Type: multipart/related; boundary="REL"; type="text/html"

--REL
Content-Type: text/html; charset=utf-8

<p>See the <img src="cid:logo@x"> report attached.</p>
--REL
Content-Type: image/png
Content-ID: <logo@x>
Content-Disposition: inline; filename="logo.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--REL--
--ALT--
--MIX
Content-Type: application/pdf; name="=?utf-8?B?w6l0w6kucGRm?="
Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKc2VjcmV0IGF0dGFjaG1lbnQgdGV4dAo=
--MIX
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

attachment text that must stay out of the body
--MIX
Content-Type: application/octet-stream; name="=?utf-8?Q?=C3=A9t=C3=A9.bin?="

AAAA
--MIX--
"""


def test_nested_multiparts_and_attachments() -> None:
    p = parse_message(NESTED)
    assert p.body == "See the report attached."
    names = [(a.filename, a.content_type, a.size) for a in p.attachments]
    assert names == [
        ("Résumé final.pdf", "application/pdf", len(b"%PDF-1.4\nsecret attachment text\n")),
        ("notes.txt", "text/plain", len(b"attachment text that must stay out of the body")),
        ("été.bin", "application/octet-stream", 4),
    ]
    assert "secret" not in p.body and "must stay out" not in p.body
    assert "logo" not in p.body


def test_related_html_only_ignores_inline_images() -> None:
    raw = NESTED.split(b"--ALT\nContent-Type: multipart/related")[1].split(b"--REL--")[0]
    raw = b"From: a@b.c\nMIME-Version: 1.0\nContent-Type: multipart/related" + raw + b"--REL--\n"
    p = parse_message(raw)
    assert (p.body, p.is_html, p.attachments) == ("See the report attached.", True, [])


FORWARD = b"""From: fwd@example.com
Subject: Fwd: the plan
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain

FYI, see below.
--B
Content-Type: message/rfc822

From: Original Author <orig@example.com>
Subject: the plan
Date: Mon, 2 Sep 2002 09:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="C"

--C
Content-Type: text/plain

The plan is to ship on Friday.
--C
Content-Type: image/jpeg; name="chart.jpg"
Content-Transfer-Encoding: base64

/9j/4AAQ
--C--

--B--
"""


def test_forwarded_message_is_part_of_the_body() -> None:
    p = parse_message(FORWARD)
    assert p.body.startswith("FYI, see below.")
    assert "From: Original Author <orig@example.com>" in p.body
    assert "The plan is to ship on Friday." in p.body
    assert "The plan is to ship on Friday." in p.excerpt
    assert [(a.filename, a.content_type) for a in p.attachments] == [("chart.jpg", "image/jpeg")]


def test_multipart_without_boundary_is_read_as_text() -> None:
    p = parse_message(part_message("multipart/mixed", b"text with no parts\n"))
    assert p.body == "text with no parts"


def test_deep_nesting_does_not_crash() -> None:
    head = b"From: a@b.c\nMIME-Version: 1.0\n"
    body = b""
    for i in range(60):
        body += b"Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n" % (i, i)
    body += b"Content-Type: text/plain\n\ndeep text\n"
    for i in reversed(range(60)):
        body += b"--b%d--\n" % i
    try:
        p = parse_message(head + body)
    except ParseError:
        return
    assert "structure" in " ".join(p.warnings) or p.body == "deep text"


# ---------------------------------------------------------------- PGP


PGP_MIME = b"""From: a@b.c
Subject: signed
MIME-Version: 1.0
Content-Type: multipart/signed; micalg=pgp-sha1; protocol="application/pgp-signature"; boundary="S"

--S
Content-Type: text/plain; charset=us-ascii

The signed text.
--S
Content-Type: application/pgp-signature; name="signature.asc"

-----BEGIN PGP SIGNATURE-----
iD8DBQE9ZZZZ
-----END PGP SIGNATURE-----
--S--
"""


def test_pgp_mime_signed() -> None:
    p = parse_message(PGP_MIME)
    assert (p.body, p.signed, p.attachments) == ("The signed text.", True, [])


def test_inline_pgp_signed() -> None:
    body = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA1\n\nThe inline signed text.\n"
        "- -- \nA dash-escaped signature line\n-----BEGIN PGP SIGNATURE-----\nVersion: GnuPG v1\n\n"
        "iD8DBQE9ZZZZ\n=abcd\n-----END PGP SIGNATURE-----\n"
    )
    p = parse_message(part_message("text/plain", body.encode()))
    assert p.signed
    assert p.body == "The inline signed text.\n--\nA dash-escaped signature line"
    assert p.excerpt == "s\nThe inline signed text."
    assert "PGP" not in p.body and "Hash:" not in p.body


def test_pgp_mime_encrypted() -> None:
    raw = b"""From: a@b.c
Subject: secret
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="E"

--E
Content-Type: application/pgp-encrypted

Version: 1
--E
Content-Type: application/octet-stream

-----BEGIN PGP MESSAGE-----
hQEMA...
-----END PGP MESSAGE-----
--E--
"""
    p = parse_message(raw)
    assert p.body == ENCRYPTED_NOTE
    assert has_warning(p, "encrypted")
    assert "hQEMA" not in p.body


def test_inline_pgp_encrypted() -> None:
    body = b"Before.\n-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\nAfter.\n"
    p = parse_message(part_message("text/plain", body))
    assert p.body == f"Before.\n{ENCRYPTED_NOTE}\nAfter."
    assert has_warning(p, "encrypted")


# ---------------------------------------------------------------- excerpt


def test_excerpt_trims_quotes_attribution_and_signature() -> None:
    body = (
        "I agree with this.\n\nOn Mon, 2 Sep 2002, John Doe <john@x.org>\nwrote:\n"
        "> the quoted part\n> more quoted\n\nAnd one more point.\n\n-- \nJane\nhttp://jane.example\n"
    )
    assert make_excerpt("Re: plan", body) == "Re: plan\nI agree with this.\n\nAnd one more point."


def test_excerpt_trims_outlook_history_but_keeps_forwards() -> None:
    body = "Sounds good.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: x\n\nold text\n"
    assert make_excerpt("RE: x", body) == "RE: x\nSounds good."
    body = "See below.\n\n---------- Forwarded message ----------\nFrom: Bob\n\nThe real content.\n"
    assert "The real content." in make_excerpt("Fwd: x", body)
    body = "See below.\n\n-----Original Message-----\nFrom: Bob\n\nForwarded content.\n"
    assert "Forwarded content." in make_excerpt("FW: x", body)


def test_excerpt_trims_mobile_and_list_footers() -> None:
    body = "Yes.\n\nSent from my iPhone\n\n> On Monday Bob wrote:\n> stuff\n"
    assert make_excerpt("Re: x", body) == "Re: x\nYes."
    body = (
        "Real content here.\n\n_______________________________________________\n"
        "Foo-talk mailing list\nFoo-talk@lists.example.org\nhttps://lists.example.org/mailman/listinfo/foo-talk\n"
    )
    assert make_excerpt("x", body) == "x\nReal content here."
    body = "Real content.\n\nhttp://xent.example/mailman/listinfo/fork\n"
    assert make_excerpt("x", body) == "x\nReal content."


def test_excerpt_of_all_quotes_falls_back_to_the_untrimmed_start() -> None:
    body = "> only quoted text\n> nothing else\n"
    assert make_excerpt("Re: x", body) == "Re: x\n> only quoted text\n> nothing else"
    p = parse_message(eml("From: a@b.c\nSubject: Re: x", body))
    assert "only quoted text" in p.excerpt


def test_excerpt_is_bounded() -> None:
    p = parse_message(eml("From: a@b.c\nSubject: long", "word " * 2000))
    assert 900 < len(p.excerpt) < 1100
    assert p.body.count("word") == 2000


# ---------------------------------------------------------------- not mail


def png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("inbox.mbox", BASIC)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (b"  \r\n\r\n\t", "empty"),
        (png_bytes(), "PNG"),
        (zip_bytes(), "zip"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"Dear diary, today I wrote no headers at all.\n\nNone.", "no mail headers"),
        (bytes(range(256)) * 4, "no mail headers"),
        (b"key: value\nother: thing\n\nyaml, not mail", "no mail headers"),
    ],
)
def test_non_mail_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_message(raw)


def test_non_bytes_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_message("From: a@b.c\n\nhi")  # type: ignore[arg-type]


# ---------------------------------------------------------------- robustness


SEEDS = [BASIC, NESTED, FORWARD, PGP_MIME, part_message("text/html; charset=utf-8", HOSTILE_HTML)]
JUNK = [b"\x00", b"\xff", b"\xe9", b"=?", b"?=", b"<", b">", b"\n", b"\r\n\r\n", b":", b";", b'"',
        b"--", b"=?utf-8?B?", b"=?x?Q?=E9", b"\n ", b"--MIX", b"boundary=", b"charset=", b"*0*=",
        b"(", b")", b"\\", b"@", b"-----BEGIN PGP SIGNED MESSAGE-----\n"]


def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        at = rng.randrange(len(data) + 1)
        if op < 0.3 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op < 0.5:
            del data[at : at + rng.randint(1, 40)]
        elif op < 0.8:
            data[at:at] = rng.choice(JUNK)
        else:
            start = rng.randrange(len(data) + 1)
            data[at:at] = data[start : start + rng.randint(1, 80)]
    return bytes(data)


def test_random_mutations_raise_nothing_but_parse_error() -> None:
    rng = random.Random(20020822)
    parsed = refused = 0
    for i in range(300):
        raw = mutate(SEEDS[i % len(SEEDS)], rng)
        try:
            p = parse_message(raw)
        except ParseError as exc:
            assert "internal error" not in str(exc), (raw, exc)
            refused += 1
            continue
        parsed += 1
        assert isinstance(p.body, str) and isinstance(p.excerpt, str) and isinstance(p.subject, str)
        assert p.date is None or p.date.tzinfo is not None
        assert all(isinstance(x, str) for x in p.to + p.cc + p.references + p.warnings)
        assert p.content_hash == hashlib.sha256(raw).hexdigest()
        text = p.body + p.subject + p.from_name + p.from_addr + "".join(p.to + p.cc)
        assert not any("\udc80" <= ch <= "\udcff" for ch in text), "raw bytes leaked as surrogates"
    assert parsed > 200

"""The message view's HTML: everything from the mail in it is text."""

from __future__ import annotations

from datetime import datetime, timezone

from mail.search import MessageView
from message_view import conversation_html
from helpers import MESSAGE_VIEW_TAGS, HtmlReader

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes" </pre></article>'




def test_every_part_of_the_mail_is_text():
    item = MessageView(id=7, message_id=None, thread_id="t", subject=HOSTILE, sender=f"Mallory {HOSTILE}",
                       to=[HOSTILE], cc=["cc@example.com"], date=datetime(2025, 3, 1, 12, tzinfo=timezone.utc),
                       body=f"line one\n  {HOSTILE}\nline three", signed=False,
                       attachments=[{"filename": HOSTILE, "content_type": "text/html", "size": 1234}])
    reader = HtmlReader()
    reader.feed(conversation_html([item]))
    assert reader.tags == MESSAGE_VIEW_TAGS
    text = "".join(reader.text)
    assert text.count(HOSTILE) == 5 and f"line one\n  {HOSTILE}\nline three" in text
    assert "cc cc@example.com" in text and "1,234 bytes" in text and "01 Mar 2025 12:00" in text

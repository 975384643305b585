"""A message and its thread as the Search page shows them, in place of the results.

The whole thread is one piece of escaped HTML, drawn as one element: when another message is
opened, the browser replaces that element whole, so no part of the previous message can stay on
screen while the next one arrives (a container of several elements keeps its old children until
each is replaced, and keeps them after a run cut short by the next click).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mail.search import MessageView

__all__ = ["CSS", "conversation_html"]

CSS = """<style>
.message-view { display: flex; flex-direction: column; gap: 0.75rem; }
.message-view article { border: 1px solid rgba(128, 128, 128, 0.3); border-radius: 0.5rem; padding: 0.75rem 1rem; }
.message-view h3 { font-size: 1.05rem; font-weight: 600; margin: 0; padding: 0; }
.message-view .meta { font-size: 0.875rem; opacity: 0.7; margin: 0.25rem 0 0.5rem; overflow-wrap: anywhere; }
.message-view pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-size: 0.875rem;
  background: none; padding: 0; }
</style>"""
"""How `conversation_html` looks (a style-only `st.html`, which takes no place on the page)."""


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def conversation_html(conversation: list[MessageView]) -> str:
    """The thread, oldest first: each message's subject, sender, date, recipients, body and
    attachments, every byte of them escaped (the body is plain text, never rendered)."""
    items = []
    for item in conversation:
        meta = " · ".join(part for part in (
            f"From {_text(item.sender)}", item.date.strftime("%d %b %Y %H:%M") if item.date else "",
            f"to {_text(', '.join(item.to))}" if item.to else "",
            f"cc {_text(', '.join(item.cc))}" if item.cc else "") if part)
        attachments = ", ".join(
            f"{_text(a.get('filename') or 'unnamed')} ({_text(a.get('content_type') or '')}, "
            f"{int(a.get('size') or 0):,} bytes)" for a in item.attachments)
        items.append(
            f'<article data-message="{int(item.id)}"><h3>{_text(item.subject) or "(no subject)"}</h3>'
            f'<div class="meta">{meta}</div><pre>{_text(item.body)}</pre>'
            + (f'<div class="meta">Attachments: {attachments}</div>' if attachments else "") + "</article>")
    return f'<div class="message-view">{"".join(items)}</div>'

"""Text from mail and from users, shown through Streamlit's Markdown exactly as written.

Streamlit renders labels, captions, messages and `st.markdown` as GitHub-flavoured Markdown with
its own extensions. Escaping its syntax is not enough: after parsing, a few plugins rewrite the
plain text itself, so an escaped ``www.example.com`` still became a link. Both are neutralised:

- Markdown's punctuation is escaped (with a backslash in Markdown, as a character reference in
  HTML), so no image, link, emphasis, heading, list, table, HTML tag or entity, ``$math$``,
  ``:color[...]`` directive or ``<autolink>`` is read from the text;
- an invisible word joiner (U+2060) is put where a rewrite of the plain text would begin:
  GFM's bare links (``http://``, ``https://``, ``www.``) and e-mail addresses, ``:material/…:``
  icons, ``:emoji:`` shortcodes and ``->``, ``<=``, ``--`` arrows.
"""

from __future__ import annotations

import html
import re

__all__ = ["JOINER", "html_text", "markdown_text"]

JOINER = "\u2060"
"""WORD JOINER: zero width, never shown, never a line break."""

_REWRITE_STARTS = re.compile(
    r"(?<=:)(?=//|[\w+-]+:|material/)"  # http://, :emoji:, :material/icon:, :streamlit:
    r"|(?=@)"  # alice@example.com
    r"|(?<=[wW]{3})(?=\.)"  # www.example.com
    r"|(?<=-)(?=[->])|(?<=<)(?=-)|(?<=[<>~])(?==)")  # ->, <->, --, <-, >=, <=, ~=
"""Each alternative looks at most one run of word characters ahead: linear in the text."""

_MARKDOWN_ESCAPES = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!<>|~$:&"})
_HTML_REFERENCES = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~$:"})


def _joined(text: str) -> str:
    return _REWRITE_STARTS.sub(JOINER, " ".join(str(text).split()))


def markdown_text(text: object) -> str:
    """``text`` as Markdown that shows it as written, on one line: nothing in it is markup, a
    link, an image, an icon or HTML."""
    return _joined(str(text)).translate(_MARKDOWN_ESCAPES)


def html_text(text: str) -> str:
    """``text`` as HTML that shows it as written also when the HTML is rendered through
    Markdown (``st.markdown(..., unsafe_allow_html=True)``): tags and entities escaped,
    Markdown's punctuation as character references, rewrites broken as in `markdown_text`."""
    return html.escape(_joined(text), quote=False).translate(_HTML_REFERENCES)

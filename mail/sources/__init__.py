"""Where an import reads its mail from: files on the server, an upload, or an IMAP account.

    with open_source("/data/inbox.mbox") as source:
        print(source.total)                  # for a progress bar; None when not cheap to know
        for item in source:
            if isinstance(item, Skipped):    # one message that cannot be taken (too large, ...)
                failed.append((item.source_id, item.reason))
            else:                            # a RawMessage: raw bytes + where it came from
                ...

A source yields `RawMessage`s and, for single messages it will not hand over, `Skipped` with a
reason; the import counts those as failed and carries on. A whole source that cannot be read
safely (not mail at all, an upload over the limit, a zip that escapes its folder or expands too
far, an IMAP login that fails) raises `ImportRefused` with a sentence saying what to do. An IMAP
connection that breaks part-way raises `SourceInterrupted`.

Kinds, as `open_source` detects them: an mbox file (starts with "From "), a Maildir (a folder
with cur/ and new/, Maildir++ subfolders included), a folder of .eml files (searched
recursively), a single .eml file, a .zip of any of those, and ``imap://`` / ``imaps://`` URLs.

Which file holds what:

- ``base.py``: the errors, `Skipped`, `Limits`, recognising mail by its first bytes, `Source`
- ``mbox.py``: `MboxSource` and the streaming mbox splitter (zip members use it too)
- ``files.py``: `MaildirSource`, `EmlFolderSource`, `EmlFileSource`
- ``zips.py``: `ZipSource` and its checks against unsafe archives and zip bombs
- ``addresses.py``: `resolve_imap_host`, the addresses an IMAP import may not reach
- ``imap.py``: `ImapSource`
- ``opening.py``: `open_source`, `open_imap_url`, `open_upload`
"""

from mail.sources.addresses import resolve_imap_host
from mail.sources.base import (
    ImapRefused,
    Limits,
    Skipped,
    Source,
    SourceInterrupted,
    SourceItem,
    error_detail,
)
from mail.sources.files import EmlFileSource, EmlFolderSource, MaildirSource
from mail.sources.imap import ImapSource, imap_utf7
from mail.sources.mbox import MboxSource
from mail.sources.opening import open_imap_url, open_source, open_upload
from mail.sources.zips import ZipSource

__all__ = [
    "EmlFileSource",
    "EmlFolderSource",
    "ImapRefused",
    "ImapSource",
    "Limits",
    "MaildirSource",
    "MboxSource",
    "Skipped",
    "Source",
    "SourceInterrupted",
    "SourceItem",
    "ZipSource",
    "error_detail",
    "imap_utf7",
    "open_imap_url",
    "open_source",
    "open_upload",
    "resolve_imap_host",
]

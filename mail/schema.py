"""Mail's tables, mirrored from migrations 0002, 0006 and 0008 for the schema check (`db/models.py`)."""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Column, Computed, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
    MetaData, PrimaryKeyConstraint, Table, Text, UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR

metadata = MetaData()

messages = Table(
    "mail_messages", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("message_id", Text),
    Column("content_hash", Text, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("in_reply_to", Text),
    Column("subject", Text, nullable=False, server_default=""),
    Column("from_name", Text, nullable=False, server_default=""),
    Column("from_addr", Text, nullable=False, server_default=""),
    Column("to_addrs", ARRAY(Text), nullable=False, server_default="{}"),
    Column("cc_addrs", ARRAY(Text), nullable=False, server_default="{}"),
    Column("sent_at", DateTime(timezone=True)),
    Column("body", Text, nullable=False, server_default=""),
    Column("excerpt", Text, nullable=False, server_default=""),
    Column("attachments", JSONB, nullable=False, server_default="[]"),
    Column("is_html", Boolean, nullable=False, server_default=text("false")),
    Column("signed", Boolean, nullable=False, server_default=text("false")),
    Column("size_bytes", Integer, nullable=False, server_default="0"),
    Column("folder", Text),
    Column("source", Text, nullable=False, server_default=""),
    Column("imported_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("has_attachments", Boolean, Computed("jsonb_array_length(attachments) > 0", persisted=True)),
    Column("tsv", TSVECTOR, Computed(
        "setweight(to_tsvector('english', subject), 'A') || "
        "setweight(to_tsvector('english', from_name || ' ' || from_addr), 'B') || "
        "setweight(to_tsvector('english', left(body, 200000)), 'C')", persisted=True)),
    Index("mail_messages_owner_message_id_key", "owner", "message_id", unique=True,
          postgresql_where=text("message_id IS NOT NULL")),
    Index("mail_messages_owner_content_hash_key", "owner", "content_hash", unique=True,
          postgresql_where=text("message_id IS NULL")),
    Index("mail_messages_owner_sent_at_idx", "owner", text("sent_at DESC")),
    Index("mail_messages_owner_thread_idx", "owner", "thread_id"),
    Index("mail_messages_tsv_idx", "tsv", postgresql_using="gin"),
)

embeddings = Table(
    "mail_embeddings", metadata,
    Column("message_pk", BigInteger, ForeignKey("mail_messages.id", ondelete="CASCADE"), nullable=False),
    Column("owner", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("embedding", Vector(), nullable=False),
    PrimaryKeyConstraint("message_pk", "model", "dimensions"),
    Index("mail_embeddings_owner_idx", "owner"),
)

imap_state = Table(
    "mail_imap_state", metadata,
    Column("owner", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("folder", Text, nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("owner", "account", "folder"),
)

imports = Table(
    "mail_imports", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("kind", Text, CheckConstraint("kind IN ('upload', 'path', 'imap', 'demo')"), nullable=False),
    Column("label", Text, nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secret", LargeBinary),
    Column("status", Text, CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled')"),
           nullable=False, server_default="queued"),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer),
    Column("rate", Float(53)),
    Column("eta_seconds", Float(53)),
    Column("imported", Integer, nullable=False, server_default="0"),
    Column("duplicates", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("failures", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("embedded", Boolean, nullable=False, server_default=text("true")),
    Column("error", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("job_id", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Index("mail_imports_owner_idx", "owner", text("id DESC")),
    Index("mail_imports_unfinished_idx", "owner", postgresql_where=text("status IN ('queued', 'running')")),
)

labels = Table(
    "mail_labels", metadata,
    Column("owner", Text, nullable=False),
    Column("message_pk", BigInteger, ForeignKey("mail_messages.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, CheckConstraint("char_length(label) BETWEEN 1 AND 64"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("owner", "message_pk", "label"),
    Index("mail_labels_owner_label_idx", "owner", "label"),
)

saved_searches = Table(
    "mail_saved_searches", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("name", Text, CheckConstraint("char_length(name) BETWEEN 1 AND 80"), nullable=False),
    Column("query", Text, CheckConstraint("char_length(query) BETWEEN 1 AND 1000"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("owner", "name"),
)

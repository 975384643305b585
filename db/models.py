"""All tables in the app's database, for Alembic and for the test that checks them against the
database: the cache's (made by its own steps, `semcache.schema.upgrade`), the mail's and the
accounts' (made by the app's revisions in `db/migrations/versions/`)."""

from db.accounts import metadata as accounts_metadata
from mail.schema import metadata as mail_metadata
from semcache.schema import RUNTIME_INDEX_PREFIX
from semcache.schema import metadata as semcache_metadata

__all__ = ["include_object", "metadata"]

metadata = [semcache_metadata, mail_metadata, accounts_metadata]

RUNTIME_PREFIXES = (RUNTIME_INDEX_PREFIX, "mail_embeddings_hnsw_")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out of autogenerate what the app creates at run time (one HNSW index per
    embedding space), and the job queue's own tables (procrastinate's schema, applied whole by
    migration 0006 from the installed package)."""
    if type_ == "index" and name and name.startswith(RUNTIME_PREFIXES):
        return False
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return not (getattr(table, "name", name) or "").startswith("procrastinate_")

"""All tables of the app, for migrations and for the test that checks them against the database."""

from semcache.schema import RUNTIME_INDEX_PREFIX, metadata

__all__ = ["include_object", "metadata"]


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out of autogenerate what the cache creates at run time (one HNSW index per
    embedding space)."""
    return not (type_ == "index" and name and name.startswith(RUNTIME_INDEX_PREFIX))

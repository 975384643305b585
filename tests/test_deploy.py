"""The deployment files agree with the settings object (Docker cannot run here, so the files are
checked instead)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {name.upper() for name in Settings.model_fields}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def substitute(value: str) -> str:
    """What compose makes of ${VAR:-default} with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_compose_has_database_store_and_app():
    services = compose()["services"]
    assert services["db"]["image"].startswith("pgvector/pgvector:pg18")
    assert "seaweedfs" in services["s3"]["image"]
    assert services["app"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_app_variables_are_settings_and_parse():
    env = compose()["services"]["app"]["environment"]
    unknown = set(env) - FIELDS
    assert not unknown, f"docker-compose passes variables the app does not read: {unknown}"
    assert {"DATABASE_URL", "S3_BUCKET", "S3_ENDPOINT_URL"} <= set(env)
    values = {k.lower(): substitute(v) for k, v in env.items()}
    settings = Settings(_env_file=None, **values)
    assert settings.database_url.startswith("postgresql") and "@db:5432/" in settings.database_url
    assert settings.s3_bucket and settings.s3_endpoint_url == "http://s3:8333"
    assert not settings.use_openai_embeddings and not settings.use_openai_images


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert documented == FIELDS


def test_the_default_threshold_is_the_library_s():
    from semcache.matching import DEFAULT_THRESHOLD

    assert Settings(_env_file=None).default_threshold == DEFAULT_THRESHOLD
    assert f"DEFAULT_THRESHOLD={DEFAULT_THRESHOLD}" in (ROOT / ".env.example").read_text()


def test_settings_validate_the_threshold_and_blank_values():
    with pytest.raises(ValueError):
        Settings(_env_file=None, default_threshold=2.5)
    settings = Settings(_env_file=None, database_url="  ", openai_api_key="")
    assert settings.database_url is None and not settings.use_openai_images

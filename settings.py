"""The one configuration object of the app, read from environment variables and `.env`.

Only the application reads the environment: `semcache/`, `mail/` and `db/` receive what they
need as arguments. `.env.example` documents every field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Storage
    database_url: str | None = Field(
        None, description="PostgreSQL with pgvector. Unset: an embedded PostgreSQL in DATA_DIR.")
    data_dir: Path = Field(PROJECT_ROOT / ".data", description="Where embedded services keep their data.")
    s3_bucket: str | None = Field(None, description="Store images in this S3 bucket. Unset: a local folder.")
    s3_prefix: str = Field("images/", description="Key prefix inside the bucket.")
    s3_endpoint_url: str | None = Field(None, description="Any S3-compatible store (SeaweedFS, R2, ...).")
    s3_region: str | None = Field(None, description="S3 region.")
    s3_access_key_id: str | None = Field(None, description="S3 credentials; unset: boto3's own chain.")
    s3_secret_access_key: str | None = Field(None, description="S3 credentials; unset: boto3's own chain.")
    blob_dir: Path | None = Field(None, description="Local image folder. Unset: DATA_DIR/blobs.")

    # Models
    openai_api_key: str | None = Field(None, description="Enables OpenAI embeddings and images.")
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible server.")
    openai_timeout_seconds: float = Field(60.0, gt=0)
    openai_max_retries: int = Field(3, ge=0)
    embedding_provider: Literal["auto", "local", "openai"] = Field(
        "auto", description="auto: OpenAI when OPENAI_API_KEY is set, else the local model.")
    embedding_model: str = Field("text-embedding-3-small", description="OpenAI embedding model.")
    embedding_dimensions: int | None = Field(None, gt=0, description="OpenAI `dimensions`; unset: model default.")
    local_embedding_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="How the local model runs. auto: ONNX Runtime (exported once into DATA_DIR/onnx), "
                            "torch if that fails, with the reason logged; onnx: ONNX Runtime or an error; "
                            "torch: sentence-transformers. All three give the same vectors.")
    local_embedding_threads: int = Field(
        2, ge=1, le=64, description="ONNX Runtime threads for batches (imports); a search topic uses one.")
    onnx_export_dir: Path | None = Field(
        None, description="Where the local model's ONNX export is kept (keyed by the model's contents, so "
                          "processes and data folders may share it). Unset: DATA_DIR/onnx.")
    image_provider: Literal["auto", "offline", "openai"] = Field(
        "auto", description="auto: OpenAI when OPENAI_API_KEY is set, else the offline pixel-art generator.")
    image_model: str = Field("gpt-image-2", description="OpenAI image model (gpt-image-1 was shut down in October 2026).")
    image_price_usd: float = Field(0.04, ge=0, description="What one generated image costs.")
    picture_workers: int = Field(
        8, gt=0, description="Picture lookups one app process runs at once, beside the searches; more wait their turn.")

    # Mail
    default_owner: str = Field("me", min_length=1, description="Whose mail the command line and a single-user app use.")
    max_upload_mb: int = Field(200, gt=0, description="Largest mailbox upload or file accepted.")
    max_message_mb: int = Field(25, gt=0, description="Larger messages are skipped and reported.")
    job_secret_key: str | None = Field(
        None, description="Fernet key that encrypts an IMAP password while its import waits for a worker; the same "
                          "for the app and every worker. Unset: a key file made once in DATA_DIR (one machine).")
    s3_upload_prefix: str = Field(
        "uploads/", description="With S3_BUCKET, uploads wait for their import under this prefix (workers on "
                                "any machine read them there); unset S3_BUCKET: DATA_DIR/uploads.")
    imap_allow_private_hosts: bool = Field(
        False, description="IMAP imports may connect to this machine (loopback) and to private, link-local and "
                           "carrier-grade NAT addresses, e.g. a local mail bridge. Off: only servers on the internet. "
                           "Cloud metadata, multicast and reserved addresses are refused either way.")

    # Cache
    default_threshold: float = Field(
        0.31, ge=0, le=2,  # semcache.matching.DEFAULT_THRESHOLD: settings import nothing of the app
        description="Cosine distance used until a product owner sets one on the Settings page.")
    max_topic_chars: int = Field(200, gt=0, description="Longest topic accepted.")
    hnsw_ef_search: int = Field(
        100, ge=1, le=1000, description="HNSW search breadth: higher finds the true nearest phrase more often, slower.")
    cache_max_entries: int | None = Field(None, gt=0, description="Evict least recently served beyond this.")
    cache_max_age_days: float | None = Field(None, gt=0, description="Entries older than this are regenerated.")
    cache_lemmas: bool = Field(
        True, description='Exact path by dictionary form: "invoices" is served from "invoice" (needs WordNet).')
    cache_lexicon: bool = Field(
        True, description="Second look at the nearest cached phrases with WordNet: opposites are never served, "
                          "synonyms and kinds count as closer.")
    cache_entry_thresholds: bool = Field(
        True, description="Each cached picture keeps its own threshold, learned from wrong/good-match verdicts: "
                          "tighter after a wrong serve, looser with good ones under CACHE_ENTRY_ERROR_BOUND. "
                          "Off: every picture is held to the one threshold.")
    cache_entry_error_bound: float = Field(
        0.05, ge=0, le=1, description="Largest estimated share of wrong serves (upper end of a 95% interval) at "
                                      "which a picture's own threshold may reach past the threshold, until one "
                                      "is saved on the Settings page.")
    wordnet_dir: Path = Field(
        Path("/usr/share/wordnet"), description="WordNet 3.0 database (Debian package wordnet-base); "
                                                "without it the cache decides by distance alone.")
    embed_template: str = Field(
        "", description='Embed topics inside this template, e.g. "a picture of {}". Empty: the bare phrase. '
                        "Changing it starts a new embedding space.")

    # Cost guard (also settable live on the Settings page)
    daily_images_per_user: int | None = Field(
        50, ge=0, description="New pictures one user may have made per UTC day; cached pictures are always served.")
    daily_budget_usd: float | None = Field(
        20.0, ge=0, description="What all new pictures together may cost per UTC day.")

    # Accounts
    auth_mode: Literal["none", "password", "oidc"] = Field(
        "none", description="none: one local user (DEFAULT_OWNER); password: accounts in PostgreSQL; "
                            "oidc: Streamlit's st.login, configured in .streamlit/secrets.toml.")
    admin_users: str = Field(
        "", description="Comma-separated user names (password) or e-mail addresses (oidc) who may open "
                        "Settings and Savings. With AUTH_MODE=none the one local user is the admin.")
    allow_signup: bool = Field(True, description="AUTH_MODE=password: anyone may create an account.")
    session_hours: float = Field(12.0, gt=0, description="AUTH_MODE=password: a sign-in lasts this long.")
    session_cookie_secure: Literal["auto", "always"] = Field(
        "auto", description="AUTH_MODE=password: when the sign-in cookie is marked Secure. auto: under https and on "
                            "a loopback host (localhost); always: also when a proxy in front ends https and the "
                            "app sees plain http.")
    signups_per_hour: int | None = Field(
        20, ge=1, description="AUTH_MODE=password: accounts that may be created in any hour, by everyone together. "
                              "Empty: no limit.")
    signups_per_ip_per_hour: int | None = Field(
        5, ge=1, description="AUTH_MODE=password: accounts that may be created in any hour from one client address "
                             "(as the app sees it; behind a proxy every user shares the proxy's). Empty: no limit.")
    admin_password_file: Path | None = Field(
        None, description="AUTH_MODE=password: on first start, the first name in ADMIN_USERS gets an account with "
                          "the password in this file's first line, if it has none (never changed afterwards).")

    @field_validator("s3_bucket", "database_url", "job_secret_key", "openai_api_key", "openai_base_url", "s3_endpoint_url",
                     "daily_images_per_user", "daily_budget_usd", "cache_max_entries", "cache_max_age_days",
                     "onnx_export_dir", "signups_per_hour", "signups_per_ip_per_hour", "admin_password_file",
                     mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def use_openai_embeddings(self) -> bool:
        if self.embedding_provider == "auto":
            return bool(self.openai_api_key)
        return self.embedding_provider == "openai"

    @property
    def use_openai_images(self) -> bool:
        if self.image_provider == "auto":
            return bool(self.openai_api_key)
        return self.image_provider == "openai"

    @property
    def onnx_folder(self) -> Path:
        return self.onnx_export_dir or self.data_dir / "onnx"

    @property
    def blob_folder(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(name.strip().casefold() for name in self.admin_users.split(",") if name.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

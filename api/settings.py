"""API configuration: environment variables prefixed GRIDWATCH_ (shared names with the ingest
for what they share, such as the database)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.settings import DEV_DATABASE_URL, Environment

# The development secret earlier versions signed tokens with when none was set. It is public,
# so it is refused as a configured secret, and nothing signs with it any more.
DEV_SECRET = "development-only-secret-change-me-in-production"
MIN_SECRET_LENGTH = 32


class ApiSettings(BaseSettings):
    """Everything an API process needs; see the configuration table in the README."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", env_nested_delimiter="__", frozen=True,
        hide_input_in_errors=True,  # the API secret and the database URL are secrets
    )  # fmt: skip

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="production refuses missing secrets and development defaults",
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEV_DATABASE_URL), description="PostgreSQL connection URL"
    )
    api_host: str = Field(default="127.0.0.1", description="address the API listens on")
    api_port: int = Field(default=8080, ge=1, le=65535, description="port the API listens on")
    api_secret: SecretStr | None = Field(
        default=None,
        description="key that signs access tokens (32+ random characters, the same on every "
        "replica); unset: a random key made once and kept in the database",
    )
    api_token_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="how long an access token is valid"
    )
    api_pool_size: int = Field(default=10, ge=1, le=200, description="database connections")
    api_sign_in_window_s: int = Field(
        default=900,
        ge=1,
        le=86_400,
        description="how far back the sign-in throttle counts failures",
    )
    api_sign_in_failures_per_person: int = Field(
        default=10, ge=1, description="failed sign-ins for one person id in the window before 429"
    )
    api_sign_in_failures_per_address: int = Field(
        default=50, ge=1, description="failed sign-ins from one address in the window before 429"
    )
    api_hash_concurrency: int = Field(
        default=2, ge=1, le=64, description="password hashes checked at once (each takes 64 MiB)"
    )
    api_live_recheck_s: float = Field(
        default=30.0, gt=0, le=600, description="how often an open live stream re-checks its person"
    )
    api_live_streams_per_person: int = Field(
        default=5, ge=1, le=1000, description="open live streams per person per API process"
    )
    api_db_wait_s: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="longest wait for a database connection before a request answers 503",
    )
    api_max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="larger request bodies are refused with 413 before they are read",
    )
    api_limit_concurrency: int = Field(
        default=1000,
        ge=10,
        description="open connections (live streams included) past which new requests get 503",
    )
    api_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a connection whose request headers are not complete by then is closed (408)",
    )
    api_keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="an idle keep-alive connection is closed after this"
    )
    api_docs: bool | None = Field(
        default=None,
        description="serve /docs and /redoc (they load Swagger UI from a public CDN); "
        "unset: on in development, off in production",
    )

    @property
    def docs(self) -> bool:
        """Whether /docs and /redoc are served."""
        if self.api_docs is None:
            return self.environment is not Environment.PRODUCTION
        return self.api_docs

    @model_validator(mode="after")
    def _no_dev_secrets(self) -> ApiSettings:
        production = self.environment is Environment.PRODUCTION
        if production and self.database_url.get_secret_value() == DEV_DATABASE_URL:
            raise ValueError("GRIDWATCH_DATABASE_URL must be set in production")
        if self.api_secret is not None:
            secret = self.api_secret.get_secret_value()
            if secret == DEV_SECRET:
                raise ValueError(
                    "GRIDWATCH_API_SECRET is the public development secret: set 32+ random "
                    "characters, or unset it to use a random key kept in the database"
                )
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"GRIDWATCH_API_SECRET must be at least {MIN_SECRET_LENGTH} characters"
                )
        return self

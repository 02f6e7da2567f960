"""API configuration: environment variables prefixed GRIDWATCH_ (shared names with the ingest
for what they share, such as the database)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.settings import DEV_DATABASE_URL, Environment

DEV_SECRET = "development-only-secret-change-me-in-production"


class ApiSettings(BaseSettings):
    """Everything an API process needs; see the configuration table in the README."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", env_nested_delimiter="__", frozen=True
    )

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="production refuses missing secrets and development defaults",
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEV_DATABASE_URL), description="PostgreSQL connection URL"
    )
    api_host: str = Field(default="127.0.0.1", description="address the API listens on")
    api_port: int = Field(default=8080, ge=1, le=65535, description="port the API listens on")
    api_secret: SecretStr = Field(
        default=SecretStr(DEV_SECRET), description="key that signs access tokens (32+ characters)"
    )
    api_token_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="how long an access token is valid"
    )
    api_pool_size: int = Field(default=10, ge=1, le=200, description="database connections")
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
    def _no_dev_secrets_in_production(self) -> ApiSettings:
        if self.environment is Environment.PRODUCTION:
            if self.database_url.get_secret_value() == DEV_DATABASE_URL:
                raise ValueError("GRIDWATCH_DATABASE_URL must be set in production")
            if self.api_secret.get_secret_value() == DEV_SECRET:
                raise ValueError("GRIDWATCH_API_SECRET must be set in production")
        if len(self.api_secret.get_secret_value()) < 32:
            raise ValueError("GRIDWATCH_API_SECRET must be at least 32 characters")
        return self

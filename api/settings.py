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
    api_secret: SecretStr = Field(
        default=SecretStr(DEV_SECRET), description="key that signs access tokens (32+ characters)"
    )
    api_token_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="how long an access token is valid"
    )
    api_pool_size: int = Field(default=10, ge=1, le=200, description="database connections")

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

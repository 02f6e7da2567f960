"""Notification settings: environment variables prefixed GRIDWATCH_NOTIFY_."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    """How the ingest leader routes events and sends deliveries (docs/notifications.md)."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_NOTIFY_", extra="ignore", frozen=True)

    interval_s: float = Field(
        default=0.5, gt=0, le=60, description="how often the leader routes new events and sends"
    )
    batch: int = Field(default=200, ge=1, le=5000, description="deliveries taken per round")
    concurrency: int = Field(default=8, ge=1, le=64, description="sends in flight at once")
    burst_per_minute: int = Field(
        default=3,
        ge=1,
        description="messages a person gets on one channel in a minute before the rest wait"
        " and go as one digest (the console's inbox is never digested)",
    )
    max_attempts: int = Field(
        default=6, ge=1, le=50, description="tries of one delivery before it fails and falls back"
    )
    backoff_s: float = Field(
        default=2.0, gt=0, description="first retry after this; doubled on each further try"
    )
    backoff_max_s: float = Field(default=300.0, gt=0, description="the longest wait between tries")
    lease_s: float = Field(
        default=120.0,
        gt=0,
        description="a delivery taken by a sender that died without an answer is tried again"
        " after this (the provider gets the same idempotency key)",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="the API's public address, for the short links in messages (/t/TOKEN)",
    )
    retention_days: int = Field(
        default=90, ge=1, description="settled deliveries and their events are kept this long"
    )
    link_ttl_s: float = Field(
        default=7 * 86_400, gt=0, description="how long a message's link opens its task"
    )

"""The README's configuration table, generated from the settings models' field descriptions.

`python -m gridwatch.configdoc` prints it; a test fails when the README's copy is stale.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from api.routes.wall import WallSettings
from api.settings import ApiSettings
from gridwatch.brokercfg import BrokerAccountsSettings, BrokerEnvironment
from ingest.settings import IngestSettings
from notify.channels import SETTINGS as CHANNEL_SETTINGS
from notify.channels.webhook import WebhookSettings
from notify.settings import NotifySettings
from registry.broker_sync import BrokerSyncSettings
from registry.enrol import EdgeBrokerSettings

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"

SERVICES: list[tuple[str, type[BaseSettings]]] = [
    ("ingest", IngestSettings),
    ("ingest (leader)", BrokerSyncSettings),
    ("api", ApiSettings),
    ("api: the wall", WallSettings),
    ("broker config", BrokerEnvironment),
    ("broker config", BrokerAccountsSettings),
    ("api, node site files", EdgeBrokerSettings),
    ("ingest (leader): notifications", NotifySettings),
    ("ingest (leader): webhook channel", WebhookSettings),
    *(("ingest (notify channels)", settings) for settings in CHANNEL_SETTINGS),
]


def _rows(
    model: type[BaseModel], prefix: str, delimiter: str, defaults: BaseModel | None = None
) -> Iterator[tuple[str, str, str]]:
    """(variable, default, meaning) for each field; nested models become PREFIX_NAME__FIELD."""
    for name, field in model.model_fields.items():
        if field.is_required():
            value: object = _REQUIRED
        elif defaults is not None:
            value = getattr(defaults, name)
        else:
            value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            yield from _rows(type(value), f"{prefix}{name.upper()}{delimiter}", delimiter, value)
            continue
        yield f"`{prefix}{name.upper()}`", _show(value), field.description or ""


_REQUIRED = object()


def _show(value: object) -> str:
    if value is _REQUIRED:
        return "(required)"
    if isinstance(value, SecretStr):
        return "(development default)"
    if value is None:
        return "(unset)"
    if isinstance(value, tuple | list) and not value:
        return "(none)"
    return f"`{getattr(value, 'value', value)}`"


def render() -> str:
    """The table, between its markers."""
    lines = [START, "| used by | variable | default | meaning |", "|---|---|---|---|"]
    for service, model in SERVICES:
        prefix = str(model.model_config.get("env_prefix", ""))
        delimiter = str(model.model_config.get("env_nested_delimiter") or "__")
        for variable, default, meaning in _rows(model, prefix, delimiter):
            lines.append(f"| {service} | {variable} | {default} | {meaning} |")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())

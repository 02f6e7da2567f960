"""What the command line says about bad configuration: the variable to fix, never its value."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings


def _settings_classes() -> dict[str, type[BaseSettings]]:
    """The settings read from the environment, by the name pydantic gives their errors."""
    from api.settings import ApiSettings
    from gridwatch.brokercfg import BrokerAccountsSettings
    from ingest.settings import DeadlineSettings, IngestSettings

    classes: list[type[BaseSettings]] = [
        IngestSettings, DeadlineSettings, ApiSettings, BrokerAccountsSettings,
    ]  # fmt: skip
    return {c.__name__: c for c in classes}


def _variable(settings: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    prefix = settings.model_config.get("env_prefix") or ""
    nested = settings.model_config.get("env_nested_delimiter") or "__"
    return (prefix + nested.join(str(p) for p in loc)).upper()


def configuration_problems(exc: ValidationError) -> str:
    """One `VARIABLE: what is wrong` per problem, joined by "; ". Input values are left out,
    since the value of a password or a database URL is the secret itself."""
    settings = _settings_classes().get(exc.title)
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        msg = error["msg"].removeprefix("Value error, ")
        if not loc:
            found.append(msg)
        elif settings is not None:
            found.append(f"{_variable(settings, loc)}: {msg}")
        else:
            found.append(f"{'.'.join(str(p) for p in loc)}: {msg}")
    return "; ".join(found)

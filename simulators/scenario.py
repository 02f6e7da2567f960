"""Scenarios: a small YAML language that drives simulated devices at set times.

    name: forced door at night
    steps:
      - at: 5s                      # seconds (real time) from the start: 5, 5s, 2m, 1h
        device: v0001-door1
        action: force
      - at: 1m
        device: v0001-speaker4
        action: cut
      - at: 90s
        node: v0002-edge            # a whole venue's network link
        action: cut_link
        args: {seconds: 30}

Device actions are the models' scenario hooks (listed in ACTIONS); a scenario is checked against
the fleet before it starts, so a misspelt device or action is an error, not a silent no-op.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from edge.config import problems
from simulators.devices import SimCamera, SimCounter, SimDevice, SimDoor, SimSpeaker

log = logging.getLogger(__name__)

_COMMON = {"cut", "restore"}
ACTIONS: dict[type[SimDevice], set[str]] = {
    SimDoor: _COMMON | {"force", "hold_open", "deny_burst", "swipe", "jam"},
    SimCounter: _COMMON | {"spike", "linger"},
    SimSpeaker: _COMMON | {"set_fault"},
    SimCamera: _COMMON | {"alert", "tamper"},
}
NODE_ACTIONS = {"cut_link"}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: object) -> float:
    """5, 5s, 1.5m, 2h -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 5, 5s, 2m or 1h)")
    return float(match[1]) * _UNITS[match[2]]


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Seconds = Field(description="when, from the start of the run")
    device: str | None = Field(default=None, description="the device to act on")
    node: str | None = Field(default=None, description="or the edge node (venue link)")
    action: str = Field(description="what happens")
    args: dict[str, Any] = Field(default_factory=dict, description="the action's arguments")

    @model_validator(mode="after")
    def _one_target(self) -> Step:
        if (self.device is None) == (self.node is None):
            raise ValueError("a step names exactly one of device or node")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    steps: list[Step] = Field(min_length=1)

    @property
    def duration_s(self) -> float:
        return max(s.at for s in self.steps)


class ScenarioError(ValueError):
    """A scenario that cannot run; the message says where."""


def load(path: Path) -> Scenario:
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {problems(exc)}") from None


def check(scenario: Scenario, devices: dict[str, SimDevice], nodes: set[str]) -> None:
    """Raise ScenarioError unless every step names a known target, action and arguments."""
    for i, step in enumerate(scenario.steps):
        where = f"step {i + 1} ({step.action} at {step.at:g}s)"
        if step.node is not None:
            if step.node not in nodes:
                raise ScenarioError(f"{where}: no node {step.node!r} in the fleet")
            if step.action not in NODE_ACTIONS:
                raise ScenarioError(f"{where}: nodes can {sorted(NODE_ACTIONS)}")
            continue
        device = devices.get(str(step.device))
        if device is None:
            raise ScenarioError(f"{where}: no device {step.device!r} in the fleet")
        # By model, so a model's subclass (a protocol simulator's quiet door) has its actions.
        model, allowed = next(
            (model, acts) for model, acts in ACTIONS.items() if isinstance(device, model)
        )
        if step.action not in allowed:
            raise ScenarioError(f"{where}: a {model.__name__} can {sorted(allowed)}")
        try:
            inspect.signature(getattr(device, step.action)).bind(**step.args)
        except TypeError as exc:
            raise ScenarioError(f"{where}: {exc}") from None


CutLink = Callable[[str, float], None]


def run(
    scenario: Scenario, devices: dict[str, SimDevice], cut_link: CutLink, stop: threading.Event
) -> int:
    """Play the steps in time order until done or stopped; returns how many ran."""
    started = time.monotonic()
    done = 0
    for step in sorted(scenario.steps, key=lambda s: s.at):
        if stop.wait(max(0.0, started + step.at - time.monotonic())):
            break
        target = step.device or step.node
        log.info("scenario %r: %s %s %s", scenario.name, step.action, target, step.args or "")
        if step.node is not None:
            cut_link(step.node, parse_duration(step.args.get("seconds", 30)))
        else:
            getattr(devices[str(step.device)], step.action)(**step.args)
        done += 1
    return done

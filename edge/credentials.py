"""A device's account, as every driver that signs in to its device takes it in its settings.

The password is given one of two ways: `password` in a site file written by hand on the node, or
`password_env`, the name of an environment variable of the edge agent that holds it. The second
is the only way through the platform's registry, which never keeps a device password (it would
reach the database, exports and every configuration push). The variable is read when the
driver's settings are checked, so a missing one stops the start (or refuses the pushed
configuration) with a sentence naming it, never later at the first request.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,63}$"


class DeviceAccount(BaseModel):
    """`username` with `password` or `password_env`; mix into a driver's settings model."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(default="admin", min_length=1, max_length=64, description="account")
    password: SecretStr | None = Field(
        default=None, description="the account's password (a site file on the node only)"
    )
    password_env: str | None = Field(
        default=None,
        pattern=ENV_NAME,
        description="the edge agent's environment variable holding the password (how the"
        " registry names it)",
    )
    _secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _one_password(self) -> DeviceAccount:
        if (self.password is None) == (self.password_env is None):
            raise ValueError(
                "give the device's password once: password (in a site file on the node) or"
                " password_env (an environment variable of the edge agent)"
            )
        if self.password is not None:
            self._secret = self.password
            return self
        assert self.password_env is not None
        value = os.environ.get(self.password_env)
        if not value:
            raise ValueError(
                f"password_env: the environment variable {self.password_env} is not set for the"
                " edge agent; set it where the agent starts (e.g. its systemd EnvironmentFile)"
            )
        self._secret = SecretStr(value)
        return self

    @property
    def secret(self) -> str:
        """The password itself: for the request that signs in, never for a log."""
        return self._secret.get_secret_value()

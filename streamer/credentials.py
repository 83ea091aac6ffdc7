"""X API credentials from the environment or systemd credentials, never from the config file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tweetlake.logs import register_secret

BEARER = "X_BEARER_TOKEN"
USER_CONTEXT = ("X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET")


class CredentialsError(Exception):
    pass


class Secret:
    """A string that prints as ``Secret('****')`` wherever it ends up."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__


@dataclass(frozen=True)
class Credentials:
    bearer_token: Secret | None = None
    consumer_key: Secret | None = None
    consumer_secret: Secret | None = None
    access_token: Secret | None = None
    access_token_secret: Secret | None = None

    @property
    def user_context(self) -> bool:
        return self.bearer_token is None


def _lookup(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    if value:
        return value.strip()
    # systemd LoadCredential=x_bearer_token:/etc/... lands in $CREDENTIALS_DIRECTORY
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / name.lower()
        if path.is_file():
            return path.read_text().strip() or None
    return None


def load_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    environ = os.environ if environ is None else environ
    bearer = _lookup(BEARER, environ)
    if bearer:
        return Credentials(bearer_token=Secret(bearer))
    values = {name: _lookup(name, environ) for name in USER_CONTEXT}
    if all(values.values()):
        return Credentials(**{name[2:].lower(): Secret(v) for name, v in values.items() if v})
    missing = [name for name, v in values.items() if not v]
    if len(missing) < len(USER_CONTEXT):
        raise CredentialsError(f"credentials: user context needs {', '.join(missing)} as well")
    raise CredentialsError(
        f"credentials: set {BEARER} (or all of {', '.join(USER_CONTEXT)}) in the environment or as systemd credentials"
    )

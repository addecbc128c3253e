"""Where the client finds the service: the server URL and the API token.

Each value comes from the first of: the argument given, the environment (``HM2BP_URL``,
``HM2BP_TOKEN``), the config file ``$XDG_CONFIG_HOME/hm2bp/config.toml`` (by default
``~/.config/hm2bp/config.toml``) with the keys ``url`` and ``token``. The URL defaults to
``http://127.0.0.1:8000`` (where ``hm2bp serve`` listens); the token has no default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    """The config file's path (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "hm2bp" / "config.toml"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str


def resolve(url: str | None = None, token: str | None = None) -> ClientConfig:
    """The URL and token by the precedence above; ``ConfigError`` when no token is found or the
    config file cannot be read."""
    url = url or os.environ.get("HM2BP_URL")
    token = token or os.environ.get("HM2BP_TOKEN")
    path = config_path()
    if (not url or not token) and path.is_file():
        try:
            with path.open("rb") as handle:
                values = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        url = url or values.get("url")
        token = token or values.get("token")
    if not token:
        raise ConfigError(f"no API token: pass --token, set HM2BP_TOKEN, or put token = \"...\" in {path} "
                          "(`hm2bp token create --user NAME` on the server mints one)")
    return ClientConfig(url=(url or DEFAULT_URL).rstrip("/"), token=token)

"""Secrets the service must use again but never store in clear (the webhook signing secrets).

An HMAC key cannot be hashed like a token: signing needs it. So it is encrypted at rest with
Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) under the service's key, which lives outside
the database: ``HM2BP_WEBHOOK_SECRETS_KEY`` (comma-separated keys; the first encrypts, every one
decrypts, so a key is rotated by putting the new one first), or else the owner-only file
``DATA_DIR/webhook-secrets.key``, made on first use. A copy of the database alone reveals none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .settings import Settings

__all__ = ["InvalidToken", "SecretBox"]


class SecretBox:
    """Encrypts (``seal``) and decrypts (``open``) short secrets under the service's key(s),
    read (or the key file made) on first use, not when the box is built."""

    def __init__(self, keys: Callable[[], list[bytes]]):
        self._keys = keys
        self._fernet: MultiFernet | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        configured = settings.webhook_secrets_key
        if configured is not None:
            keys = [key.strip().encode() for key in configured.get_secret_value().split(",") if key.strip()]
            return cls(lambda: keys)
        path = settings.webhook_secrets_key_file
        return cls(lambda: [key_file(path)])

    @property
    def fernet(self) -> MultiFernet:
        if self._fernet is None:
            self._fernet = MultiFernet([Fernet(key) for key in self._keys()])
        return self._fernet

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret; ``InvalidToken`` when none of the keys sealed it."""
        return self.fernet.decrypt(sealed.encode()).decode()


def key_file(path: Path) -> bytes:
    """The key in ``path``, made (owner-only, 0600) when there is none. The file appears whole
    or not at all (written aside, then hard-linked into place), so two processes that start
    together agree on one key: the second link fails and its process reads the first's."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(Fernet.generate_key())
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    finally:
        aside.unlink()
    return path.read_bytes().strip()

"""Secrets at rest: upstream API keys are stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from ``ROUTERHUB_ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first: the first
encrypts, every one decrypts, so a key can be rotated by putting a new one in front). Production
settings refuse to start without it. In development, without it, one key is derived from
``SECRET_KEY`` (the checkout's own, ``.run/secret-key``): changing that key makes the stored API keys
unreadable (they must be entered again).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str):
    from cryptography.fernet import Fernet, MultiFernet

    if not keys:
        derived = hashlib.sha256(b"routerhub api keys\0" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(key.strip().encode()) for key in keys])


def _current():
    keys = tuple(k for k in getattr(settings, "ROUTERHUB_ENCRYPTION_KEYS", ()) if k.strip())
    if not keys and getattr(settings, "PRODUCTION", False):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("ROUTERHUB_ENCRYPTION_KEYS must be set in production to store or read LLM API keys")
    return _fernet(keys, settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return _current().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable(
            "a stored API key cannot be decrypted: ROUTERHUB_ENCRYPTION_KEYS (or SECRET_KEY) changed since it was saved"
        ) from exc

"""An LLM's upstream API key: from its encrypted field, or from a ``ROUTERHUB_LLM_KEY_…`` variable.

Nothing else: a name that does not carry the prefix is refused even if it got into the database
by some other way than the admin or the API (which both validate it).
"""

from __future__ import annotations

import os
import re

from registry.endpoints import API_KEY_ENV_PATTERN
from registry.secrets import SecretUnreadable, decrypt


class CredentialError(Exception):
    """The LLM's key cannot be had (variable unset or not allowed, stored key unreadable)."""


def upstream_api_key(*, name: str, api_key_encrypted: str, api_key_env: str) -> str | None:
    """The key to send as ``Authorization: Bearer …``, or None when the LLM needs none."""
    if api_key_encrypted:
        try:
            return decrypt(api_key_encrypted)
        except SecretUnreadable as exc:
            raise CredentialError(f"{name}: {exc}") from None
    if not api_key_env:
        return None
    if not re.fullmatch(API_KEY_ENV_PATTERN, api_key_env):
        raise CredentialError(
            f"{name}: the API key variable {api_key_env!r} is refused: its name must start with ROUTERHUB_LLM_KEY_"
        )
    key = os.environ.get(api_key_env)
    if not key:
        raise CredentialError(f"{name}: environment variable {api_key_env} (the LLM's API key) is not set")
    return key


def llm_api_key(llm) -> str | None:
    """:func:`upstream_api_key` of a registry ``LLM``."""
    return upstream_api_key(name=llm.name, api_key_encrypted=llm.api_key_encrypted, api_key_env=llm.api_key_env)

"""Writes to the registry (HackSoft-style services): keyword-only, validated, transactional."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from django.db import transaction
from django.utils import timezone

from registry.embedders import get_embedder, text_sha256
from registry.importing import split_of
from registry.models import LLM, LLM_FIELDS, Prompt, PromptSet

_UNSET = object()


def llm_register(*, name: str, api_key: str | None = None, **fields) -> LLM:
    """Create an LLM after full validation (URL-safe name, non-negative prices, callable api_base).

    ``api_key`` is stored encrypted and never read back by any API or admin page.
    """
    unknown = set(fields) - set(LLM_FIELDS)
    if unknown:
        raise TypeError(f"unknown LLM field(s): {', '.join(sorted(unknown))}")
    llm = LLM(name=name, **fields)
    llm_set_api_key(llm=llm, api_key=api_key, save=False)
    llm.full_clean()
    llm.save()
    return llm


def llm_update(*, llm: LLM, api_key=_UNSET, **fields) -> LLM:
    """Change the given fields; ``api_key``: a new key, ``""``/None removes the stored one, absent keeps it
    — unless the change moves the key (:func:`llm_key_is_moved`): then, absent, it is removed.

    ``llm`` may already hold the new values (a model form sets them on the instance before saving);
    the rule compares with the row as stored.
    """
    unknown = set(fields) - set(LLM_FIELDS)
    if unknown:
        raise TypeError(f"unknown LLM field(s): {', '.join(sorted(unknown))}")
    with transaction.atomic():
        stored = LLM.objects.select_for_update().filter(pk=llm.pk).values("api_base", "api_key_env").first()
        for key, value in fields.items():
            setattr(llm, key, value)
        if api_key is _UNSET and stored is not None and llm_key_is_moved(llm=llm, stored=stored):
            api_key = None
        if api_key is not _UNSET:
            llm_set_api_key(llm=llm, api_key=api_key, save=False)
        llm.full_clean()
        llm.save()
    return llm


def llm_key_is_moved(*, llm: LLM, stored: dict) -> bool:
    """Whether the stored key would go somewhere it was not typed in for: another ``api_base`` (anyone
    allowed to change an LLM could otherwise point it at their own host and receive the key with the
    next call), or another key source (a newly named environment variable)."""
    return llm.api_base != stored["api_base"] or bool(llm.api_key_env and llm.api_key_env != stored["api_key_env"])


def llm_set_api_key(*, llm: LLM, api_key: str | None, save: bool = True) -> None:
    """Store ``api_key`` encrypted (None or "" removes it)."""
    from registry.secrets import encrypt

    api_key = (api_key or "").strip()
    llm.api_key_encrypted = encrypt(api_key) if api_key else ""
    if save:
        llm.save(update_fields=["api_key_encrypted", "updated_at"])


def llms_set_active(*, llms: Iterable[LLM], active: bool) -> int:
    ids = [llm.id for llm in llms]
    # updated_at is set explicitly (update() skips auto_now): routers reload when it moves.
    return LLM.objects.filter(id__in=ids).exclude(is_active=active).update(is_active=active, updated_at=timezone.now())


def prompt_record(
    *,
    prompt_set_name: str,
    text: str,
    embed: Callable[[str], np.ndarray],
    prompt_set_description: str = "",
    source: str = "",
    metadata: dict | None = None,
) -> Prompt:
    """The prompt with this text in the named set (both created on first use), keyed by a hash of
    the text so repeated texts share a row, and split 60/10/30 by that hash like imported data.
    ``embed`` is called only when the prompt is new."""
    prompt_set, _ = PromptSet.objects.get_or_create(
        name=prompt_set_name,
        defaults={"description": prompt_set_description, "source": source},
    )
    digest = text_sha256(text)
    prompt = Prompt.objects.filter(prompt_set=prompt_set, external_id=digest).first()
    if prompt is not None:
        return prompt
    prompt, _ = Prompt.objects.get_or_create(
        prompt_set=prompt_set,
        external_id=digest,
        defaults={
            "text": text,
            "split": split_of(digest),
            "text_sha256": digest,
            "embedding": embed(text),
            "embedder": get_embedder().name,
            "metadata": metadata or {},
        },
    )
    return prompt

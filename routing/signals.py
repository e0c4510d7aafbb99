"""Changes that must reach the gateway's cached lookups (``routing/caches.py``, ``ExpiringCache``).

A saved or deleted API key, tenant, LLM or preset — or a changed allow-list — clears them in this
process at once, and again when the transaction commits (a request that read the old row in between
must not keep it). Other processes see the change when their entries expire
(``ROUTERHUB_GATEWAY_CACHE_SECONDS``). Services that change these rows with ``QuerySet.update()``,
which sends no signal, call :func:`~routing.services.tenancy.forget_lookups` themselves.
"""

from __future__ import annotations

from django.db.models.signals import m2m_changed, post_delete, post_save

from routing.services.tenancy import forget_lookups


def connect() -> None:
    from registry.models import LLM
    from routing.models import ApiKey, Preset, Tenant

    for model in (ApiKey, Tenant, LLM, Preset):
        post_save.connect(forget_lookups, sender=model, dispatch_uid=f"forget-lookups-save-{model.__name__}")
        post_delete.connect(forget_lookups, sender=model, dispatch_uid=f"forget-lookups-delete-{model.__name__}")
    for through in (Tenant.allowed_llms.through, Preset.allowed_llms.through):
        m2m_changed.connect(forget_lookups, sender=through, dispatch_uid=f"forget-lookups-m2m-{through.__name__}")

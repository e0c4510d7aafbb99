"""Reads for the gateway: what a model name means for a tenant, and the models it may call."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from registry.models import LLM
from routing.caches import expiring_cache
from routing.exceptions import UnknownModel
from routing.models import Preset, Tenant
from routing.models.gateway import AUTO_MODEL
from routing.selectors.routers import RoutableLLM
from routing.selectors.tenancy import tenant_allowed_llm_ids


@dataclass(frozen=True)
class PresetOptions:
    name: str
    lam: float | None
    quality_target: float | None
    max_cost_usd: float | None
    llm_ids: frozenset[int]


@dataclass(frozen=True)
class ModelTarget:
    """What ``model`` names: routing (``routerhub-auto``, maybe with a preset) or one LLM."""

    preset: PresetOptions | None = None
    llm: RoutableLLM | None = None

    @property
    def routed(self) -> bool:
        return self.llm is None


# What a model name resolves to, per process for ROUTERHUB_GATEWAY_CACHE_SECONDS (routing/caches.py,
# ExpiringCache): an LLM's name → the callable LLM; (tenant id, preset name) → the preset's options.
_llms_by_name = expiring_cache(
    "gateway llms by name", seconds=lambda: settings.ROUTERHUB_GATEWAY_CACHE_SECONDS, max_entries=10_000
)
_presets = expiring_cache(
    "gateway presets", seconds=lambda: settings.ROUTERHUB_GATEWAY_CACHE_SECONDS, max_entries=10_000
)


def _not_found(name: str) -> UnknownModel:
    return UnknownModel(f"The model {name!r} does not exist or you do not have access to it.")


def model_target(*, tenant: Tenant, name: str) -> ModelTarget:
    """Resolve ``name`` for ``tenant``; raises :class:`UnknownModel` (404) for anything it may not call."""
    if name == AUTO_MODEL:
        return ModelTarget()
    if name.startswith(AUTO_MODEL + ":"):
        preset = _preset(tenant_id=tenant.id, name=name[len(AUTO_MODEL) + 1 :])
        if preset is None:
            raise _not_found(name)
        return ModelTarget(preset=preset)
    llm = _callable_llm(name)
    allowed = tenant_allowed_llm_ids(tenant=tenant)
    if llm is None or (allowed and llm.id not in allowed):
        raise _not_found(name)
    return ModelTarget(llm=llm)


def _callable_llm(name: str) -> RoutableLLM | None:
    """The active LLM called ``name`` that has an endpoint (cached; unknown names are not)."""
    llm = _llms_by_name.get(name)
    if llm is not None:
        return llm
    generation = _llms_by_name.generation
    row = LLM.objects.filter(name=name, is_active=True).exclude(api_base="").first()
    if row is None:
        return None
    llm = RoutableLLM.of(row)
    _llms_by_name.set(name, llm, generation=generation)
    return llm


def _preset(*, tenant_id: int, name: str) -> PresetOptions | None:
    """The tenant's preset called ``name`` (cached; unknown names are not)."""
    preset = _presets.get((tenant_id, name))
    if preset is not None:
        return preset
    generation = _presets.generation
    row = Preset.objects.filter(tenant_id=tenant_id, name=name).first()
    if row is None:
        return None
    preset = PresetOptions(
        name=row.name,
        lam=row.lambda_value,
        quality_target=row.quality_target,
        max_cost_usd=row.max_cost_usd,
        llm_ids=frozenset(row.allowed_llms.values_list("id", flat=True)),
    )
    _presets.set((tenant_id, name), preset, generation=generation)
    return preset


def models_for(*, tenant: Tenant) -> list[tuple[str, str]]:
    """(model id, owner) of what ``tenant`` may call: routing, its presets, then its callable LLMs."""
    allowed = tenant_allowed_llm_ids(tenant=tenant)
    llms = LLM.objects.filter(is_active=True).exclude(api_base="").order_by("name")
    if allowed:
        llms = llms.filter(id__in=allowed)
    presets = Preset.objects.filter(tenant=tenant).order_by("name").values_list("name", flat=True)
    return [
        (AUTO_MODEL, "routerhub"),
        *((f"{AUTO_MODEL}:{name}", "routerhub") for name in presets),
        *((llm.name, llm.provider or "routerhub") for llm in llms),
    ]

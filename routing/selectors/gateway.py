"""Reads for the gateway: what a model name means for a tenant, and the models it may call."""

from __future__ import annotations

from dataclasses import dataclass

from registry.models import LLM
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


def _not_found(name: str) -> UnknownModel:
    return UnknownModel(f"The model {name!r} does not exist or you do not have access to it.")


def model_target(*, tenant: Tenant, name: str) -> ModelTarget:
    """Resolve ``name`` for ``tenant``; raises :class:`UnknownModel` (404) for anything it may not call."""
    if name == AUTO_MODEL:
        return ModelTarget()
    if name.startswith(AUTO_MODEL + ":"):
        preset = Preset.objects.filter(tenant=tenant, name=name[len(AUTO_MODEL) + 1 :]).first()
        if preset is None:
            raise _not_found(name)
        return ModelTarget(
            preset=PresetOptions(
                name=preset.name,
                lam=preset.lambda_value,
                quality_target=preset.quality_target,
                max_cost_usd=preset.max_cost_usd,
                llm_ids=frozenset(preset.allowed_llms.values_list("id", flat=True)),
            )
        )
    llm = LLM.objects.filter(name=name, is_active=True).exclude(api_base="").first()
    allowed = tenant_allowed_llm_ids(tenant=tenant)
    if llm is None or (allowed and llm.id not in allowed):
        raise _not_found(name)
    return ModelTarget(llm=RoutableLLM.of(llm))


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

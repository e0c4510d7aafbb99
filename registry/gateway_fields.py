"""Request fields an LLM accepts through the gateway although its token prices do not cover what they bill.

Some fields of an OpenAI chat request change what the provider charges beyond input and output
tokens at the LLM's prices: ``service_tier: "priority"`` (other token prices), audio output (audio
tokens), ``web_search_options`` (a fee per search), a provider's own extras. The gateway passes such a
field only to an LLM whose ``metadata`` lists it under ``gateway_fields``, with what a call that sets
it costs::

    {"gateway_fields": {
        "service_tier": {"usd_per_mtok_in": 5.0, "usd_per_mtok_out": 20.0},
        "web_search_options": {"usd_per_call": 0.035},
        "top_k": {}
    }}

``usd_per_mtok_in`` / ``usd_per_mtok_out`` replace the LLM's token prices for such a call (the
highest, when several fields set one), ``usd_per_call`` is added to its cost; an empty entry passes
the field at the LLM's own prices. Reservations and metering both use these prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METADATA_KEY = "gateway_fields"
PRICE_KEYS = ("usd_per_mtok_in", "usd_per_mtok_out", "usd_per_call")


@dataclass(frozen=True)
class FieldPrices:
    usd_per_mtok_in: float | None = None  # replaces the LLM's own for a call that sets the field
    usd_per_mtok_out: float | None = None
    usd_per_call: float = 0.0  # added to the cost of a call that sets the field


def accepted_fields(metadata) -> dict[str, FieldPrices]:
    """The fields ``metadata`` accepts, with their prices. An entry written wrongly accepts nothing
    (``LLM.clean`` refuses it when the LLM is saved through the admin, the API or the importer)."""
    entries = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {name: _prices(entry) for name, entry in entries.items() if not _entry_problems(entry)}


def gateway_fields_problems(metadata) -> list[str]:
    """What is wrong with ``metadata``'s ``gateway_fields``, in words (empty: nothing)."""
    entries = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, dict):
        return [f"`{METADATA_KEY}` must be an object: request field → its prices."]
    return [
        f"`{METADATA_KEY}.{name}`: {problem}" for name, entry in entries.items() for problem in _entry_problems(entry)
    ]


def _entry_problems(entry) -> list[str]:
    if not isinstance(entry, dict):
        return ["must be an object (empty: the LLM's own prices)."]
    problems = [f"unknown key {key!r} (use {', '.join(PRICE_KEYS)})." for key in entry if key not in PRICE_KEYS]
    for key in PRICE_KEYS:
        value = entry.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
        ):
            problems.append(f"{key} must be a non-negative number.")
    return problems


def _prices(entry: dict) -> FieldPrices:
    return FieldPrices(
        usd_per_mtok_in=entry.get("usd_per_mtok_in"),
        usd_per_mtok_out=entry.get("usd_per_mtok_out"),
        usd_per_call=entry.get("usd_per_call") or 0.0,
    )

"""Feedback with a quality score becomes an Outcome, so refits can learn from real traffic.

The routed text is stored as a Prompt of one prompt set (``ROUTERHUB_FEEDBACK_PROMPT_SET``), keyed
by a hash of its text so repeated prompts share a row, and split 60/10/30 by that hash like
imported data (a prompt never moves between splits).
"""

from __future__ import annotations

from django.conf import settings

from registry.embedders import get_embedder, text_sha256
from registry.importing import split_of
from registry.models import Outcome, Prompt, PromptSet
from routing.embedding_cache import embed_cached
from routing.models import Decision
from routing.prompt_text import embeddable


def outcome_from_feedback(*, decision: Decision) -> Outcome:
    prompt_set, _ = PromptSet.objects.get_or_create(
        name=settings.ROUTERHUB_FEEDBACK_PROMPT_SET,
        defaults={"description": "Routed prompts with quality feedback from API clients.", "source": "POST /api/v1/route/{id}/feedback"},
    )
    digest = text_sha256(decision.routed_text)
    prompt = Prompt.objects.filter(prompt_set=prompt_set, external_id=digest).first()
    if prompt is None:
        embedding, _ = embed_cached(embeddable(decision.routed_text))
        prompt, _ = Prompt.objects.get_or_create(
            prompt_set=prompt_set, external_id=digest,
            defaults={
                "text": decision.routed_text, "split": split_of(digest), "text_sha256": digest,
                "embedding": embedding, "embedder": get_embedder().name,
                "metadata": {"tenant": decision.tenant.name, "decision": str(decision.id)},
            },
        )
    outcome, _ = Outcome.objects.update_or_create(
        llm=decision.llm, prompt=prompt,
        defaults={
            "score": decision.quality_score, "source": Outcome.Source.FEEDBACK,
            "cost_usd": float(decision.actual_cost_usd) if decision.actual_cost_usd is not None else None,
            "latency_ms": decision.latency_ms, "input_tokens": decision.input_tokens, "output_tokens": decision.output_tokens,
        },
    )
    return outcome

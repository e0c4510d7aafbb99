"""Reads for validation sets built from traffic: a tenant's logged prompts, and what profiling one would cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings

from registry import embedding_store
from registry.embedders import Embedder
from registry.models import LLM, Outcome, Prompt, PromptSet, SharedEmbedding
from registry.tokens import count_tokens
from routing.models import GatewayExchange, Tenant
from routing.profiling.judges import TEMPLATES, Mode
from routing.prompt_text import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, embeddable, request_and_context

#: A verdict's expected length: a short justification and the score line (the judge may write up to
#: ``routing.profiling.judges.JUDGE_MAX_TOKENS``).
JUDGE_EXPECTED_OUTPUT_TOKENS = 128
CHAT_FRAMING = TOKENS_PER_MESSAGE + TOKENS_PER_REPLY  # one user message


@dataclass(frozen=True)
class LoggedPrompt:
    text: str  # the call's last user turn, as it was routed on (not yet redacted)
    logged_at: datetime


@dataclass
class LogRead:
    prompts: list[LoggedPrompt]
    calls: int = 0  # exchanges read
    unreadable: int = 0  # a request truncated by the log, or without a user turn with text


def logged_prompts(*, tenant: Tenant, since: datetime | None = None, until: datetime | None = None) -> LogRead:
    """The prompts of the tenant's logged gateway calls, oldest first.

    A call's prompt is its last user turn with text — what the gateway routed it on
    (``prompt_text.request_and_context``), cut to what is embedded. Earlier turns and system prompts
    are context, not a question an LLM can be asked on its own, so they are not taken.
    """
    exchanges = GatewayExchange.objects.filter(decision__tenant=tenant).order_by("created_at")
    if since is not None:
        exchanges = exchanges.filter(created_at__gte=since)
    if until is not None:
        exchanges = exchanges.filter(created_at__lt=until)
    read = LogRead(prompts=[])
    for request, created_at in exchanges.values_list("request", "created_at").iterator(chunk_size=2000):
        read.calls += 1
        text = _prompt_of(request)
        if text:
            read.prompts.append(LoggedPrompt(text=text, logged_at=created_at))
        else:
            read.unreadable += 1
    return read


def _prompt_of(request) -> str:
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages:
        return ""  # {"truncated": …}: the log kept only the start of a long body
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return ""
    if not any(m["role"] == "user" for m in messages):
        return ""
    turn, _ = request_and_context(messages)
    return embeddable(turn).strip()


def cached_embeddings(*, embedder: Embedder, texts: list[str], tenant_id: int) -> dict[int, np.ndarray]:
    """Embeddings of ``texts`` the route API already computed for this tenant (the shared cache, when on):
    row index → vector. Read only: nothing is refreshed or stored."""
    if not texts or not embedding_store.enabled(embedder):
        return {}
    scope = f"tenant:{tenant_id}"
    keys = {embedding_store.key_of(embedder, text, scope): i for i, text in enumerate(texts)}
    found: dict[int, np.ndarray] = {}
    key_list = list(keys)
    for start in range(0, len(key_list), 2000):
        rows = SharedEmbedding.objects.filter(key__in=key_list[start : start + 2000]).values_list("key", "embedding")
        for key, vector in rows:
            found[keys[bytes(key)]] = np.asarray(vector, dtype=np.float32)
    return found


@dataclass(frozen=True)
class LLMEstimate:
    llm: str
    prompts: int  # prompts it has no answer for yet
    answer_usd: float | None  # None: the LLM has no price
    judge_usd: float | None


@dataclass(frozen=True)
class ProfilingEstimate:
    prompts: int
    judge: str
    rows: tuple[LLMEstimate, ...]
    expected_output_tokens: int
    judge_prompt_tokens: int  # the judge's template, besides the prompt and the answer
    judge_output_tokens: int

    @property
    def answer_usd(self) -> float:
        return sum(r.answer_usd or 0.0 for r in self.rows)

    @property
    def judge_usd(self) -> float:
        return sum(r.judge_usd or 0.0 for r in self.rows)

    @property
    def total_usd(self) -> float:
        return self.answer_usd + self.judge_usd

    @property
    def calls(self) -> int:
        return 2 * sum(r.prompts for r in self.rows)  # one answer and one verdict per prompt and LLM

    @property
    def unpriced(self) -> list[str]:
        return [r.llm for r in self.rows if r.answer_usd is None or r.judge_usd is None]

    def lines(self) -> list[str]:
        """The estimate as a table of text lines (the command prints it, the admin shows it)."""
        out = [f"{'LLM':<40}{'prompts':>9}{'answers USD':>14}{'judge USD':>12}"]
        for r in self.rows:
            answer = "no price" if r.answer_usd is None else f"{r.answer_usd:.4f}"
            judge = "no price" if r.judge_usd is None else f"{r.judge_usd:.4f}"
            out.append(f"{r.llm:<40}{r.prompts:>9,}{answer:>14}{judge:>12}")
        out.append(
            f"{'total':<40}{sum(r.prompts for r in self.rows):>9,}{self.answer_usd:>14.4f}{self.judge_usd:>12.4f}"
        )
        out.append(
            f"{self.calls:,} calls (an answer and a verdict of {self.judge} per prompt and LLM); "
            f"estimated {self.total_usd:.4f} USD with answers of {self.expected_output_tokens} tokens"
        )
        if self.unpriced:
            out.append(f"not counted (no price): {', '.join(self.unpriced)}")
        return out


def profiled_llms(*, exclude_ids: tuple[int, ...] = ()) -> list[LLM]:
    """The LLMs a validation set's profiling job asks: every active LLM with an API, by name."""
    return list(LLM.objects.filter(is_active=True).exclude(api_base="").exclude(id__in=exclude_ids).order_by("name"))


def validation_prompt_ids(*, prompt_set: PromptSet) -> list[int]:
    return list(
        Prompt.objects.filter(prompt_set=prompt_set, split=Prompt.Split.VALIDATION)
        .order_by("id")
        .values_list("id", flat=True)
    )


def profiling_estimate(*, prompt_set: PromptSet, llms: list[LLM], judge: LLM) -> ProfilingEstimate:
    """What asking each LLM the set's prompts it has not answered and judging every answer is expected to cost.

    An answer is assumed ``ROUTERHUB_EXPECTED_OUTPUT_TOKENS`` long (the route API's assumption); a
    verdict reads the rubric template, the prompt and that answer, and writes
    :data:`JUDGE_EXPECTED_OUTPUT_TOKENS`. The job's cost cap bounds what it really spends.
    """
    texts = dict(Prompt.objects.filter(prompt_set=prompt_set, split=Prompt.Split.VALIDATION).values_list("id", "text"))
    ids = sorted(texts)
    tokens = dict(zip(ids, count_tokens([texts[i] for i in ids]))) if ids else {}
    template_tokens = count_tokens([TEMPLATES[Mode.RUBRIC]])[0]
    answered = set(Outcome.objects.filter(prompt_id__in=ids, llm__in=llms).values_list("llm_id", "prompt_id"))
    out_tokens = settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS
    rows = []
    for llm in llms:
        todo = [i for i in ids if (llm.id, i) not in answered]
        answer_cost = judge_cost = 0.0
        unpriced_answer = unpriced_judge = False
        for prompt_id in todo:
            cost = llm.expected_cost_usd(input_tokens=tokens[prompt_id] + CHAT_FRAMING, output_tokens=out_tokens)
            unpriced_answer |= cost is None
            answer_cost += cost or 0.0
            verdict = judge.expected_cost_usd(
                input_tokens=template_tokens + tokens[prompt_id] + out_tokens + CHAT_FRAMING,
                output_tokens=JUDGE_EXPECTED_OUTPUT_TOKENS,
            )
            unpriced_judge |= verdict is None
            judge_cost += verdict or 0.0
        rows.append(
            LLMEstimate(
                llm=llm.name,
                prompts=len(todo),
                answer_usd=None if unpriced_answer else answer_cost,
                judge_usd=None if unpriced_judge else judge_cost,
            )
        )
    return ProfilingEstimate(
        prompts=len(ids),
        judge=judge.name,
        rows=tuple(rows),
        expected_output_tokens=out_tokens,
        judge_prompt_tokens=template_tokens,
        judge_output_tokens=JUDGE_EXPECTED_OUTPUT_TOKENS,
    )

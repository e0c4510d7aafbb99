"""/metrics and the request log of the live gateway (uvicorn serving routerhub.asgi, the fake upstream):
known traffic in, the Prometheus text parsed by prometheus_client's parser, its figures matched with
what was sent and with what the database recorded."""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum

from routing.caches import reset_all
from routing.models import Decision
from tests.fixtures.gateway import QUESTION, ranking, settled, wait_for
from tests.fixtures.scrape import label_values, samples, total

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOKEN = "scrape-token-for-tests"
CHAT = "gateway:chat-completions"


@pytest.fixture
def scrape(gateway, settings):
    settings.ROUTERHUB_METRICS_TOKEN = TOKEN

    def scraped():
        response = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return samples(response.text)

    return scraped


def _chat(gateway, key: str, **body) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "routerhub-auto", "messages": QUESTION, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _delta(before, after, name, **labels) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_metrics_count_what_was_sent_and_what_it_cost(gateway, gateway_llms, upstream, tenant_and_key, scrape, caplog):
    tenant, key = tenant_and_key
    caplog.set_level(logging.INFO, logger="routerhub.requests")
    before = scrape()
    answers = [_chat(gateway, key) for _ in range(3)]
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "routerhub-auto", "messages": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as streamed:
        assert streamed.status_code == 200
        assert b"[DONE]" in streamed.read()
    unknown_key = _chat(gateway, "rh_not-a-key")
    unknown_model = _chat(gateway, key, model="no-such-model")
    assert [a.status_code for a in answers] == [200] * 3
    assert unknown_key.status_code == 401 and unknown_model.status_code == 404
    settled()
    decisions = Decision.objects.filter(tenant=tenant, source="gateway")
    assert decisions.count() == 4
    sums = decisions.aggregate(cost=Sum("actual_cost_usd"), input=Sum("input_tokens"), output=Sum("output_tokens"))
    after = _scraped_once(
        scrape,
        lambda s: _delta(before, s, "routerhub_tokens_total", tenant=tenant.name, kind="output") == sums["output"],
    )

    ok = {"endpoint": CHAT, "status": "200", "model": "routerhub-auto"}
    assert _delta(before, after, "routerhub_requests_total", **ok) == 4
    assert _delta(before, after, "routerhub_requests_total", endpoint=CHAT, status="401", model="") == 1
    assert _delta(before, after, "routerhub_requests_total", endpoint=CHAT, status="404", model="") == 1
    assert "no-such-model" not in label_values(after, "routerhub_requests_total", "model")  # never what a client typed
    # every request's total time, and the upstream stage of the three JSON answers as their headers said
    assert _delta(before, after, "routerhub_stage_seconds_count", endpoint=CHAT, stage="total") == 6
    assert _delta(before, after, "routerhub_stage_seconds_count", endpoint=CHAT, stage="upstream") == 3
    upstream_ms = [_timing(a.headers["server-timing"])["upstream"] for a in answers]
    assert _delta(before, after, "routerhub_stage_seconds_sum", endpoint=CHAT, stage="upstream") == pytest.approx(
        sum(upstream_ms) / 1e3, abs=1e-5
    )
    assert _delta(before, after, "routerhub_time_to_first_token_seconds_count") == 4
    # upstream calls by the LLM that answered
    answered = Counter(decisions.values_list("llm__name", flat=True))
    for llm, calls in answered.items():
        assert _delta(before, after, "routerhub_upstream_attempts_total", llm=llm, outcome="ok") == calls
    assert _delta(before, after, "routerhub_upstream_attempts_total") == 4
    # tokens and spend as metered
    assert _delta(before, after, "routerhub_tokens_total", tenant=tenant.name, kind="input") == sums["input"]
    assert _delta(before, after, "routerhub_spend_usd_total", tenant=tenant.name) == pytest.approx(
        float(sums["cost"]), rel=1e-9
    )
    assert sum(Decimal(a.headers["x-routerhub-cost-usd"]) for a in answers) > 0

    # one JSON line per request, tied to the answer and the upstream call by the request id
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "routerhub.requests"]
    chat_lines = [line for line in lines if line["route"] == CHAT]
    assert [line["status"] for line in chat_lines] == [200, 200, 200, 200, 401, 404]
    for answer, line in zip(answers, chat_lines, strict=False):
        assert line["request_id"] == answer.headers["x-request-id"]
        assert line["tenant"] == tenant.name and line["model"] == "routerhub-auto"
        assert line["llm"] == answer.headers["x-routerhub-model"]
        assert line["decision_id"] == answer.headers["x-routerhub-decision-id"]
        assert line["cost_usd"] == answer.headers["x-routerhub-cost-usd"]
        assert line["stages_ms"]["upstream"] == pytest.approx(_timing(answer.headers["server-timing"])["upstream"])
    stream_line = chat_lines[3]
    stream_decision = Decision.objects.get(id=stream_line["decision_id"])
    assert Decimal(stream_line["cost_usd"]) == stream_decision.actual_cost_usd
    assert stream_line["llm"] == stream_decision.llm.name
    sent_ids = [call.headers.get("x-request-id") for call in upstream.calls[-4:]]
    assert sent_ids == [line["request_id"] for line in chat_lines[:4]]
    assert all(QUESTION[0]["content"] not in r.getMessage() for r in caplog.records if r.name == "routerhub.requests")


def test_failed_attempts_timeouts_and_fallbacks_are_counted_by_llm(
    gateway, gateway_llms, upstream, tenant_and_key, scrape, settings
):
    _, key = tenant_and_key
    settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    first, second, third = ranking(key, **{"lambda": 0})[:3]
    upstream.set_behaviour(first, status=500)
    upstream.set_behaviour(second, latency_seconds=3)
    before = scrape()
    answer = _chat(gateway, key, routerhub={"lambda": 0})
    assert answer.status_code == 200 and answer.headers["x-routerhub-model"] == third
    settled()
    after = scrape()
    for llm, outcome in ((first, "http_5xx"), (second, "timeout"), (third, "ok")):
        assert _delta(before, after, "routerhub_upstream_attempts_total", llm=llm, outcome=outcome) == 1
    assert _delta(before, after, "routerhub_upstream_attempts_total") == 3
    assert _delta(before, after, "routerhub_upstream_fallbacks_total", llm=first) == 1
    assert _delta(before, after, "routerhub_upstream_fallbacks_total", llm=second) == 1
    assert _delta(before, after, "routerhub_upstream_fallbacks_total") == 2


def test_tenant_labels_stay_bounded_however_many_tenants_call(gateway, gateway_llms, make_tenant, scrape, monkeypatch):
    monkeypatch.setattr("routing.selectors.tenancy.METRICS_TENANTS", 2)
    reset_all()
    tenants = [make_tenant(name=f"tenant-{i:02d}") for i in range(7)]
    before = scrape()
    for _, key in tenants:
        assert _chat(gateway, key).status_code == 200
    settled()
    costs = {t.name: Decision.objects.filter(tenant=t).aggregate(c=Sum("actual_cost_usd"))["c"] for t, _ in tenants}
    spent = float(sum(costs.values()))
    after = _scraped_once(
        scrape, lambda s: _delta(before, s, "routerhub_spend_usd_total") == pytest.approx(spent, rel=1e-9)
    )
    spent_by = {
        t
        for t in label_values(after, "routerhub_spend_usd_total", "tenant")
        if _delta(before, after, "routerhub_spend_usd_total", tenant=t)
    }
    assert spent_by == {"tenant-00", "tenant-01", "other"}  # the two oldest by name, the rest folded
    assert _delta(before, after, "routerhub_spend_usd_total", tenant="other") == pytest.approx(
        float(sum(cost for name, cost in costs.items() if name not in ("tenant-00", "tenant-01"))), rel=1e-9
    )
    assert _delta(before, after, "routerhub_spend_usd_total", tenant="tenant-00") == pytest.approx(
        float(costs["tenant-00"]), rel=1e-9
    )


def _scraped_once(scrape, counted):
    """A scrape taken once ``counted`` holds of it: spend and tokens are counted just after the call's
    row is written, so the last call's may come a moment after the test saw every row."""
    latest = []

    def done():
        latest[:] = [scrape()]
        return counted(latest[0])

    wait_for(done)
    return latest[0]


def _timing(header: str) -> dict[str, float]:
    from routing.request_log import server_timing

    return server_timing(header)

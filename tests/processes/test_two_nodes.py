"""Two web "nodes" on one PostgreSQL and one Redis, as the multi-node layout of docs/operations.md
runs them: each node its own web process (scripts/web.sh) on its own port, Django's cache on the
shared Redis (``ROUTERHUB_CACHE_URL``), calls spread over both, the ledger upstream
(``tests/fakes/ledger_upstream.py``) answering.

What holds across nodes, and which test shows it:

- a per-key rate limit counts the requests to both nodes together, and every call answered with a
  200 has its decision in the database: here;
- a key revoked in one node's admin is refused by that node at once and by the other within
  ``ROUTERHUB_GATEWAY_CACHE_SECONDS``: here;
- budgets hold within the documented bound against the upstream's own ledger with one node killed
  (SIGKILL) mid-burst, and nothing answered is lost: ``test_budget_redteam.py``
  (``test_a_web_process_killed_mid_burst_loses_no_spend``), on the same two-process layout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
import redis
from django.contrib.auth import get_user_model

from routing.models import Decision
from tests.fixtures.web import csrf_token, staff_session
from tests.processes.conftest import web_pair
from tests.processes.redteam import Call, WebServer, burst, tag_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FLASH = "gemini-1.5-flash-002"
RATE = 25  # requests per API key per day: the key's limit on each node
CACHE_SECONDS = 1.0
NODE_ENV = {
    "ROUTERHUB_DB_POOL_MAX_SIZE": "4",
    "ROUTERHUB_THROTTLE_API_KEY": f"{RATE}/day",
    "ROUTERHUB_GATEWAY_CACHE_SECONDS": str(CACHE_SECONDS),
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture
def cache_url(broker_url):
    """A database of the session's Redis of its own, emptied: counters of an earlier run (whose API
    key ids a fresh test database hands out again) must not count here."""
    url = broker_url.rsplit("/", 1)[0] + "/3"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def nodes(transactional_db, ledger_upstream, cache_url, tmp_path, request):
    """Two web processes on the test database and the shared cache, serving the slice's LLMs at the
    ledger upstream."""
    with web_pair(
        request, tmp_path, upstream_url=ledger_upstream.url, log_name="node", ROUTERHUB_CACHE_URL=cache_url, **NODE_ENV
    ) as servers:
        yield servers


def chat(tag: str) -> dict:
    return {"model": FLASH, "max_tokens": 20, "messages": [{"role": "user", "content": f"[rt:{tag} len=10] Hello."}]}


def day() -> int:
    return int(time.time() // 86400)  # the rate's window, aligned to the clock (routing/throttling.py)


def test_a_keys_rate_limit_counts_its_requests_to_both_nodes(nodes, ledger_upstream, make_tenant):
    _, key = make_tenant(name="limited", budget_usd="10")
    sent = 2 * RATE
    calls = [Call(tag=f"limited-{i}", tenant="limited", label="normal", body=chat(f"limited-{i}")) for i in range(sent)]
    window = day()
    results = asyncio.run(burst(calls, nodes, {"limited": key}, per_tenant=4))
    if day() != window:
        pytest.skip("the burst crossed midnight UTC: the key's window began again part-way")

    by_node = {node.index: Counter(r.status for r in results if r.server == node.index) for node in nodes}
    assert [sum(seen.values()) for seen in by_node.values()] == [RATE, RATE], by_node  # half to each node
    statuses = Counter(r.status for r in results)
    # What one node alone gives for these requests: the limit answered, the rest refused. Counted per
    # node, each would answer all its RATE requests and refuse none.
    assert statuses == {200: RATE, 429: sent - RATE}, by_node
    assert all(seen[429] for seen in by_node.values()), by_node  # each node refused some: it saw the other's

    answered = {r.call.tag: r.decision_id for r in results if r.status == 200}
    decisions = {tag_of(d.routed_text): str(d.id) for d in Decision.objects.filter(tenant__name="limited")}
    assert decisions == answered  # every answer has its decision; a refused call leaves none
    billed = {entry["tag"] for entry in ledger_upstream.settled_ledger()}
    assert billed == set(answered)  # a refused call never reached the LLM


def test_a_key_revoked_on_one_node_is_refused_by_both_within_the_cache_seconds(nodes, make_tenant, settings):
    tenant, key = make_tenant(name="revoked", budget_usd="10")
    api_key = tenant.api_keys.get()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # one the nodes know
    get_user_model().objects.create_superuser("operator", password="pw-123456")

    def send(node: WebServer, tag: str) -> int:
        body = chat(tag)
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(node.url + "/v1/chat/completions", json=body, headers=headers, timeout=30).status_code

    # Each node authenticates the key, and so keeps it for the cache seconds.
    assert [send(node, f"revoked-warm-{node.index}") for node in nodes] == [200, 200]
    staff = staff_session(nodes[0].url, "operator", "pw-123456")
    try:
        changelist = "/admin/routing/apikey/"
        action = {"csrfmiddlewaretoken": csrf_token(staff, changelist), "action": "revoke"}
        response = staff.post(changelist, data={**action, "_selected_action": str(api_key.pk)})
    finally:
        staff.close()
    revoked = time.monotonic()
    assert response.status_code == 302, response.text[-2000:]
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None

    refused_after: dict[int, float] = {}
    statuses: list[tuple[int, int]] = []
    while len(refused_after) < len(nodes) and time.monotonic() - revoked < CACHE_SECONDS + 5:
        for node in nodes:
            if node.index not in refused_after:
                status = send(node, f"revoked-{len(statuses)}")
                statuses.append((node.index, status))
                if status == 401:
                    refused_after[node.index] = time.monotonic() - revoked
        time.sleep(0.2)

    assert sorted(refused_after) == [0, 1], statuses
    assert statuses[0] == (0, 401), statuses  # the node that revoked it forgets the key at once
    # the other within the cache seconds, plus one poll and one request's time
    assert refused_after[1] < CACHE_SECONDS + 1.0, refused_after
    assert {status for _, status in statuses} <= {200, 401}, statuses
    assert [send(node, f"revoked-after-{node.index}") for node in nodes] == [401, 401]  # and stays refused

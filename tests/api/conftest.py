"""Fixtures for the route API: a small real data slice, a fitted router, tenants with keys."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test import Client

from registry.importing import dataset_import
from registry.models import PromptSet
from routing import budgets, decisions, embedding_cache, runtime
from routing.services import routing_state_fit
from routing.tenants import api_key_create, tenant_create
from tests.registry.conftest import write_slice

ROUTE = "/api/v1/route"

# The live server (Django's ThreadedWSGIServer) listens with socketserver's backlog of 5: a burst of
# 60 simultaneous connections overflows it and the kernel resets some. Production runs gunicorn
# (backlog 2048); give the test server a real backlog too. Set at import, before any live server
# of the session starts.
ThreadedWSGIServer.request_queue_size = 256


@pytest.fixture(autouse=True)
def fresh_caches(settings):
    """Per-process caches must not carry one test's router, periods or λ into the next."""
    settings.ROUTERHUB_PACING_REFRESH_SECONDS = 0

    def reset():
        runtime.reset()
        budgets.reset_caches()
        decisions.reset_caches()
        embedding_cache.clear()

    reset()
    yield
    reset()


@pytest.fixture(scope="session")
def api_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("api") / "mmlu-slice", prompts=200)


@pytest.fixture
def prompt_set(api_slice, db) -> PromptSet:
    dataset_import(directory=api_slice, name="mmlu-slice", say=lambda _: None)
    return PromptSet.objects.get(name="mmlu-slice")


@pytest.fixture
def fitted(prompt_set):
    """An active UniRoute K-means state over the slice's 29 LLMs (hyper-parameters as given: no tuning)."""
    state = routing_state_fit(prompt_set=prompt_set, strategy="uniroute_kmeans", params={"n_clusters": 4}, tune=False)
    runtime.reset()
    return state


@pytest.fixture
def make_tenant(db):
    def make(name="acme", budget_usd="100", **fields):
        tenant = tenant_create(name=name, budget_usd=Decimal(budget_usd), **fields)
        return tenant, api_key_create(tenant=tenant).secret

    return make


@pytest.fixture
def tenant_and_key(make_tenant):
    return make_tenant()


@pytest.fixture
def api(tenant_and_key):
    """A test client that sends the default tenant's API key."""
    return ApiClient(tenant_and_key[1])


class ApiClient:
    def __init__(self, key: str | None = None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"} if self.key else {}

    def post(self, path: str, data=None, **extra):
        import json

        body = data if isinstance(data, (str, bytes)) else json.dumps(data)
        return self.client.post(path, body, content_type="application/json", **self._headers(), **extra)

    def get(self, path: str, params=None, **extra):
        return self.client.get(path, params or {}, **self._headers(), **extra)

    def patch(self, path: str, data=None, **extra):
        import json

        return self.client.patch(path, json.dumps(data), content_type="application/json", **self._headers(), **extra)

    def route(self, prompt="What is the derivative of x**2 with respect to x?", **options):
        return self.post(ROUTE, {"prompt": prompt, **options})


def sample_prompts(n: int) -> list[str]:
    """Real MMLU-Pro questions (test split of nothing in particular: the first n of the slice)."""
    from registry.models import Prompt

    return list(Prompt.objects.order_by("id").values_list("text", flat=True)[:n])


def cheapest_llm(input_tokens: int) -> str:
    """Name of the LLM with the lowest estimated cost for a prompt of ``input_tokens`` tokens."""
    from django.conf import settings

    from registry.models import LLM

    output_tokens = settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS
    return min(LLM.objects.all(), key=lambda llm: (llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens), llm.name)).name

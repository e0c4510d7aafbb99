"""End to end on real MMLU-Pro questions: a specialist LLM registered through the staff API, profiled by a
real Celery worker, is routed its subject at λ = 0 — and little else.

The router is fitted on a quarter of MMLU-Pro (every fourth question, all 14 categories) and a third of
its LLMs (every third), with the data set's own MiniLM embeddings and hyper-parameters as
a fit without tuning gives them. The new LLM is the fake OpenAI-compatible server answering law questions right and every other
question wrong (a wrong letter, garbage, or a body that is not JSON): the per-LLM profile
(routing/strategies/smoothing.py) must keep what its own answers show instead of smoothing it into a
generalist's shape.
"""

from __future__ import annotations

import gzip
import time

import pytest
from django.contrib.auth import get_user_model

from registry.models import Outcome, Prompt
from routing.models import Job, LLMProfile, RoutingState, Tenant
from routing.services import tenancy
from routing.services.state import routing_state_fit
from tests.fakes.fake_openai import FakeOpenAI, category_expert
from tests.fixtures.api import ApiClient
from tests.fixtures.slices import DEMO_DATA, imported_slice
from tests.processes.test_worker_e2e import wait_for_job

pytestmark = pytest.mark.slow

SUBJECT = "law"
EMBEDDER = "minilm-onnx-int8"  # the embedder of the data set's embeddings file: no prompt is embedded at import
EVERY = 4  # every fourth question: ~300 validation and ~900 test prompts, ~75 of them law
LLMS_EVERY = 3  # and every third LLM: 10 of the 29
OTHERS_ROUTED = 100  # the other categories' test prompts asked, spread over all of them
MIN_RECALL, MAX_FALSE_SHARE = 0.45, 0.10


@pytest.fixture(scope="module")
def slice_of_mmlu_pro(tmp_path_factory):
    """Every fourth MMLU-Pro question with every third LLM's outcomes, those LLMs and the (linked)
    embeddings file."""
    target = tmp_path_factory.mktemp("mmlu-slice")
    models = (DEMO_DATA / "models.csv").read_text().splitlines(keepends=True)
    kept_models = models[1::LLMS_EVERY]
    (target / "models.csv").write_text("".join([models[0], *kept_models]))
    names = {line.split(",", 1)[0] for line in kept_models}
    kept = set()
    with gzip.open(DEMO_DATA / "prompts.jsonl.gz", "rt", encoding="utf-8") as source:
        with open(target / "prompts.jsonl", "w", encoding="utf-8") as out:
            for index, line in enumerate(source):
                if index % EVERY == 0:
                    out.write(line)
                    kept.add(line.split('"id": ', 1)[1].split(",", 1)[0].strip('"'))
    with gzip.open(DEMO_DATA / "outcomes.csv.gz", "rt", encoding="utf-8") as source:
        with open(target / "outcomes.csv", "w", encoding="utf-8") as out:
            out.write(next(source))
            out.writelines(line for line in source if line.split(",", 2)[0] in kept and line.split(",", 2)[1] in names)
    for embeddings in DEMO_DATA.glob("embeddings-*.npz"):
        (target / embeddings.name).symlink_to(embeddings)
    return target


def test_a_specialist_registered_through_the_staff_api_gets_its_subject_at_lambda_zero(
    worker, slice_of_mmlu_pro, settings
):
    settings.ROUTERHUB_EMBEDDER = EMBEDDER
    clock = [time.monotonic()]
    prompt_set = imported_slice(slice_of_mmlu_pro, name="mmlu-slice")
    clock.append(time.monotonic())
    assert Prompt.objects.filter(prompt_set=prompt_set, embedder__startswith="all-MiniLM").count() == (
        Prompt.objects.filter(prompt_set=prompt_set).count()
    )
    state = routing_state_fit(prompt_set=prompt_set, strategy="uniroute_kmeans", params={}, tune=False)
    clock.append(time.monotonic())
    test = Prompt.objects.filter(prompt_set=prompt_set, split=Prompt.Split.TEST).order_by("id")
    subject_prompts = list(test.filter(category=SUBJECT).values_list("text", flat=True))
    others = list(test.exclude(category=SUBJECT).values_list("text", flat=True))
    other_prompts = others[:: len(others) // OTHERS_ROUTED][:OTHERS_ROUTED]
    assert len(subject_prompts) >= 60

    staff = ApiClient()
    staff.client.force_login(get_user_model().objects.create_superuser("ops", password="ops-password-123"))
    key = tenancy.api_key_create(tenant=Tenant.objects.create(name="acme", budget_usd=100), name="e2e").secret
    tenant = ApiClient(key)

    def routed_to(texts) -> list[str]:
        names = []
        for text in texts:
            response = tenant.route(text, **{"lambda": 0})
            assert response.status_code == 200, response.content[:2000]
            names.append(response.json()["llm"]["name"])
        return names

    expert = category_expert(
        Prompt.objects.filter(prompt_set=prompt_set).values_list("text", "answer", "category"), good={SUBJECT}
    )
    with FakeOpenAI(policy=expert) as server:
        started = time.monotonic()
        registered = staff.post(
            "/api/v1/llms",
            {
                "name": "fake-law",
                "api_base": server.url,
                "api_model": "law-1",
                "usd_per_mtok_in": 0.5,
                "usd_per_mtok_out": 1.5,
            },
        )
        assert registered.status_code == 201, registered.content
        job = wait_for_job(registered.json()["profiling_job"], worker)
        profiled_in = time.monotonic() - started
    assert job.status == Job.Status.SUCCEEDED, job.error

    validation = Prompt.objects.filter(id__in=state.validation_prompt_ids)
    right = Outcome.objects.filter(llm__name="fake-law", source=Outcome.Source.PROFILED, score=1.0)
    assert right.count() == validation.filter(category=SUBJECT).count() >= 20
    assert Outcome.objects.filter(llm__name="fake-law").count() == validation.count()
    choice = LLMProfile.objects.get(llm__name="fake-law", state=state).smoothing
    assert choice["departs"] is True, choice
    assert choice["clusters"] > state.params["n_clusters"] or choice["neighbours"] > 0, choice

    clock.append(time.monotonic())
    subject_routes = routed_to(subject_prompts)
    other_routes = routed_to(other_prompts)
    clock.append(time.monotonic())
    recall = subject_routes.count("fake-law") / len(subject_routes)
    false_share = other_routes.count("fake-law") / len(other_routes)
    print(
        f"\nprofiled {validation.count()} validation prompts in {profiled_in:.1f} s; "
        f"{choice}; recall {recall:.2f} of {len(subject_routes)}, false share {false_share:.3f} of {len(other_routes)}; "
        f"import, fit, profile, route: {', '.join(f'{b - a:.1f}' for a, b in zip(clock, clock[1:]))} s"
    )
    assert recall >= MIN_RECALL and false_share <= MAX_FALSE_SHARE, (recall, false_share)
    assert RoutingState.objects.get().version == state.version  # no refit

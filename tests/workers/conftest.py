"""Fixtures for the workers' tests: a small multiple-choice data set in the MMLU-Pro format, fitted.

The tests use the hashing test embedder, which cannot tell MMLU-Pro's subjects apart (math and law
questions share most of their words), so the data set is synthetic: three subjects, each with its
own vocabulary, questions with lettered options and a gold letter, and four LLMs with known
accuracies and prices. K-means then finds one cluster per subject, and "an LLM that is right only
on math" has a profile any router must use — which is what the tests check.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.importing import dataset_import, split_of
from registry.models import Prompt, PromptSet
from routing import runtime
from routing.models import RoutingState
from routing.services import routing_state_fit
from tests.fakes.fake_openai import category_expert

VOCABULARY = {
    "math": "integer polynomial derivative integral matrix vector prime divisor equation logarithm fraction theorem "
    "eigenvalue quotient exponent sine cosine tangent parabola hyperbola asymptote summation factorial modulus",
    "law": "plaintiff defendant statute contract tort negligence jurisdiction appellate verdict injunction testimony "
    "precedent felony misdemeanor easement bailment estoppel indictment subpoena custody arbitration lien",
    "cooking": "oven flour butter simmer saute whisk marinade braise dough yeast skillet garlic basil oregano caramel "
    "custard broth vinegar knead glaze poach blanch roux meringue",
}
GOOD_CATEGORY = "math"
# name: (accuracy per category, USD per 1M input and output tokens)
EXISTING_LLMS = {
    "big-generalist": ({"math": 0.8, "law": 0.8, "cooking": 0.8}, 10.0),
    "mid-generalist": ({"math": 0.6, "law": 0.6, "cooking": 0.7}, 1.0),
    "law-specialist": ({"math": 0.2, "law": 0.95, "cooking": 0.3}, 0.5),
    "small": ({"math": 0.3, "law": 0.3, "cooking": 0.4}, 0.1),
}
VALIDATION_PER_CATEGORY = 12


def write_subjects_data(target: Path, *, validation_per_category: int = VALIDATION_PER_CATEGORY, seed: int = 7) -> Path:
    """prompts.jsonl, models.csv and outcomes.csv of the synthetic three-subject set.

    Each subject gets questions until ``validation_per_category`` of them land in the validation
    split (the importer splits 60/10/30 by a hash of the id): about 120 questions per subject.
    """
    rng = random.Random(seed)
    target.mkdir(parents=True, exist_ok=True)
    prompts, outcomes = [], []
    for category, words in VOCABULARY.items():
        words = words.split()
        in_validation = 0
        for i in itertools.count():
            if in_validation == validation_per_category:
                break
            question = "Which " + " ".join(rng.sample(words, 9)) + "?"
            options = [" ".join(rng.sample(words, 2)) for _ in range(4)]
            prompt_id = f"{category}-{i:03d}"
            in_validation += split_of(prompt_id) == Prompt.Split.VALIDATION
            prompts.append({"id": prompt_id, "category": category, "question": question, "options": options, "answer": "ABCD"[rng.randrange(4)]})
            for name, (accuracy, _) in EXISTING_LLMS.items():
                outcomes.append((prompt_id, name, int(rng.random() < accuracy[category])))
    with open(target / "prompts.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in prompts)
    with open(target / "outcomes.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("prompt_id", "model", "correct"), *outcomes])
    with open(target / "models.csv", "w", encoding="utf-8", newline="") as handle:
        rows = [(name, price, price) for name, (_, price) in EXISTING_LLMS.items()]
        csv.writer(handle, lineterminator="\n").writerows([("model", "usd_per_mtok_in", "usd_per_mtok_out"), *rows])
    return target


@pytest.fixture(scope="session")
def subjects_data(tmp_path_factory):
    return write_subjects_data(tmp_path_factory.mktemp("workers") / "subjects")


@dataclass
class RoutingData:
    prompt_set: PromptSet
    state: RoutingState

    def validation_prompts(self):
        return Prompt.objects.filter(id__in=self.state.validation_prompt_ids).order_by("id")

    def expert_policy(self, good=(GOOD_CATEGORY,)):
        prompts = Prompt.objects.filter(prompt_set=self.prompt_set).values_list("text", "answer", "category")
        return category_expert(prompts, good=set(good))


def load_routing_data(directory: Path) -> RoutingData:
    dataset_import(directory=directory, name="subjects", say=lambda _: None)
    prompt_set = PromptSet.objects.get(name="subjects")
    # A weak prior (METHODS.md: smoothing of small clusters) keeps the ~15 validation answers per
    # subject in charge of the profile.
    state = routing_state_fit(prompt_set=prompt_set, strategy="uniroute_kmeans", params={"n_clusters": len(VOCABULARY), "prior_strength": 1.0})
    runtime.reset()
    return RoutingData(prompt_set=prompt_set, state=state)


@pytest.fixture
def routing_data(db, subjects_data):
    yield load_routing_data(subjects_data)
    runtime.reset()


# -- a real broker and a real worker process (test_worker_e2e.py) ------------------------------------
@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    from tests.workers.processes import start_redis, stop_process

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(process)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, broker_url, tmp_path_factory):
    """One worker for the session, consuming a queue of its own, on the test database."""
    from django.db import connection

    from routerhub.celery import app
    from tests.workers.processes import point_producer_at, restore_producer, start_worker

    worker = start_worker(
        broker_url=broker_url, database_name=connection.settings_dict["NAME"],
        log_path=tmp_path_factory.mktemp("worker") / "worker.log",
    )
    previous = point_producer_at(app, broker_url=broker_url, queue=worker.queue)
    try:
        yield worker
    finally:
        restore_producer(app, previous)
        worker.stop()


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """The worker, with committed rows it can see (``transactional_db``)."""
    runtime.reset()
    yield celery_worker_process
    runtime.reset()
    assert celery_worker_process.process.poll() is None, celery_worker_process.log()[-4000:]

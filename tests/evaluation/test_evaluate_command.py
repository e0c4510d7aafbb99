"""`manage.py evaluate` on an imported data set whose prompts have categories: what a user reads."""

import csv
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from evaluation.models import EvaluationRun
from registry.importing import dataset_import

pytestmark = pytest.mark.django_db

TOPICS = {
    "astronomy": "planet orbit star galaxy telescope comet nebula moon",
    "cooking": "recipe oven flour butter simmer garlic onion sauce",
    "law": "contract court statute tort plaintiff appeal clause verdict",
}
# Per model: accuracy on each topic, and a price; the best model differs by topic.
MODELS = {
    "astro-pro": ((0.9, 0.3, 0.3), 2.0),
    "chef": ((0.3, 0.9, 0.35), 1.5),
    "judge": ((0.35, 0.3, 0.9), 1.8),
    "all-round": ((0.7, 0.7, 0.7), 4.0),
    "cheap": ((0.4, 0.4, 0.4), 0.2),
    "mid-a": ((0.6, 0.5, 0.4), 1.0),
    "mid-b": ((0.4, 0.6, 0.5), 1.0),
    "mid-c": ((0.5, 0.4, 0.6), 1.0),
    "weak": ((0.2, 0.2, 0.2), 0.1),
}


@pytest.fixture
def topics_set(tmp_path):
    rng = np.random.default_rng(0)
    words = {topic: vocabulary.split() for topic, vocabulary in TOPICS.items()}
    with open(tmp_path / "prompts.jsonl", "w") as prompts, open(tmp_path / "outcomes.csv", "w", newline="") as outcomes:
        writer = csv.writer(outcomes)
        writer.writerow(["prompt_id", "model", "correct"])
        for i in range(450):
            topic_index = i % 3
            topic = list(TOPICS)[topic_index]
            text = " ".join(rng.choice(words[topic], 6)) + f" question {i}?"
            prompts.write(json.dumps({"id": i, "question": text, "category": topic}) + "\n")
            for model, (accuracy, _) in MODELS.items():
                writer.writerow([i, model, int(rng.random() < accuracy[topic_index])])
    with open(tmp_path / "models.csv", "w", newline="") as models:
        writer = csv.writer(models)
        writer.writerow(["model", "usd_per_query_mean"])
        writer.writerows([model, price] for model, (_, price) in MODELS.items())
    dataset_import(directory=tmp_path, name="topics", say=lambda _: None)
    return tmp_path


def test_evaluate_reports_tuned_choices_specialist_recall_and_gains_by_category(topics_set, tmp_path, capsys):
    out_json = tmp_path / "result.json"
    call_command(
        "evaluate",
        "--dataset",
        "topics",
        "--trials",
        "2",
        "--strategies",
        "uniroute_kmeans,clairvoyant",
        "--variants",
        "uniroute_kmeans:prior_strength=500",
        "--json",
        str(out_json),
    )
    output = capsys.readouterr().out
    assert "tuning on, full budget" in output
    assert "uniroute_kmeans[prior_strength=500]" in output  # a post-fit variant, scored as a method
    assert "chosen hyper-parameters (how many splits chose each value):" in output
    assert "uniroute_kmeans: n_clusters:" in output
    assert "specialist recall at λ = 0" in output
    assert "gain in area vs zero by category" in output
    for topic in TOPICS:
        assert topic in output
    result = json.loads(out_json.read_text())
    assert set(result["per_category"]) == set(TOPICS)
    assert result["specialists"]["clairvoyant"]["recall"] > 0.5
    assert (
        result["methods"]["oracle"]["area"]
        > result["methods"]["clairvoyant"]["area"]
        > result["methods"]["zero"]["area"]
    )
    assert len(result["tuning"]["uniroute_kmeans"]["per_trial"]) == 2
    run = EvaluationRun.objects.get()
    assert run.results["specialists"] == result["specialists"] and run.protocol["tuning_on"] is True


def test_evaluate_runs_the_domain_shift_protocol(topics_set, capsys):
    call_command(
        "evaluate",
        "--dataset",
        "topics",
        "--trials",
        "2",
        "--strategies",
        "knn",
        "--protocol",
        "domain-shift",
        "--no-tuning",
    )
    output = capsys.readouterr().out
    assert "Running 2 domain-shift splits of zero, knn (seed 0, tuning off)" in output
    assert EvaluationRun.objects.get().protocol["name"] == "domain-shift"


def test_evaluate_says_when_the_data_set_has_no_such_categories(topics_set, capsys):
    with pytest.raises(
        CommandError, match="the domain-shift protocol needs categories, and no prompt of 'topics' has a 'subject'"
    ):
        call_command(
            "evaluate", "--dataset", "topics", "--trials", "1", "--categories", "subject", "--protocol", "domain-shift"
        )
    call_command(
        "evaluate",
        "--dataset",
        "topics",
        "--trials",
        "1",
        "--strategies",
        "knn",
        "--categories",
        "subject",
        "--no-tuning",
    )
    assert "no prompt has a 'subject': no per-category gains or specialist recall" in capsys.readouterr().out
    with pytest.raises(CommandError, match="unknown strategies: magic"):
        call_command("evaluate", "--dataset", "topics", "--strategies", "magic")


def test_online_replay_prints_each_checkpoint_and_stores_the_run(topics_set, tmp_path, capsys):
    out_json = tmp_path / "online.json"
    call_command(
        "evaluate",
        "--dataset",
        "topics",
        "--protocol",
        "online",
        "--trials",
        "1",
        "--no-tuning",
        "--params",
        '{"uniroute_kmeans": {"n_clusters": 3}}',
        "--events",
        "80",
        "--checkpoint-every",
        "40",
        "--reprofile-every",
        "20",
        "--new-llms",
        "1",
        "--online-specialists",
        "1",
        "--json",
        str(out_json),
    )
    out = capsys.readouterr().out
    assert "uniroute_kmeans, 1 splits, 80–80 events per split, feedback every 20 events, λ ~ uniform[0, 1]" in out
    assert "new LLM registered with 50 validation prompts (1 LLM-splits)" in out
    assert "specialists registered with 50 validation prompts (1 specialist-splits)" in out
    result = json.loads(out_json.read_text())
    assert [row["events"] for row in result["checkpoints"]] == [0, 40, 80]
    assert result["checkpoints"][0]["static_area"] == result["checkpoints"][0]["learning_area"]
    assert result["specialists"][-1]["categories"][0] in TOPICS
    run = EvaluationRun.objects.get()
    assert run.protocol["name"] == "online" and run.strategies == ["uniroute_kmeans"]
    assert run.results["checkpoints"] == result["checkpoints"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--events", "100"], "--events applies only to --protocol online"),
        (["--events", "100", "--exploration", "0.1"], "--events, --exploration apply only to --protocol online"),
        (
            ["--protocol", "online", "--strategies", "knn,uniroute_kmeans"],
            "--protocol online replays one strategy, got 2",
        ),
        (["--protocol", "online", "--variants", "uniroute_kmeans:smoothing=tuned"], "--variants do not apply"),
        (
            ["--protocol", "online", "--checkpoint-every", "100", "--reprofile-every", "30"],
            "--checkpoint-every (100) must be a multiple of --reprofile-every (30)",
        ),
        (["--protocol", "online", "--exploration", "2"], "--exploration must lie in [0, 1], got 2.0"),
        (["--protocol", "online", "--new-llm-prompts", "0"], "--new-llm-prompts must be at least 1, got 0"),
    ],
)
def test_online_argument_errors_name_the_option(arguments, message):
    with pytest.raises(CommandError) as error:
        call_command("evaluate", "--dataset", "topics", "--trials", "1", *arguments)
    assert message in str(error.value)


def test_online_refuses_a_strategy_that_cannot_learn_from_feedback(topics_set):
    with pytest.raises(CommandError) as error:
        call_command("evaluate", "--dataset", "topics", "--protocol", "online", "--strategies", "knn", "--trials", "1")
    assert "knn cannot learn from feedback: its profiles are tied to the validation prompts" in str(error.value)

import gzip
import shutil

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from registry.data_format import DataFormatError
from registry.importing import dataset_import, split_of
from registry.models import LLM, Outcome, Prompt, PromptSet
from tests.fixtures.slices import write_slice

pytestmark = pytest.mark.django_db


def database_snapshot():
    return (
        PromptSet.objects.count(),
        Prompt.objects.count(),
        LLM.objects.count(),
        sorted(Outcome.objects.values_list("llm__name", "prompt__external_id", "score")),
    )


def run_import(directory, name="mmlu-slice"):
    return dataset_import(directory=directory, name=name, say=lambda _: None)


def test_import_loads_prompts_llms_outcomes_and_embeddings(slice_dir):
    summary = run_import(slice_dir)
    assert summary.prompts == summary.prompts_created == 120
    assert summary.llms_created == 29
    assert summary.outcomes_created == Outcome.objects.count() > 120 * 25
    assert not Prompt.objects.filter(embedding__isnull=True).exists()
    prompt = Prompt.objects.get(external_id="70")
    assert prompt.text.splitlines()[1].startswith("A. ")
    assert prompt.category and prompt.answer in "ABCDEFGHIJ"
    assert prompt.metadata["src"]
    gemini = LLM.objects.get(name="gemini-1.5-pro-002")
    assert (gemini.usd_per_mtok_in, gemini.usd_per_mtok_out) == (1.25, 5.0)
    assert any("per-token prices for 29 LLMs" in line for line in summary.cost_basis)


def test_reimport_changes_nothing(slice_dir):
    run_import(slice_dir)
    before = database_snapshot()
    summary = run_import(slice_dir)
    assert summary.changes == 0
    assert database_snapshot() == before


def test_reimport_of_an_updated_file_updates_rows(slice_dir):
    run_import(slice_dir)
    path = slice_dir / "outcomes.csv.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    prompt_id, model, correct = lines[1].split(",")
    lines[1] = f"{prompt_id},{model},{1 - float(correct):g}"
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines) + "\n")
    summary = run_import(slice_dir)
    assert (summary.outcomes_created, summary.outcomes_updated) == (0, 1)
    outcome = Outcome.objects.get(llm__name=model, prompt__external_id=prompt_id)
    assert outcome.score == 1 - float(correct)


def test_plain_files_are_accepted_as_well_as_gzip(tmp_path):
    summary = run_import(write_slice(tmp_path / "plain", prompts=30, gzip_files=False), name="plain")
    assert summary.prompts_created == 30 and summary.outcomes_created > 0


def test_splits_are_stable_and_roughly_60_10_30(slice_dir):
    run_import(slice_dir)
    splits = [split_of(str(i)) for i in range(10_000)]
    assert abs(splits.count("train") / 10_000 - 0.6) < 0.02
    assert abs(splits.count("validation") / 10_000 - 0.1) < 0.02
    assert all(p.split == split_of(p.external_id) for p in Prompt.objects.all())


def corrupt_outcome_line(directory, line_number, new_line):
    path = directory / "outcomes.csv.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    lines[line_number - 1] = new_line
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("70,gemini-1.5-pro-002,1.7", "correct must be in [0, 1]"),
        ("70,gemini-1.5-pro-002,yes", "is not a number"),
        ("no-such-prompt,gemini-1.5-pro-002,1", "unknown prompt id 'no-such-prompt'"),
        ("70,no-such-model,1", "unknown model 'no-such-model'"),
    ],
)
def test_a_bad_row_aborts_with_file_and_line_and_writes_nothing(slice_dir, tmp_path, bad_line, message):
    run_import(slice_dir)  # an earlier good import must survive a failed one untouched
    before = database_snapshot()
    bad = tmp_path / "bad"
    shutil.copytree(slice_dir, bad)
    path = corrupt_outcome_line(bad, 7, bad_line)
    with pytest.raises(DataFormatError) as failure:
        run_import(bad)
    assert str(failure.value).startswith(f"{path}:7: ")
    assert message in str(failure.value)
    assert database_snapshot() == before


def test_truncated_gzip_fails_clearly_and_writes_nothing(slice_dir):
    path = slice_dir / "outcomes.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated or not valid gzip"):
        run_import(slice_dir)
    assert database_snapshot() == (0, 0, 0, [])


def test_command_prints_summary_and_reports_bad_rows_as_command_errors(slice_dir, capsys):
    call_command("import_routing_data", str(slice_dir), "--name", "cmd-slice")
    out = capsys.readouterr().out
    assert "prompts:  120 (120 new" in out and "cost basis:" in out and "changes:" in out
    call_command("import_routing_data", str(slice_dir), "--name", "cmd-slice")
    assert "changes:  0" in capsys.readouterr().out
    corrupt_outcome_line(slice_dir, 3, "70,gemini-1.5-pro-002,2")
    with pytest.raises(CommandError, match=r"(?s)outcomes.csv.gz:3: .*Nothing was written"):
        call_command("import_routing_data", str(slice_dir), "--name", "cmd-slice")


def test_nearest_neighbour_query_uses_the_hnsw_index(slice_dir, fresh_hnsw_index):
    from pgvector.django import CosineDistance

    from registry.selectors import nearest_prompts

    run_import(slice_dir)
    fresh_hnsw_index()
    query = Prompt.objects.get(external_id="70")
    vector = np.asarray(query.embedding)
    with connection.cursor() as cursor:
        # With a few hundred rows the planner prefers a sequential scan; forbid it to see the index.
        cursor.execute("SET enable_seqscan = off")
    try:
        plan = Prompt.objects.annotate(distance=CosineDistance("embedding", vector)).order_by("distance")[:5].explain()
        assert "registry_prompt_embedding_hnsw" in plan
        found = nearest_prompts(embedding=vector, prompt_set_id=query.prompt_set_id, k=5)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = on")
    # The query prompt itself is at distance 0 (another prompt may tie with an identical vector).
    assert len(found) == 5
    assert found[0][1] == pytest.approx(0.0, abs=1e-5)
    assert query.id in [pid for pid, distance in found if distance < 1e-5]
    exact = sorted(1 - np.asarray(p.embedding) @ vector for p in Prompt.objects.all())[:5]
    np.testing.assert_allclose([d for _, d in found], exact, atol=1e-5)


# -- LLM names and LLMs already registered ----------------------------------------------------------
def rename_models(directory, renames: dict[str, str]) -> None:
    """Rename LLMs in models.csv and outcomes.csv.gz of a slice (names as providers write them)."""
    models = (directory / "models.csv").read_text()
    with gzip.open(directory / "outcomes.csv.gz", "rt") as handle:
        outcomes = handle.read()
    for old, new in renames.items():
        models = models.replace(f"\n{old},", f"\n{new},")
        outcomes = outcomes.replace(f",{old},", f",{new},")
    (directory / "models.csv").write_text(models)
    with gzip.open(directory / "outcomes.csv.gz", "wt") as handle:
        handle.write(outcomes)


def test_names_with_slashes_at_signs_and_colons_are_imported(slice_dir):
    renames = {
        "Meta-Llama-3_1-70B-Instruct": "meta-llama/Llama-3.1-70B-Instruct",
        "gemini-1.5-flash-002": "gemini-1.5-flash@vertex",
        "DeepSeek-Coder-V2": "deepseek-coder-v2:236b",
    }
    rename_models(slice_dir, renames)
    summary = run_import(slice_dir)
    assert summary.llms_created == 29
    for name in renames.values():
        assert Outcome.objects.filter(llm__name=name).count() > 100


@pytest.mark.parametrize(
    ("bad_name", "shown"), [("tab\there", r"'tab\there'"), ("bell\x07", r"'bell\x07'"), ("x" * 201, "'xxx")]
)
def test_a_name_breaking_the_rule_is_reported_with_file_and_line(slice_dir, bad_name, shown):
    models = (slice_dir / "models.csv").read_text().splitlines()
    assert models[4].startswith("Meta-Llama-3_1-70B-Instruct,")
    models[4] = models[4].replace("Meta-Llama-3_1-70B-Instruct", bad_name)
    (slice_dir / "models.csv").write_text("\n".join(models) + "\n")
    with pytest.raises(DataFormatError) as error:
        run_import(slice_dir)
    message = str(error.value)
    assert message.startswith(f"{slice_dir / 'models.csv'}:5: model name {shown}"), message
    assert "no control characters" in message


def unprice(directory, name: str) -> None:
    """A models.csv that lists ``name`` without prices and with another family."""
    lines = (directory / "models.csv").read_text().splitlines()
    lines = [f"{name},other-family,,,,," if line.startswith(f"{name},") else line for line in lines]
    (directory / "models.csv").write_text("\n".join(lines) + "\n")


def test_reimport_keeps_a_registered_llms_prices_and_metadata_and_reports_the_differences(slice_dir, capsys):
    run_import(slice_dir)
    LLM.objects.filter(name="gemini-1.5-pro-002").update(
        api_base="https://gemini.example/v1", metadata={"family": "gemini", "api_key_env": "ROUTERHUB_LLM_KEY_GEMINI"}
    )
    unprice(slice_dir, "gemini-1.5-pro-002")
    call_command("import_routing_data", str(slice_dir), "--name", "mmlu-slice")
    out = capsys.readouterr().out
    gemini = LLM.objects.get(name="gemini-1.5-pro-002")
    assert (gemini.usd_per_mtok_in, gemini.usd_per_mtok_out) == (1.25, 5.0)
    assert gemini.metadata == {"family": "gemini", "api_key_env": "ROUTERHUB_LLM_KEY_GEMINI"}
    assert gemini.api_base == "https://gemini.example/v1" and gemini.provider == "gemini"
    assert "1 registered LLM(s) differ from models.csv and were kept" in out and "--update-llms" in out
    assert (
        "gemini-1.5-pro-002: usd_per_mtok_in 1.25 → none; usd_per_mtok_out 5 → none; "
        "provider 'gemini' → 'other-family'; metadata.family 'gemini' → 'other-family'"
    ) in out
    assert "changes:  0" in out


def test_update_llms_applies_the_file_and_keeps_metadata_it_does_not_mention(slice_dir, capsys):
    run_import(slice_dir)
    LLM.objects.filter(name="gemini-1.5-pro-002").update(
        metadata={"family": "gemini", "api_key_env": "ROUTERHUB_LLM_KEY_GEMINI"}
    )
    unprice(slice_dir, "gemini-1.5-pro-002")
    call_command("import_routing_data", str(slice_dir), "--name", "mmlu-slice", "--update-llms")
    out = capsys.readouterr().out
    gemini = LLM.objects.get(name="gemini-1.5-pro-002")
    assert (gemini.usd_per_mtok_in, gemini.usd_per_mtok_out, gemini.provider) == (None, None, "other-family")
    assert gemini.metadata == {"family": "other-family", "api_key_env": "ROUTERHUB_LLM_KEY_GEMINI"}
    assert "LLMs:     29 (0 new, 1 updated)" in out and "differ" not in out

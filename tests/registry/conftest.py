import csv
import gzip
import io
import json
import shutil
from pathlib import Path

import pytest

DEMO_DATA = Path(__file__).resolve().parents[2] / "data" / "mmlu-pro"


def write_slice(target: Path, *, prompts: int = 120, gzip_files: bool = True) -> Path:
    """Copy the first ``prompts`` MMLU-Pro questions with all their outcomes into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    with gzip.open(DEMO_DATA / "prompts.jsonl.gz", "rt", encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(prompts), handle)]
    ids = {str(json.loads(line)["id"]) for line in lines}
    with gzip.open(DEMO_DATA / "outcomes.csv.gz", "rt", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        outcome_rows = [row for row in reader if row[0] in ids]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(outcome_rows)
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8")) if gzip_files else (lambda p: open(p, "w", encoding="utf-8"))
    suffix = ".gz" if gzip_files else ""
    with opener(target / f"prompts.jsonl{suffix}") as out:
        out.writelines(lines)
    with opener(target / f"outcomes.csv{suffix}") as out:
        out.write(buffer.getvalue())
    (target / "models.csv").write_bytes((DEMO_DATA / "models.csv").read_bytes())
    return target


@pytest.fixture(scope="session")
def pristine_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("pristine") / "mmlu-slice")


@pytest.fixture
def slice_dir(pristine_slice, tmp_path):
    """A private copy of a 120-question MMLU-Pro slice that a test may corrupt."""
    return Path(shutil.copytree(pristine_slice, tmp_path / "mmlu-slice"))

"""Reading and validating routing data sets (``data/FORMAT.md``) without touching the database.

Every problem is reported as ``file:line: what is wrong`` and nothing is written until a whole
data set has been read and validated, so a bad row can never leave a half-imported set.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_KEYS = {"id", "question", "options", "category", "answer"}
MODEL_NUMBER_COLUMNS = {
    "usd_per_mtok_in": "usd_per_mtok_in",
    "usd_per_mtok_out": "usd_per_mtok_out",
    "usd_per_query_mean": "usd_per_query",
    "params_total_b": "params_total_b",
    "params_active_b": "params_active_b",
}


class DataFormatError(ValueError):
    """A data file is malformed; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class PromptRow:
    external_id: str
    text: str
    category: str
    answer: str
    metadata: dict


@dataclass(frozen=True)
class ModelRow:
    name: str
    provider: str
    prices: dict  # LLM field name -> float | None
    metadata: dict


@dataclass
class RoutingData:
    prompts: list[PromptRow]
    models: list[ModelRow]
    # (prompt external id, model name) -> (score, cost_usd or None)
    outcomes: dict[tuple[str, str], tuple[float, float | None]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataFormatError(f"{directory}: missing {stem} (or {stem}.gz)")


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, line); a truncated or corrupt gzip becomes a DataFormatError."""
    line_number = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataFormatError(f"{path}:{line_number + 1}: file is truncated or not valid gzip ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}:{line_number + 1}: not valid UTF-8 ({exc.reason})") from exc


def prompt_text(question: str, options: list[str] | None) -> str:
    """The text that is embedded: the question, then each option as ``A. …`` on its own line."""
    if not options:
        return question
    lettered = [f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options)]
    return "\n".join([question, *lettered])


def read_prompts(path: Path) -> list[PromptRow]:
    rows: list[PromptRow] = []
    seen: dict[str, int] = {}
    for line_number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{where}: expected a JSON object")
        if "id" not in record or record["id"] in (None, ""):
            raise DataFormatError(f"{where}: missing 'id'")
        if not isinstance(record["id"], (int, str)) or isinstance(record["id"], bool):
            raise DataFormatError(f"{where}: 'id' must be an integer or a string")
        external_id = str(record["id"])
        if external_id in seen:
            raise DataFormatError(f"{where}: duplicate id {external_id!r} (first on line {seen[external_id]})")
        seen[external_id] = line_number
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataFormatError(f"{where}: 'question' must be a non-empty string")
        options = record.get("options")
        if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
            raise DataFormatError(f"{where}: 'options' must be a list of strings")
        if options and len(options) > 26:
            raise DataFormatError(f"{where}: at most 26 options can be lettered A-Z, got {len(options)}")
        rows.append(
            PromptRow(
                external_id=external_id,
                text=prompt_text(question, options),
                category=str(record.get("category") or "")[:100],
                answer=str(record.get("answer") if record.get("answer") is not None else "")[:500],
                metadata={k: v for k, v in record.items() if k not in PROMPT_KEYS},
            )
        )
    if not rows:
        raise DataFormatError(f"{path}: no prompts")
    return rows


def _csv_rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict]]:
    lines = _lines(path)
    header_line = next(lines, None)
    if header_line is None:
        raise DataFormatError(f"{path}:1: empty file, expected a header with {', '.join(required)}")
    header = next(csv.reader([header_line[1]]))
    missing = [column for column in required if column not in header]
    if missing:
        raise DataFormatError(f"{path}:1: missing column(s) {', '.join(missing)}")
    for line_number, line in lines:
        if not line.strip():
            continue
        values = next(csv.reader([line]))
        if len(values) != len(header):
            raise DataFormatError(f"{path}:{line_number}: expected {len(header)} fields, got {len(values)}")
        yield line_number, dict(zip(header, values))


def _number(value: str, where: str, column: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise DataFormatError(f"{where}: {column} {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise DataFormatError(f"{where}: {column} must be a non-negative number, got {value!r}")
    return number


def read_models(path: Path) -> list[ModelRow]:
    from django.core.exceptions import ValidationError

    from registry.models import LLM_NAME_RULE, llm_name_validator  # the same rule the LLM model enforces

    models: list[ModelRow] = []
    seen: set[str] = set()
    for line_number, row in _csv_rows(path, ["model"]):
        where = f"{path}:{line_number}"
        name = row["model"].strip()
        try:
            llm_name_validator(name)
        except ValidationError:
            raise DataFormatError(f"{where}: model name {name!r} is not a valid LLM name ({LLM_NAME_RULE})") from None
        if name in seen:
            raise DataFormatError(f"{where}: duplicate model {name!r}")
        seen.add(name)
        prices = {
            field_name: _number(row.get(column), where, column) for column, field_name in MODEL_NUMBER_COLUMNS.items()
        }
        metadata = {
            k: v for k, v in row.items() if k not in MODEL_NUMBER_COLUMNS and k not in ("model", "provider") and v != ""
        }
        models.append(
            ModelRow(
                name=name,
                provider=(row.get("provider") or row.get("family") or "").strip(),
                prices=prices,
                metadata=metadata,
            )
        )
    if not models:
        raise DataFormatError(f"{path}: no models")
    return models


def read_outcomes(path: Path, *, prompt_ids: set[str], model_names: set[str]) -> dict:
    outcomes: dict[tuple[str, str], tuple[float, float | None]] = {}
    for line_number, row in _csv_rows(path, ["prompt_id", "model", "correct"]):
        where = f"{path}:{line_number}"
        prompt_id, model = row["prompt_id"].strip(), row["model"].strip()
        if prompt_id not in prompt_ids:
            raise DataFormatError(f"{where}: unknown prompt id {prompt_id!r} (not in prompts file)")
        if model not in model_names:
            raise DataFormatError(f"{where}: unknown model {model!r} (not in models.csv)")
        try:
            score = float(row["correct"])
        except ValueError:
            raise DataFormatError(f"{where}: correct {row['correct']!r} is not a number") from None
        if not (0.0 <= score <= 1.0):
            raise DataFormatError(f"{where}: correct must be in [0, 1], got {row['correct']!r}")
        cost = _number(row.get("cost_usd"), where, "cost_usd")
        key = (prompt_id, model)
        if key in outcomes:
            raise DataFormatError(f"{where}: duplicate outcome for prompt {prompt_id!r} and model {model!r}")
        outcomes[key] = (score, cost)
    return outcomes


def read_routing_data(directory: Path) -> RoutingData:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(f"{directory}: not a directory")
    prompts_path = find_file(directory, "prompts.jsonl")
    outcomes_path = find_file(directory, "outcomes.csv")
    models_path = find_file(directory, "models.csv")
    prompts = read_prompts(prompts_path)
    models = read_models(models_path)
    outcomes = read_outcomes(
        outcomes_path, prompt_ids={p.external_id for p in prompts}, model_names={m.name for m in models}
    )
    files = {"prompts": str(prompts_path), "outcomes": str(outcomes_path), "models": str(models_path)}
    return RoutingData(prompts=prompts, models=models, outcomes=outcomes, files=files)

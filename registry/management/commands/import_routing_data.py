from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from registry.data_format import DataFormatError
from registry.importing import dataset_embeddings_write, dataset_import
from registry.migration_check import require_migrated
from registry.models import PromptSet


class Command(BaseCommand):
    help = (
        "Import a routing data set (prompts.jsonl[.gz], outcomes.csv[.gz], models.csv; see data/FORMAT.md). "
        "Idempotent and all-or-nothing: a bad row aborts with file:line and writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="folder holding the data set's files")
        parser.add_argument("--name", required=True, help="prompt set name (URL-safe), e.g. mmlu-pro")
        parser.add_argument(
            "--role",
            default=PromptSet.Role.DATASET,
            choices=PromptSet.Role.values,
            help="'dataset' (default) splits prompts 60/10/30 train/validation/test by a hash of their id; "
            "train/validation/test put every prompt in that split",
        )
        parser.add_argument(
            "--update-llms",
            action="store_true",
            help="apply models.csv's prices, provider and metadata to LLMs that are already registered "
            "(default: keep what is registered and list the differences)",
        )
        parser.add_argument(
            "--write-embeddings",
            nargs="?",
            const="",
            default=None,
            metavar="PATH",
            help="after the import, write the set's embeddings as an embeddings file (data/FORMAT.md) to PATH "
            "(a file, or a folder; default: the data set's folder), so later imports need not embed them",
        )

    def handle(
        self, *args, directory: Path, name: str, role: str, update_llms: bool, write_embeddings: str | None, **options
    ):
        require_migrated()
        say = lambda message: self.stdout.write(message)  # noqa: E731
        try:
            summary = dataset_import(directory=directory, name=name, role=role, update_llms=update_llms, say=say)
        except DataFormatError as exc:
            raise CommandError(f"{exc}\nNothing was written.") from None
        self.stdout.write(self.style.SUCCESS(f"Imported {summary.prompt_set!r} in {summary.seconds:.1f} s"))
        self.stdout.write(
            f"  prompts:  {summary.prompts:,} ({summary.prompts_created:,} new, {summary.prompts_updated:,} updated, "
            f"{summary.prompts_embedded:,} embedded, {summary.embeddings_from_file:,} embeddings from file)"
        )
        self.stdout.write(
            f"  LLMs:     {summary.llms:,} ({summary.llms_created:,} new, {summary.llms_updated:,} updated)"
        )
        if summary.llm_differences:
            self.stdout.write(
                self.style.WARNING(
                    f"  {len(summary.llm_differences):,} registered LLM(s) differ from models.csv and were kept as they "
                    "are (run again with --update-llms to apply the file):"
                )
            )
            for line in summary.llm_differences:
                self.stdout.write(f"    {line}")
        self.stdout.write(
            f"  outcomes: {summary.outcomes:,} ({summary.outcomes_created:,} new, {summary.outcomes_updated:,} updated)"
        )
        for line in summary.cost_basis:
            self.stdout.write(f"  cost basis: {line}")
        self.stdout.write(f"  changes:  {summary.changes:,}")
        if write_embeddings is not None:
            try:
                path = dataset_embeddings_write(
                    name=name, target=Path(write_embeddings) if write_embeddings else directory, say=say
                )
            except (ValueError, OSError) as exc:
                raise CommandError(f"--write-embeddings: {exc}") from None
            self.stdout.write(self.style.SUCCESS(f"Wrote {path}"))

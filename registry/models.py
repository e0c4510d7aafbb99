"""What routerhub knows: LLMs, prompts (with embeddings) and per-prompt outcomes."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from pgvector.django import HnswIndex, VectorField

from registry.constraints import valid_choice
from registry.endpoints import API_KEY_ENV_PATTERN, validate_api_base
from registry.gateway_fields import gateway_fields_problems

EMBEDDING_DIMENSIONS = 384

# The one rule for LLM names, as providers and data sets write them (``meta-llama/Llama-3.1-70B-Instruct``,
# ``Llama-3.1-405B-Inst@sambanova``, ``qwen2.5:7b``): 1-200 characters, no control characters (C0, DEL,
# C1), no whitespace at either end. The validator (forms, API, importer) and the database CHECK use the
# same pattern; it is written so that Python's ``re`` and PostgreSQL's regular expressions read it alike
# (explicit code points, no locale-dependent classes such as ``\s``).
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
LLM_NAME_MAX_LENGTH = 200
LLM_NAME_PATTERN = rf"^[^{_CONTROL}{_SPACE}](?:[^{_CONTROL}]{{0,{LLM_NAME_MAX_LENGTH - 2}}}[^{_CONTROL}{_SPACE}])?$"
LLM_NAME_RULE = f"at most {LLM_NAME_MAX_LENGTH} characters, no control characters, no whitespace at the start or end"
llm_name_validator = RegexValidator(LLM_NAME_PATTERN, f"Not a valid LLM name: {LLM_NAME_RULE}.")

# Prompt-set names are chosen by whoever imports a data set and appear in commands and URLs.
URL_SAFE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
url_safe_name = RegexValidator(
    URL_SAFE_PATTERN,
    "Use letters, digits, '.', '_' or '-' (starting with a letter or digit), at most 100 characters.",
)
non_negative = MinValueValidator(0)

# What a caller sets on an LLM besides its name and key: the registry's services accept these, the API
# and the admin's form show them.
LLM_FIELDS = (
    "provider",
    "api_base",
    "api_model",
    "usd_per_mtok_in",
    "usd_per_mtok_out",
    "usd_per_query",
    "params_total_b",
    "params_active_b",
    "context_window",
    "metadata",
    "is_active",
    "api_key_env",
)


class LLM(models.Model):
    name = models.CharField(max_length=LLM_NAME_MAX_LENGTH, unique=True, validators=[llm_name_validator])
    provider = models.CharField(max_length=100, blank=True)
    api_base = models.URLField(
        blank=True,
        validators=[validate_api_base],
        help_text="OpenAI-compatible base URL, e.g. https://host/v1 (called by the gateway and for profiling).",
    )
    api_model = models.CharField(max_length=200, blank=True, help_text="Model id sent to api_base.")
    # The upstream key: encrypted here (write-only in the admin and API), or named environment variable.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_env = models.CharField(
        max_length=120,
        blank=True,
        validators=[
            RegexValidator(
                API_KEY_ENV_PATTERN,
                "The variable's name must start with ROUTERHUB_LLM_KEY_ and use only A-Z, 0-9 and _.",
            )
        ],
        verbose_name="API key environment variable",
        help_text="Or read the key from this environment variable of the web and worker processes "
        "(its name must start with ROUTERHUB_LLM_KEY_).",
    )
    usd_per_mtok_in = models.FloatField(
        null=True, blank=True, validators=[non_negative], verbose_name="USD / 1M input tokens"
    )
    usd_per_mtok_out = models.FloatField(
        null=True, blank=True, validators=[non_negative], verbose_name="USD / 1M output tokens"
    )
    usd_per_query = models.FloatField(null=True, blank=True, validators=[non_negative], verbose_name="USD / query")
    params_total_b = models.FloatField(null=True, blank=True, validators=[non_negative], verbose_name="parameters (B)")
    params_active_b = models.FloatField(
        null=True, blank=True, validators=[non_negative], verbose_name="active parameters (B)"
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM"
        constraints = [
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_prices_non_negative",
                condition=(
                    (Q(usd_per_mtok_in__isnull=True) | Q(usd_per_mtok_in__gte=0))
                    & (Q(usd_per_mtok_out__isnull=True) | Q(usd_per_mtok_out__gte=0))
                    & (Q(usd_per_query__isnull=True) | Q(usd_per_query__gte=0))
                ),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_name_as_written",
                condition=Q(name__regex=LLM_NAME_PATTERN),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_api_key_env_prefixed",
                condition=Q(api_key_env="") | Q(api_key_env__regex=API_KEY_ENV_PATTERN),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        problems = gateway_fields_problems(self.metadata)
        if problems:
            raise ValidationError({"metadata": problems})

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted or self.api_key_env)

    def expected_cost_usd(self, *, input_tokens: float, output_tokens: float) -> float | None:
        """Price of one call: the per-query price if set, else per-token prices × token counts."""
        if self.usd_per_query is not None:
            return self.usd_per_query
        if self.usd_per_mtok_in is None and self.usd_per_mtok_out is None:
            return None
        return ((self.usd_per_mtok_in or 0.0) * input_tokens + (self.usd_per_mtok_out or 0.0) * output_tokens) / 1e6


class PromptSetRole(models.TextChoices):
    DATASET = "dataset", "whole data set (split by hash)"
    TRAIN = "train", "train"
    VALIDATION = "validation", "validation"
    TEST = "test", "test"


class PromptSet(models.Model):
    Role = PromptSetRole
    name = models.CharField(max_length=100, unique=True, validators=[url_safe_name])
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.DATASET)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="Where the data was imported from.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [valid_choice("role", PromptSetRole)]

    def __str__(self) -> str:
        return self.name


class PromptSplit(models.TextChoices):
    TRAIN = "train", "train"
    VALIDATION = "validation", "validation"
    TEST = "test", "test"


class Prompt(models.Model):
    Split = PromptSplit
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200)
    text = models.TextField(help_text="The text that is embedded and routed on.")
    category = models.CharField(max_length=100, blank=True, db_index=True)
    answer = models.CharField(max_length=500, blank=True, help_text="Reference answer used to grade profiling calls.")
    split = models.CharField(max_length=20, choices=Split.choices, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    text_sha256 = models.CharField(max_length=64)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedder = models.CharField(max_length=100, blank=True, help_text="Which embedder produced the embedding.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt_set", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt_set", "external_id"], name="%(app_label)s_%(class)s_unique_external_id"
            ),
            valid_choice("split", PromptSplit),
        ]
        indexes = [
            HnswIndex(
                name="registry_prompt_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["prompt_set", "split"], name="registry_prompt_set_split"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_set.name}/{self.external_id}"


class OutcomeSource(models.TextChoices):
    IMPORTED = "imported", "imported"
    PROFILED = "profiled", "profiled"
    FEEDBACK = "feedback", "feedback"


class Outcome(models.Model):
    Source = OutcomeSource
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="outcomes")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="outcomes")
    score = models.FloatField(help_text="Correctness in [0, 1].")
    cost_usd = models.FloatField(null=True, blank=True, validators=[non_negative])
    latency_ms = models.FloatField(null=True, blank=True, validators=[non_negative])
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    response_text = models.TextField(blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.IMPORTED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["llm", "prompt"], name="%(app_label)s_%(class)s_unique_llm_prompt"),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_score_in_unit_interval", condition=Q(score__gte=0) & Q(score__lte=1)
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_cost_non_negative",
                condition=Q(cost_usd__isnull=True) | Q(cost_usd__gte=0),
            ),
            valid_choice("source", OutcomeSource),
        ]
        indexes = [models.Index(fields=["prompt", "llm"], name="registry_outcome_prompt_llm")]

    def __str__(self) -> str:
        return f"{self.llm.name} on {self.prompt_id}: {self.score:g}"


class SharedEmbedding(models.Model):
    """One prompt embedding shared by every process of a deployment (``registry/embedding_store.py``).

    Keyed by a hash of the embedder's name and the text, so a prompt is embedded once per
    deployment and another embedder never reads it. Bounded: the least recently used rows beyond
    ``ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE`` are deleted.
    """

    key = models.BinaryField(primary_key=True, max_length=16)
    embedder = models.CharField(max_length=100)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)
    # Refreshed on a hit at most once per embedding_store.TOUCH_SECONDS: eviction is
    # least-recently-used at that granularity, without a write on every hit.
    used_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "shared embedding"

    def __str__(self) -> str:
        return f"{self.embedder}: {self.key.hex() if isinstance(self.key, bytes) else self.key}"


class SharedEmbeddingStats(models.Model):
    """Where route-time embeddings came from, summed over every process (one row): each process's
    in-memory cache, the shared table, or the embedder (a miss of both)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    memory_hits = models.BigIntegerField(default=0)
    shared_hits = models.BigIntegerField(default=0)
    misses = models.BigIntegerField(default=0)
    since = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "shared embedding stats"

    def __str__(self) -> str:
        return f"{self.memory_hits + self.shared_hits} hits, {self.misses} misses since {self.since:%Y-%m-%d}"

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Avg, Count

from registry import services
from registry.models import LLM, LLM_FIELDS, Outcome, Prompt, PromptSet


class LLMForm(forms.ModelForm):
    """The API key is write-only: typed here, stored encrypted, never shown again (not even masked).

    The form sets no key itself: :meth:`api_key_change` says what was asked, and the admin hands it
    to the registry's services, whose rule removes a stored key that the change would send elsewhere.
    """

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the current key — unless you "
        "change the base URL or name another environment variable: the stored key is then removed, so type "
        "it again here if it belongs with the new endpoint.",
    )
    remove_api_key = forms.BooleanField(label="Remove the stored API key", required=False)
    # A base URL typed without a scheme means https (Django 6's default, stated explicitly).
    api_base = forms.URLField(
        required=False, assume_scheme="https", max_length=200, help_text=LLM._meta.get_field("api_base").help_text
    )

    class Meta:
        model = LLM
        fields = ["name", *LLM_FIELDS]

    def api_key_change(self) -> dict:
        """``{"api_key": …}`` for ``services.llm_update`` (None removes the key), or {} to leave it be."""
        if self.cleaned_data.get("remove_api_key"):
            return {"api_key": None}
        if self.cleaned_data.get("api_key"):
            return {"api_key": self.cleaned_data["api_key"]}
        return {}


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}"


@admin.register(LLM)
class LLMAdmin(admin.ModelAdmin):
    form = LLMForm
    # Short headers and rounded figures: the list fits a 1,400 px screen with its filters.
    list_display = (
        "name",
        "provider",
        "is_active",
        "price_in",
        "price_out",
        "price_per_query",
        "parameters",
        "accuracy",
        "outcome_count",
    )
    list_filter = ("is_active", "provider")
    search_fields = ("name", "provider", "api_model")
    # A base URL typed without a scheme means https (Django 6's default, stated explicitly).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = ("created_at", "updated_at", "api_key_state")
    actions = ("activate", "deactivate")
    fieldsets = (
        (None, {"fields": ("name", "provider", "is_active")}),
        (
            "API (called by the gateway and for profiling)",
            {"fields": ("api_base", "api_model", "api_key_state", "api_key", "remove_api_key", "api_key_env")},
        ),
        ("Prices", {"fields": ("usd_per_mtok_in", "usd_per_mtok_out", "usd_per_query")}),
        ("Size", {"fields": ("params_total_b", "params_active_b", "context_window")}),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(_outcome_count=Count("outcomes"), _accuracy=Avg("outcomes__score"))
        )

    def save_model(self, request, obj, form, change):
        key_change = form.api_key_change()
        if not change:
            if key_change.get("api_key"):
                services.llm_set_api_key(llm=obj, api_key=key_change["api_key"], save=False)
            super().save_model(request, obj, form, change)
            return
        had_key = bool(obj.api_key_encrypted)
        services.llm_update(llm=obj, **key_change)
        if had_key and not obj.api_key_encrypted and not key_change:
            self.message_user(
                request,
                f"The stored API key of {obj} was removed: it was typed in for the previous endpoint or key "
                "source. Type it again if it belongs with the new one.",
                messages.WARNING,
            )

    @admin.display(description="API key")
    def api_key_state(self, llm):
        if llm.api_key_encrypted:
            return "stored (encrypted)"
        if llm.api_key_env:
            return f"read from ${llm.api_key_env}"
        return "none"

    @admin.display(description="outcomes", ordering="_outcome_count")
    def outcome_count(self, llm):
        return f"{llm._outcome_count:,}"

    @admin.display(description="$ / 1M in", ordering="usd_per_mtok_in")
    def price_in(self, llm):
        return _number(llm.usd_per_mtok_in)

    @admin.display(description="$ / 1M out", ordering="usd_per_mtok_out")
    def price_out(self, llm):
        return _number(llm.usd_per_mtok_out)

    @admin.display(description="$ / query", ordering="usd_per_query")
    def price_per_query(self, llm):
        return _number(llm.usd_per_query)

    @admin.display(description="params (B)", ordering="params_total_b")
    def parameters(self, llm):
        return _number(llm.params_total_b)

    @admin.display(description="accuracy", ordering="_accuracy")
    def accuracy(self, llm):
        return "—" if llm._accuracy is None else f"{llm._accuracy:.3f}"

    @admin.action(description="Activate selected LLMs (routable)", permissions=["change"])
    def activate(self, request, queryset):
        changed = services.llms_set_active(llms=queryset, active=True)
        self.message_user(request, f"{changed} LLM(s) activated.", messages.SUCCESS)

    @admin.action(description="Deactivate selected LLMs (never routed to)", permissions=["change"])
    def deactivate(self, request, queryset):
        changed = services.llms_set_active(llms=queryset, active=False)
        self.message_user(request, f"{changed} LLM(s) deactivated.", messages.SUCCESS)


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "prompt_count", "source", "updated_at")
    list_filter = ("role",)
    search_fields = ("name", "description", "source")
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_prompt_count=Count("prompts"))

    @admin.display(description="prompts", ordering="_prompt_count")
    def prompt_count(self, prompt_set):
        return prompt_set._prompt_count


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("external_id", "prompt_set", "category", "split", "short_text", "embedder")
    list_filter = ("prompt_set", "split", "category", "embedder")
    search_fields = ("external_id", "text", "category")
    list_select_related = ("prompt_set",)
    # The 384-d embedding is never shown as a widget: it is computed, not edited.
    exclude = ("embedding",)
    readonly_fields = ("text_sha256", "embedder", "has_embedding", "created_at", "updated_at")
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, prompt):
        return prompt.text[:100] + ("…" if len(prompt.text) > 100 else "")

    @admin.display(description="embedded", boolean=True)
    def has_embedding(self, prompt):
        return prompt.embedding is not None

    def get_queryset(self, request):
        return super().get_queryset(request).defer("embedding")


@admin.register(Outcome)
class OutcomeAdmin(admin.ModelAdmin):
    list_display = ("llm", "prompt", "score", "cost_usd", "latency_ms", "source", "updated_at")
    list_filter = ("source", "llm")
    search_fields = ("llm__name", "prompt__external_id")
    list_select_related = ("llm", "prompt", "prompt__prompt_set")
    raw_id_fields = ("prompt",)
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False

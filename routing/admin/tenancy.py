"""Admin for tenants and their API keys: keys are issued by actions that show the secret once.

The secret is shown in the answer to the request that issued it, a page of its own: never in a
message, whose cookie storage would send it back and forth in a ``Set-Cookie`` header (and keep it in
the browser's cookie jar) until the next page is shown.
"""

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control

from routing.admin.gateway import PresetInline
from routing.admin.validation_sets import build_validation_set_action
from routing.models import ApiKey, BudgetPeriod, Tenant, TenantMembership
from routing.selectors.budgets import period_bounds
from routing.services import tenancy


def show_keys_once(request, model_admin, issued: list, *, what: str, back_url: str, back_label: str):
    """The page that shows newly issued secrets: not cached anywhere, nothing of it in a cookie."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "New API key" if len(issued) == 1 else "New API keys",
        "opts": model_admin.model._meta,
        "issued": issued,
        "what": what,
        "back_url": back_url,
        "back_label": back_label,
    }
    response = TemplateResponse(request, "admin/routing/new_api_keys.html", context)
    add_never_cache_headers(response)
    patch_cache_control(response, no_store=True)
    return response


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are issued with the "Create a new API key" action, which shows the secret once


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):
    """Users who see one tenant's dashboard pages (and only that tenant's)."""

    list_display = ("user", "tenant", "created_at")
    list_filter = ("tenant",)
    search_fields = ("user__username", "tenant__name")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "budget_usd",
        "budget_period",
        "when_budget_spent",
        "spent_this_period",
        "live_keys",
        "trusted_for_learning",
        "is_active",
    )
    list_filter = ("is_active", "trusted_for_learning", "budget_period", "when_budget_spent")
    search_fields = ("name",)
    filter_horizontal = ("allowed_llms",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (ApiKeyInline, PresetInline)
    actions = ("issue_api_key", "deactivate", "build_validation_set")
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        ("Budget", {"fields": ("budget_usd", "budget_period", "when_budget_spent")}),
        (
            "Routing defaults",
            {
                "fields": (
                    "allowed_llms",
                    "default_lambda",
                    "default_quality_target",
                    "default_max_cost_usd",
                    "exploration_share",
                )
            },
        ),
        ("Gateway", {"fields": ("log_gateway_text",)}),
        ("Learning", {"fields": ("trusted_for_learning",)}),
        (
            "Shadow evaluation",
            {
                "fields": ("shadow_share", "shadow_comparison_llm", "shadow_judge_llm"),
                "description": "Paid from the shadow budget (Routing › Shadow budgets), never the tenant's.",
            },
        ),
        ("Other", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # Trust lets a tenant's feedback move every tenant's routing: only staff with the permission grant it.
        if request.user.has_perm("routing.trust_tenant_for_learning"):
            return self.readonly_fields
        return (*self.readonly_fields, "trusted_for_learning")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_live_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
        )

    @admin.display(description="live keys", ordering="_live_keys")
    def live_keys(self, tenant):
        return tenant._live_keys

    @admin.display(description="spent this period (USD)")
    def spent_this_period(self, tenant):
        start, _ = period_bounds(tenant.budget_period, timezone.now())
        period = BudgetPeriod.objects.filter(tenant=tenant, period=tenant.budget_period, starts_at=start).first()
        return "0" if period is None else f"{period.spent_usd.normalize():f} / {period.limit_usd.normalize():f}"

    def has_delete_permission(self, request, obj=None):
        # A tenant that has routed keeps its decisions (billing history): deactivate it instead. The
        # database refuses too (Decision.tenant is PROTECT); this only hides the button.
        if obj is not None and obj.decisions.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:
            tenancy.tenant_budget_changed(tenant=obj)

    def response_add(self, request, obj, post_url_continue=None):
        issued = tenancy.api_key_create(tenant=obj, name="created with the tenant")
        return show_keys_once(
            request,
            self,
            [issued],
            what=f"The tenant {obj} was added, with its first API key.",
            back_url=reverse("admin:routing_tenant_change", args=[obj.pk]),
            back_label=f"Go on to {obj}",
        )

    def has_issue_api_key_permission(self, request):
        return request.user.has_perm("routing.add_apikey")

    @admin.action(
        description="Deactivate selected tenants (their keys stop working; history is kept)", permissions=["change"]
    )
    def deactivate(self, request, queryset):
        changed = tenancy.tenants_deactivate(tenants=queryset)
        self.message_user(request, f"{changed} tenant(s) deactivated.", messages.SUCCESS)

    def has_build_validation_set_permission(self, request):
        return request.user.has_perm("registry.add_promptset") and request.user.has_perm("routing.add_job")

    @admin.action(
        description="Build a validation set from its gateway logs (then profile every LLM on it)",
        permissions=["build_validation_set"],
    )
    def build_validation_set(self, request, queryset):
        return build_validation_set_action(self, request, queryset)

    @admin.action(description="Create a new API key (shown once)", permissions=["issue_api_key"])
    def issue_api_key(self, request, queryset):
        issued = [
            tenancy.api_key_create(tenant=tenant, name=f"issued in the admin by {request.user}") for tenant in queryset
        ]
        return show_keys_once(
            request,
            self,
            issued,
            what=f"{len(issued)} API key{'' if len(issued) == 1 else 's'} issued.",
            back_url=reverse("admin:routing_tenant_changelist"),
            back_label="Back to the tenants",
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "tenant", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "tenant")
    search_fields = ("prefix", "name", "tenant__name")
    list_select_related = ("tenant",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        return (
            ("tenant", "name")
            if obj is None
            else ("tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at")
        )

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("tenant", "prefix", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request, obj, form, change):
        secret = None if change else tenancy.api_key_fill(obj)
        super().save_model(request, obj, form, change)
        if secret:
            request.issued_api_key = tenancy.IssuedKey(api_key=obj, secret=secret)  # for response_add

    def response_add(self, request, obj, post_url_continue=None):
        return show_keys_once(
            request,
            self,
            [request.issued_api_key],
            what=f"The API key {obj.prefix}… of {obj.tenant} was added.",
            back_url=reverse("admin:routing_apikey_changelist"),
            back_label="Back to the API keys",
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = tenancy.api_keys_revoke(keys=queryset)
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)

"""Admin for tenants and their API keys: keys are issued by actions that show the secret once."""

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils import timezone

from routing.admin.gateway import PresetInline
from routing.models import ApiKey, BudgetPeriod, Tenant, TenantMembership
from routing.selectors.budgets import period_bounds
from routing.services import tenancy


def _show_key_once(request, issued) -> None:
    messages.warning(
        request,
        f"New API key for {issued.api_key.tenant}: {issued.secret} — copy it now, it is not stored and will not be shown again.",
    )


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
        "is_active",
    )
    list_filter = ("is_active", "budget_period", "when_budget_spent")
    search_fields = ("name",)
    filter_horizontal = ("allowed_llms",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (ApiKeyInline, PresetInline)
    actions = ("issue_api_key", "deactivate")
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        ("Budget", {"fields": ("budget_usd", "budget_period", "when_budget_spent")}),
        (
            "Routing defaults",
            {"fields": ("allowed_llms", "default_lambda", "default_quality_target", "default_max_cost_usd")},
        ),
        ("Gateway", {"fields": ("log_gateway_text",)}),
        ("Other", {"fields": ("created_at", "updated_at")}),
    )

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
        _show_key_once(request, tenancy.api_key_create(tenant=obj, name="created with the tenant"))
        return super().response_add(request, obj, post_url_continue)

    def has_issue_api_key_permission(self, request):
        return request.user.has_perm("routing.add_apikey")

    @admin.action(
        description="Deactivate selected tenants (their keys stop working; history is kept)", permissions=["change"]
    )
    def deactivate(self, request, queryset):
        changed = tenancy.tenants_deactivate(tenants=queryset)
        self.message_user(request, f"{changed} tenant(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Create a new API key (shown once)", permissions=["issue_api_key"])
    def issue_api_key(self, request, queryset):
        for tenant in queryset:
            _show_key_once(
                request, tenancy.api_key_create(tenant=tenant, name=f"issued in the admin by {request.user}")
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
            _show_key_once(request, tenancy.IssuedKey(api_key=obj, secret=secret))

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = tenancy.api_keys_revoke(keys=queryset)
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)

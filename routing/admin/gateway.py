"""Admin for the gateway: per-tenant presets (``routerhub-auto:<name>``) and logged call text."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import GatewayExchange, Preset


class PresetInline(admin.TabularInline):
    model = Preset
    extra = 0
    fields = ("name", "description", "lambda_value", "quality_target", "max_cost_usd", "allowed_llms")
    show_change_link = True


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ("model_name", "tenant", "lambda_value", "quality_target", "max_cost_usd", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name", "description", "tenant__name")
    list_select_related = ("tenant",)
    filter_horizontal = ("allowed_llms",)
    readonly_fields = ("created_at", "updated_at")
    fields = (
        "tenant",
        "name",
        "description",
        "lambda_value",
        "quality_target",
        "max_cost_usd",
        "allowed_llms",
        "created_at",
        "updated_at",
    )

    @admin.display(description="model", ordering="name")
    def model_name(self, preset):
        return preset.model_name


@admin.register(GatewayExchange)
class GatewayExchangeAdmin(ReadOnlyAdmin):
    """Request and response text of gateway calls, for tenants with text logging on."""

    list_display = ("decision", "created_at")
    list_select_related = ("decision",)
    search_fields = ("decision__id", "response_text")
    date_hierarchy = "created_at"
    show_full_result_count = False

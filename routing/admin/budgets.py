"""Admin for budget periods (read-only: only reservations and feedback change spend)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import BudgetPeriod


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(ReadOnlyAdmin):
    """Read-only: spend is only ever changed by reservations and feedback, so the books balance."""

    list_display = (
        "tenant",
        "period",
        "starts_at",
        "ends_at",
        "limit_usd",
        "spent_usd",
        "remaining_usd",
        "overage_usd",
        "requests",
        "rejected_requests",
    )
    list_filter = ("tenant", "period")
    date_hierarchy = "starts_at"
    list_select_related = ("tenant",)

    @admin.display(description="remaining (USD)")
    def remaining_usd(self, period):
        return period.limit_usd - period.spent_usd

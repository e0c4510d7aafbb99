"""Admin for budget periods (read-only: only reservations and feedback change spend)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import BudgetLease, BudgetPeriod


class BudgetLeaseInline(admin.TabularInline):
    """The slices web processes hold, and those swept after their process stopped: what the sweep charged
    (``unwritten``) stays on the row, so staff see which process's calls it was."""

    model = BudgetLease
    fields = ("holder", "amount_usd", "unwritten_usd", "returned_at", "expires_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "lease"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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
        "leased_usd",
        "remaining_usd",
        "overage_usd",
        "unwritten_usd",
        "unwritten_calls",
        "requests",
        "rejected_requests",
    )
    list_filter = ("tenant", "period")
    date_hierarchy = "starts_at"
    list_select_related = ("tenant",)
    inlines = [BudgetLeaseInline]

    @admin.display(description="remaining (USD)")
    def remaining_usd(self, period):
        return period.limit_usd - period.spent_usd - period.leased_usd

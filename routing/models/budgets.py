"""Tenants' spend per budget period, and the slices of it that web processes hold as leases."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from routing.models.tenancy import Tenant, TenantPeriod


class BudgetPeriod(models.Model):
    """Spend of one tenant in one budget period; reserved atomically at decision time."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budget_periods")
    # The kind of period this row budgets. A tenant that switches from monthly to daily budgets gets
    # a day row, never the month row that happens to start at the same instant.
    period = models.CharField(max_length=10, choices=TenantPeriod.choices)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # 10 decimal places: one short prompt to a cheap LLM costs ~1e-6 USD, and a reservation is
    # rounded *up* to this precision, so coarser amounts would overstate small spends noticeably.
    limit_usd = models.DecimalField(max_digits=20, decimal_places=10)
    spent_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    # Spend of requests routed to the cheapest LLM after the budget ran out ("cheapest" tenants);
    # kept apart so that spent_usd can never exceed limit_usd.
    overage_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    # Budget the web processes hold in leases (BudgetLease) for gateway calls not yet written as
    # decisions: not spent, but not available either — every reservation checks spent + leased.
    leased_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    # Spend (within spent_usd and overage_usd) of gateway calls admitted against a lease whose decision
    # rows were never written: a row the database refused, or a lease swept after its process stopped
    # (the database cannot tell which part of it the process had admitted, so all of it stays spent).
    unwritten_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        db_default=0,
        help_text="Spent on gateway calls whose decisions could not be written (included in spent and overage).",
    )
    unwritten_calls = models.PositiveIntegerField(
        db_default=0, help_text="Gateway calls charged without a decision row (a swept lease's are not counted)."
    )
    requests = models.PositiveIntegerField(default=0, help_text="Accepted route requests.")
    rejected_requests = models.PositiveIntegerField(
        default=0, help_text="Route requests refused because the budget was spent."
    )
    # Exponentially smoothed rates of accepted requests (per second) and of their estimated spend
    # (USD per second) as of rates_at, updated by every reservation (routing/pacing.py): what budget
    # pacing projects from, so one burst moves them only as much as its share of the smoothing window.
    request_rate = models.FloatField(default=0)
    spend_rate = models.FloatField(default=0)
    rates_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "-starts_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "period", "starts_at"], name="%(app_label)s_%(class)s_unique_tenant_period_start"
            ),
            valid_choice("period", TenantPeriod),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_spent_within_limit", condition=Q(spent_usd__lte=models.F("limit_usd"))
            ),
            models.CheckConstraint(name="%(app_label)s_%(class)s_spent_non_negative", condition=Q(spent_usd__gte=0)),
            models.CheckConstraint(name="%(app_label)s_%(class)s_leased_non_negative", condition=Q(leased_usd__gte=0)),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.period} {self.starts_at:%Y-%m-%d}: {self.spent_usd}/{self.limit_usd}"


class BudgetLease(models.Model):
    """A slice of a budget period held by one web process, which admits gateway calls against it in
    memory (``routing/services/budget_leases.py``). Its amount is counted in the period's
    ``leased_usd`` until the process writes the calls' decisions (or charges those it cannot write).
    Returned, it keeps only what the process admitted and has not written yet; expired (its process
    stopped renewing it), the sweep charges all it still holds as spent and keeps the row, so that a
    late write of the same holder is not counted twice."""

    period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="leases")
    holder = models.CharField(max_length=100, help_text="host:pid:lease of the process that holds it.")
    amount_usd = models.DecimalField(max_digits=20, decimal_places=10, help_text="Held: counted in leased_usd.")
    unwritten_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        db_default=0,  # also for the grant's INSERT, written in SQL
        help_text="Charged as spent by the sweep and not yet matched by a write of its holder.",
    )
    returned_at = models.DateTimeField(null=True, blank=True, help_text="Given back: holds only admitted calls.")
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period", "holder"], name="%(app_label)s_%(class)s_unique_holder"),
            models.CheckConstraint(name="%(app_label)s_%(class)s_amount_non_negative", condition=Q(amount_usd__gte=0)),
        ]
        indexes = [models.Index(fields=["expires_at"], name="routing_budgetlease_expiry")]

    def __str__(self) -> str:
        return f"{self.holder}: {self.amount_usd} of {self.period}"

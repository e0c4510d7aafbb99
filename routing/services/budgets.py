"""The budget ledger: open periods, atomic reservations and reconciliation (services).

Never overspend: a decision's estimated cost is *reserved* by one conditional UPDATE
(``spent + cost <= limit``) in the transaction that writes the decision. PostgreSQL re-checks the
condition against the newest row version when two requests race (READ COMMITTED's re-evaluation of
an UPDATE's WHERE clause), so concurrent requests queue on the row and never push ``spent_usd`` past
``limit_usd`` — and the table's CHECK constraint would refuse it if code ever tried. Feedback later
replaces the estimate by the actual cost (:func:`reconcile`).

What happens when nothing fits, and how λ is paced, are policies: ``routing/services/budget_policies.py``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from django.db import connection
from django.db.models import F
from django.utils import timezone

from routing.caches import process_cache
from routing.models import BudgetPeriod, Decision, Tenant
from routing.selectors.budgets import BudgetStatus, period_bounds
from routing.services import rows, usage

USD_QUANTUM = Decimal("1e-10")  # BudgetPeriod's precision

# (tenant id, period type) → (starts_at, ends_at, period id) of the open period
_open_periods = process_cache("open budget periods")


def usd(amount: float | Decimal) -> Decimal:
    """An amount as a Decimal at the budget's precision, rounded *up* so spend is never under-counted."""
    return Decimal(str(amount)).quantize(USD_QUANTUM, rounding=ROUND_CEILING)


def budget_period_current(*, tenant: Tenant, now: datetime | None = None) -> BudgetPeriod:
    """The tenant's open budget period of its current kind (day, week, month), created on first use
    with the tenant's budget as limit. A tenant whose period kind changed gets a period of the new
    kind with its own calendar bounds; spend counted under the old kind stays in the old row."""
    starts_at, ends_at = period_bounds(tenant.budget_period, now or timezone.now())
    period, _ = BudgetPeriod.objects.get_or_create(
        tenant=tenant,
        period=tenant.budget_period,
        starts_at=starts_at,
        defaults={"ends_at": ends_at, "limit_usd": tenant.budget_usd},
    )
    return period


def budget_status_current(*, tenant: Tenant) -> BudgetStatus:
    """The tenant's open period. Its id is cached per process until the period ends; the amounts
    are those of the request's own reservation (``reserve`` returns them), so they are not read here
    and may be stale until then."""
    now = timezone.now()
    key = (tenant.id, tenant.budget_period)
    cached = _open_periods.get(key)
    if cached is None or not (cached[0] <= now < cached[1]):
        period = budget_period_current(tenant=tenant, now=now)
        cached = (period.starts_at, period.ends_at, period.id)
        _open_periods.set(key, cached)
    starts_at, ends_at, period_id = cached
    return BudgetStatus(
        tenant=tenant.name,
        period=tenant.budget_period,
        period_id=period_id,
        starts_at=starts_at,
        ends_at=ends_at,
        limit_usd=tenant.budget_usd,
        spent_usd=Decimal(0),
        overage_usd=Decimal(0),
        when_spent=tenant.when_budget_spent,
    )


# The smoothed rates of routing/pacing.py (smoothed_add), updated in the same statement as the spend:
# decay to now and add the event, or — an event stamped before the last update, from another
# process — add it decayed. Exponents are capped because PostgreSQL's exp() raises on underflow.
_SMOOTHED_ADD_SQL = (
    "{rate} * exp(-least(greatest(extract(epoch FROM %(now)s - coalesce(rates_at, %(now)s)), 0) / %(tau)s, 700))"
    " + {amount} * exp(-least(greatest(extract(epoch FROM coalesce(rates_at, %(now)s) - %(now)s), 0) / %(tau)s, 700))"
    " / %(tau)s"
)


def counted_sql(calls: str) -> str:
    """The assignments of an UPDATE of ``routing_budgetperiod`` that count ``calls`` accepted requests
    (an SQL expression) costing ``%(amount)s`` in its counter and smoothed rates (parameters ``now`` and
    ``tau`` too): what a reservation, or a batch of calls admitted against a lease, adds."""
    return (
        f"requests = requests + {calls}, "
        f"request_rate = {_SMOOTHED_ADD_SQL.format(rate='request_rate', amount=f'{calls}::float8')}, "
        f"spend_rate = {_SMOOTHED_ADD_SQL.format(rate='spend_rate', amount='%(amount)s::float8')}, "
        "rates_at = greatest(coalesce(rates_at, %(now)s), %(now)s)"
    )


_RESERVE_SQL = (
    f"UPDATE routing_budgetperiod SET spent_usd = spent_usd + %(amount)s, {counted_sql('1')} "
    "WHERE id = %(period)s AND spent_usd + leased_usd + %(amount)s <= limit_usd "
    "RETURNING limit_usd, spent_usd + leased_usd AS spent_usd, overage_usd"
)


def reserve(*, status: BudgetStatus, amount: Decimal) -> BudgetStatus | None:
    """Add ``amount`` to the period's spend if it still fits under the limit; the new status, or None.

    Also counts the request and its cost in the period's smoothed rates, which pacing reads.
    Must run inside the transaction that writes the decision, so a failed write releases it.
    """
    assert connection.in_atomic_block, "reserve() must run in the decision's transaction"
    with connection.cursor() as cursor:
        cursor.execute(
            _RESERVE_SQL,
            {"amount": amount, "period": status.period_id, "now": timezone.now(), "tau": status.smoothing_seconds},
        )
        row = cursor.fetchone()
    return None if row is None else status.with_amounts(row)


def reserve_with_decision(*, status: BudgetStatus, amount: Decimal, decision: Decision, wait_for_disk: bool):
    """:func:`reserve` and the unsaved ``decision`` row together, as one statement committed in one round
    trip (``rows.py``): the decision is written only if the reservation fits, and the budget period is
    locked only while the database executes and commits it. The new status, or None (nothing written)."""
    insert, row_params = rows.insert_from(decision, source="reserved")
    found = rows.transaction_in_one_round_trip(
        f"WITH reserved AS ({_RESERVE_SQL}), decision AS ({insert}) SELECT limit_usd, spent_usd, overage_usd "
        "FROM reserved",
        {
            "amount": amount,
            "period": status.period_id,
            "now": timezone.now(),
            "tau": status.smoothing_seconds,
            **row_params,
        },
        wait_for_disk=wait_for_disk,
    )
    if not found:
        return None
    rows.saved(decision)
    return status.with_amounts(found[0])


def move_reservation(*, decision: Decision, amount: Decimal) -> bool:
    """Make ``decision`` hold ``amount`` instead of its reservation (the gateway falling back to another
    LLM), if the difference still fits under the limit; False (nothing changed) when it does not."""
    assert connection.in_atomic_block, "move_reservation() must run in the decision's transaction"
    difference = amount - decision.reserved_usd
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE routing_budgetperiod SET spent_usd = spent_usd + %s "
            "WHERE id = %s AND spent_usd + leased_usd + %s <= limit_usd RETURNING id",
            [difference, decision.budget_period_id, difference],
        )
        moved = cursor.fetchone() is not None
    if moved:
        decision.reserved_usd = amount
    return moved


def commit_without_waiting_for_disk() -> None:
    """The current transaction's commit does not wait for its WAL record to reach the disk: one fsync
    less (what it costs: benchmarks/results/measurements.md, *Commits without the disk wait*).
    Visibility and locking are unchanged — other transactions see the
    commit at once; only a crash of the database server (not of a web process) can lose the last
    ~3 × wal_writer_delay (0.6 s by default) of such commits. Callers say what that loss means."""
    assert connection.in_atomic_block, "only the current transaction's commit is relaxed"
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


# Replace a decision's reservation by its actual cost in one statement (see reconcile_pending): the
# decision and its period are locked, the split within the limit / overage computed and both rows
# written by the database alone, so the budget period — one hot row per tenant — is locked for one
# statement and its commit, never while Python code runs (a web process's threads share one GIL: a
# thread holding the lock can wait milliseconds for its turn while every other request of the tenant
# queues behind it). The arithmetic is reconcile()'s below.
_RECONCILE_SQL = """
WITH decision AS (
    SELECT id, budget_period_id, reserved_usd, overage_usd, lambda_reason = %(exhausted)s AS exhausted
    FROM routing_decision WHERE id = %(decision)s AND call_status = %(pending)s FOR UPDATE
), period AS (
    SELECT p.id, p.limit_usd - p.spent_usd - p.leased_usd AS headroom
    FROM routing_budgetperiod p JOIN decision d ON p.id = d.budget_period_id FOR UPDATE OF p
), split AS (
    SELECT d.id, d.budget_period_id, d.reserved_usd, d.overage_usd,
           CASE WHEN d.exhausted THEN LEAST(%(cost)s, d.reserved_usd)
                ELSE LEAST(%(cost)s, d.reserved_usd + p.headroom) END AS within_limit
    FROM decision d JOIN period p ON p.id = d.budget_period_id
), moved AS (
    UPDATE routing_budgetperiod p
    SET spent_usd = p.spent_usd + (s.within_limit - s.reserved_usd),
        overage_usd = p.overage_usd + ((%(cost)s - s.within_limit) - s.overage_usd)
    FROM split s WHERE p.id = s.budget_period_id
    RETURNING p.id
)
UPDATE routing_decision d
SET reserved_usd = s.within_limit, overage_usd = %(cost)s - s.within_limit, {assignments}
FROM split s WHERE d.id = s.id AND EXISTS (SELECT 1 FROM moved)
RETURNING d.id
"""


def reconcile_pending(*, decision_id, cost_usd: Decimal, fields: dict) -> bool:
    """:func:`reconcile` for a decision still pending (a gateway call that just ended), in one
    statement, also setting ``fields`` (column → value) on it; False when it is no longer pending
    (already finished: nothing changes). Must run inside a transaction."""
    assert connection.in_atomic_block, "reconcile_pending() must run in a transaction"
    with connection.cursor() as cursor:
        cursor.execute(*_reconcile_statement(decision_id, cost_usd, fields))
        return cursor.fetchone() is not None


def reconcile_pending_committed(*, decision_id, cost_usd: Decimal, fields: dict) -> bool:
    """:func:`reconcile_pending` as a transaction of its own, committed in one round trip without
    waiting for the disk (``rows.py``; what that gives up: ``commit_without_waiting_for_disk``)."""
    found = rows.transaction_in_one_round_trip(
        *_reconcile_statement(decision_id, cost_usd, fields), wait_for_disk=False
    )
    return bool(found)


def _reconcile_statement(decision_id, cost_usd: Decimal, fields: dict) -> tuple[str, dict]:
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = %({column})s" for column in fields)
    params = {
        **fields,
        "decision": decision_id,
        "cost": cost_usd,
        "pending": Decision.CallStatus.PENDING,
        "exhausted": Decision.LambdaReason.BUDGET_EXHAUSTED,
    }
    return _RECONCILE_SQL.format(assignments=assignments), params


def add_overage(*, status: BudgetStatus, amount: Decimal) -> BudgetStatus:
    """Count a request routed after the budget ran out (the "cheapest" policy) as overage."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE routing_budgetperiod SET overage_usd = overage_usd + %s, requests = requests + 1 "
            "WHERE id = %s RETURNING limit_usd, spent_usd, overage_usd",
            [amount, status.period_id],
        )
        return status.with_amounts(cursor.fetchone())


def count_rejection(*, status: BudgetStatus) -> None:
    BudgetPeriod.objects.filter(id=status.period_id).update(rejected_requests=F("rejected_requests") + 1)
    usage.rejection_count(period_id=status.period_id)  # per day, for the dashboard


def locked(status: BudgetStatus) -> BudgetStatus:
    """The period's current amounts (budget held in leases counted as spent: it is not available), its
    row locked until the transaction ends (SELECT … FOR UPDATE)."""
    assert connection.in_atomic_block
    row = (
        BudgetPeriod.objects.select_for_update()
        .filter(id=status.period_id)
        .values_list("limit_usd", F("spent_usd") + F("leased_usd"), "overage_usd")
        .get()
    )
    return status.with_amounts(row)


def reconcile(*, decision: Decision, cost_usd: Decimal) -> None:
    """Replace what ``decision`` counts in its period by ``cost_usd`` (its actual cost).

    The part that fits under the limit (what the decision already holds plus the period's headroom)
    counts as spend; the rest — a call that cost more than estimated on an almost spent budget —
    counts as overage, so ``spent_usd`` still never exceeds ``limit_usd``. Running it again with the
    same cost changes nothing.
    """
    assert connection.in_atomic_block
    period = BudgetPeriod.objects.select_for_update().get(id=decision.budget_period_id)
    headroom = period.limit_usd - period.spent_usd - period.leased_usd
    within_limit = min(cost_usd, decision.reserved_usd + headroom)
    if decision.lambda_reason == Decision.LambdaReason.BUDGET_EXHAUSTED:
        within_limit = min(cost_usd, decision.reserved_usd)  # routed as overage: stays overage
    over = cost_usd - within_limit
    BudgetPeriod.objects.filter(id=period.id).update(
        spent_usd=F("spent_usd") + (within_limit - decision.reserved_usd),
        overage_usd=F("overage_usd") + (over - decision.overage_usd),
    )
    decision.reserved_usd, decision.overage_usd = within_limit, over

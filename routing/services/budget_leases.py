"""Budget leases: gateway calls admitted in memory, their decisions written in batches (services).

A reservation per call (``budgets.reserve_with_decision``) is a round trip to PostgreSQL that updates
the tenant's budget period — one row that every call of the tenant writes — before the LLM is
called. Under load, that row's lock and the round trip were most of what the gateway added to a call.

A web process instead takes a *lease*: a slice of the period's budget, moved from what is left to the
period's ``leased_usd`` by one conditional statement (:meth:`LeaseBook.take` tops it up), and
recorded as a ``BudgetLease`` row. Calls are admitted against the lease in memory; their decisions
are written afterwards, many per statement (:func:`settle`), which moves each call's reservation
from ``leased_usd`` to ``spent_usd``. The guarantees stay those of a reservation per call:

- never overspent: a lease is granted only from what is left (``spent + leased + grant <= limit``,
  checked by the statement that grants it), and a call is admitted only if its estimate fits in the
  lease — so at any moment ``spent + leased`` counts every admitted call;
- fair to the other processes: a grant is at most ``1 / ROUTERHUB_GATEWAY_LEASE_SHARE`` of what is
  left, so when the budget runs low grants shrink below a call and every call reserves on its own
  again (the exact path, with its "budget spent" policy and 402). A call can be refused while other
  processes still hold up to about one call's estimate each in leases; an idle lease is returned
  after ``ROUTERHUB_GATEWAY_LEASE_IDLE_SECONDS``;
- nothing is lost: a lease's row expires ``ROUTERHUB_GATEWAY_LEASE_SECONDS`` after it was last
  renewed (every grant and every batch renews it). A process that died holding one leaves it
  counted as leased — spend is over-counted, never under-counted — until the periodic sweep
  (:func:`reclaim_expired`) returns it. A process uses a lease only within half its lifetime since
  the last renewal, so a lease is never swept while its holder still admits calls against it.

Leases serve gateway calls with relaxed durability only (``decisions._relaxed_durability``): a
decision written after its call was admitted may be lost with the process, as a relaxed commit may be
lost with the database; its spend was counted all the same (it stays leased until swept).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from routing.models import Decision
from routing.selectors.budgets import BudgetStatus
from routing.services import rows
from routing.services.budgets import counted_sql

# Grant a slice of what is left, from the latest version of the period row (FOR UPDATE): at most
# the wanted amount and a share of the remainder, truncated to the column's precision so that the
# grant can never round past the limit; none when that does not cover the call being admitted.
_GRANT_SQL = """
WITH period AS (
    SELECT id, trunc(LEAST(%(want)s, (limit_usd - spent_usd - leased_usd) / %(share)s), 10) AS amount
    FROM routing_budgetperiod WHERE id = %(period)s FOR UPDATE
), granted AS (
    UPDATE routing_budgetperiod b SET leased_usd = b.leased_usd + p.amount
    FROM period p WHERE b.id = p.id AND p.amount >= %(need)s
    RETURNING p.amount
), lease AS (
    INSERT INTO routing_budgetlease (period_id, holder, amount_usd, expires_at)
    SELECT %(period)s, %(holder)s, amount, now() + make_interval(secs => %(ttl)s) FROM granted
    ON CONFLICT (period_id, holder) DO UPDATE
    SET amount_usd = routing_budgetlease.amount_usd + EXCLUDED.amount_usd, expires_at = EXCLUDED.expires_at
    RETURNING 1
)
SELECT amount FROM granted
"""

# Move a batch's reservations from the lease to the period's spend, count the calls in the period's
# smoothed rates (as a reservation does) and renew the lease. If the lease was returned or swept
# meanwhile (its amount, these calls' included, already given back), the spend is still counted —
# only leased_usd is not reduced twice. The period row is locked first, as a grant locks it.
_SETTLE_SQL = (
    "WITH locked AS (SELECT id FROM routing_budgetperiod WHERE id = %(period)s FOR UPDATE), lease AS ("
    " UPDATE routing_budgetlease SET amount_usd = amount_usd - %(amount)s,"
    " expires_at = now() + make_interval(secs => %(ttl)s)"
    " WHERE period_id = %(period)s AND holder = %(holder)s AND amount_usd >= %(amount)s"
    " AND EXISTS (SELECT 1 FROM locked) RETURNING 1"
    "), settled AS ("
    " UPDATE routing_budgetperiod SET spent_usd = spent_usd + %(amount)s,"
    " leased_usd = leased_usd - CASE WHEN EXISTS (SELECT 1 FROM lease) THEN %(amount)s ELSE 0 END,"
    f" {counted_sql('%(calls)s')}"
    " WHERE id = %(period)s RETURNING 1"
    ")"
)

# Give back what a lease still holds (its holder no longer uses it): the row is deleted and its
# amount leaves leased_usd — whatever the row holds then, so a lease swept meanwhile returns nothing.
_RETURN_SQL = """
WITH locked AS (
    SELECT id FROM routing_budgetperiod WHERE id = %(period)s FOR UPDATE
), lease AS (
    DELETE FROM routing_budgetlease
    WHERE period_id = %(period)s AND holder = %(holder)s AND EXISTS (SELECT 1 FROM locked)
    RETURNING amount_usd
)
UPDATE routing_budgetperiod SET leased_usd = leased_usd - (SELECT amount_usd FROM lease)
WHERE id = %(period)s AND EXISTS (SELECT 1 FROM lease)
RETURNING 1
"""

_RECLAIM_SQL = """
WITH expired AS (
    DELETE FROM routing_budgetlease WHERE expires_at < now() RETURNING period_id, amount_usd
), totals AS (
    SELECT period_id, sum(amount_usd) AS amount, count(*) AS leases FROM expired GROUP BY period_id
), returned AS (
    UPDATE routing_budgetperiod p SET leased_usd = p.leased_usd - t.amount FROM totals t WHERE p.id = t.period_id
    RETURNING t.leases
)
SELECT coalesce(sum(leases), 0) FROM returned
"""

_PROCESS = f"{socket.gethostname()[:60]}:{os.getpid()}"


@dataclass
class Lease:
    """What this process holds of one period: ``remaining`` is not yet promised to any call."""

    period_id: int
    holder: str
    tau: float  # the period's smoothing time of its rates (BudgetStatus.smoothing_seconds)
    remaining: Decimal = Decimal(0)
    renewed_at: float = 0.0  # monotonic time of the last statement that renewed the row (sent before it)
    used_at: float = field(default_factory=time.monotonic)
    granted: Decimal = Decimal(0)  # the last grant
    call_usd: Decimal = Decimal(0)  # the last admitted call's estimate: what a refill must cover
    refilling: bool = False  # a refill is on its way (claim_refill)

    def usable(self, now: float) -> bool:
        return now - self.renewed_at < settings.ROUTERHUB_GATEWAY_LEASE_SECONDS / 2


class LeaseBook:
    """The leases of this process, one per budget period in use."""

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()

    def take(self, *, status: BudgetStatus, amount: Decimal) -> tuple[Lease | None, list[Lease]]:
        """Admit a call of estimated cost ``amount`` against this process's lease of the period, topping
        the lease up from the database when it holds too little. Returns the lease — None when no lease
        covers the call (leases off, or too little left: the caller reserves on its own) — and the
        leases to give back (too old to use, or no longer topped up), which the caller hands to
        :func:`return_lease` after any write already queued against them."""
        calls = settings.ROUTERHUB_GATEWAY_LEASE_CALLS
        if calls <= 0:
            return None, []
        dropped: list[Lease] = []
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(status.period_id)
            if lease is not None and not lease.usable(now):
                dropped.append(self._leases.pop(status.period_id))
                lease = None
            if lease is None:
                lease = Lease(
                    period_id=status.period_id,
                    holder=f"{_PROCESS}:{uuid.uuid4().hex[:12]}",
                    tau=status.smoothing_seconds,
                )
            if lease.remaining < amount:
                # One round trip while holding the lock: the process's other calls of this period would
                # otherwise all top up at once. Once per ROUTERHUB_GATEWAY_LEASE_CALLS calls.
                granted = _grant(lease, want=amount * calls, need=amount - lease.remaining, now=now)
                if granted is None:
                    if self._leases.get(status.period_id) is lease:
                        # Too little left for leases: what this one still holds goes back for others.
                        dropped.append(self._leases.pop(status.period_id))
                    return None, dropped
                lease.remaining += granted
                lease.granted = granted
                self._leases[status.period_id] = lease
            lease.remaining -= amount
            lease.used_at, lease.call_usd = now, amount
            return lease, dropped

    def claim_refill(self, lease: Lease) -> bool:
        """Whether the caller should :meth:`refill` ``lease`` now: half of its last grant is used and no
        refill is on its way. Refilled ahead, a busy lease rarely makes a call wait for a grant."""
        with self._lock:
            if (
                lease.refilling
                or lease.remaining * 2 >= lease.granted
                or self._leases.get(lease.period_id) is not lease
            ):
                return False
            lease.refilling = True
            return True

    def refill(self, lease: Lease) -> None:
        """Top ``lease`` up (after :meth:`claim_refill`), without holding up the calls admitted meanwhile.
        Runs on the writer thread, after every return queued before it: a lease already dropped (and
        perhaps returned) gets nothing — a grant to it would stay leased until the sweep. One dropped
        while the grant is under way gets it, and gives it back with the rest (its return is queued
        behind this)."""
        with self._lock:
            if self._leases.get(lease.period_id) is not lease:
                lease.refilling = False
                return
        try:
            granted = _grant(
                lease,
                want=lease.call_usd * settings.ROUTERHUB_GATEWAY_LEASE_CALLS,
                need=lease.call_usd,
                now=time.monotonic(),
            )
        finally:
            with self._lock:
                lease.refilling = False
        if granted is not None:
            with self._lock:
                lease.remaining += granted
                lease.granted = granted

    def idle(self, *, idle_seconds: float) -> list[Lease]:
        """Drop (and return, for :func:`return_lease`) the leases unused for ``idle_seconds`` or too old."""
        now = time.monotonic()
        with self._lock:
            gone = [
                lease for lease in self._leases.values() if now - lease.used_at >= idle_seconds or not lease.usable(now)
            ]
            for lease in gone:
                del self._leases[lease.period_id]
        return gone

    def all(self) -> list[Lease]:
        """Drop every lease (the process stops)."""
        with self._lock:
            gone, self._leases = list(self._leases.values()), {}
        return gone


# This process's leases (gateway calls only): decisions.py admits against them, the gateway's
# settlement writes, refills and returns them.
leases = LeaseBook()


def _grant(lease: Lease, *, want: Decimal, need: Decimal, now: float) -> Decimal | None:
    found = rows.transaction_in_one_round_trip(
        _GRANT_SQL,
        {
            "period": lease.period_id,
            "holder": lease.holder,
            "want": want,
            "need": need,
            "share": settings.ROUTERHUB_GATEWAY_LEASE_SHARE,
            "ttl": settings.ROUTERHUB_GATEWAY_LEASE_SECONDS,
        },
        wait_for_disk=False,
    )
    if not found:
        return None
    lease.renewed_at = now
    return found[0][0]


@dataclass(frozen=True)
class LeasedCall:
    """A gateway call admitted against a lease: its decision is not written yet."""

    decision: Decision
    lease: Lease


def settle(calls: list[LeasedCall]) -> None:
    """Write the decisions of calls admitted against leases, and move their reservations from the
    leases to the periods' spend: one statement per lease, committed in one round trip each."""
    by_lease: dict[tuple[int, str], list[LeasedCall]] = {}
    for call in calls:
        by_lease.setdefault((call.lease.period_id, call.lease.holder), []).append(call)
    for (period_id, holder), group in by_lease.items():
        started = time.monotonic()
        amount = sum((call.decision.reserved_usd for call in group), Decimal(0))
        inserts, params = (
            [],
            {
                "period": period_id,
                "holder": holder,
                "amount": amount,
                "calls": len(group),
                "now": timezone.now(),
                "tau": group[0].lease.tau,
                "ttl": settings.ROUTERHUB_GATEWAY_LEASE_SECONDS,
            },
        )
        for index, call in enumerate(group):
            insert, row_params = rows.insert_from(call.decision, source="settled", prefix=f"d{index}_")
            inserts.append(f"d{index} AS ({insert})")
            params.update(row_params)
        rows.transaction_in_one_round_trip(f"{_SETTLE_SQL}, {', '.join(inserts)} SELECT 1", params, wait_for_disk=False)
        for call in group:
            rows.saved(call.decision)
        group[0].lease.renewed_at = max(group[0].lease.renewed_at, started)


def return_lease(lease: Lease) -> bool:
    """Give back what ``lease`` still holds; False when it held nothing any more (or was swept)."""
    found = rows.transaction_in_one_round_trip(
        _RETURN_SQL, {"period": lease.period_id, "holder": lease.holder}, wait_for_disk=False
    )
    return bool(found)


def reclaim_expired() -> int:
    """Return the expired leases (their processes stopped renewing them); how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(_RECLAIM_SQL)
        return int(cursor.fetchone()[0])

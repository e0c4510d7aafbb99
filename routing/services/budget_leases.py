"""Budget leases: gateway calls admitted in memory, their decisions written in batches (services).

A reservation per call (``budgets.reserve_with_decision``) is a round trip to PostgreSQL that updates
the tenant's budget period — one row that every call of the tenant writes — before the LLM is
called. Under load, that row's lock and the round trip would be most of what the gateway adds to a
call (benchmarks/results/measurements.md, *Gateway overhead*).

A web process instead takes a *lease*: a slice of the period's budget, moved from what is left to the
period's ``leased_usd`` by one conditional statement (:meth:`LeaseBook.take` tops it up), and
recorded as a ``BudgetLease`` row. Calls are admitted against the lease in memory; their decisions
are written afterwards, many per statement (:func:`settle`), which moves each call's reservation
from ``leased_usd`` to ``spent_usd``. The guarantees stay those of a reservation per call:

- never overspent: a lease is granted only from what is left (``spent + leased + grant <= limit``,
  checked by the statement that grants it), and a call is admitted only if its estimate fits in the
  lease — so at any moment ``spent + leased`` counts every admitted call;
- fair to the other processes: a grant is at most ``1 / LEASE_SHARE`` of what is
  left, so when the budget runs low grants shrink below a call and every call reserves on its own
  again (the exact path, with its "budget spent" policy and 402). A call can be refused while other
  processes still hold up to about one call's estimate each in leases; an idle lease is returned
  after ``LEASE_IDLE_SECONDS``;
- no call is lost or freed: an admitted call's estimate stays in its lease (``leased_usd``) until the
  call is settled — its decision written, or, when the database refuses the row whatever is tried
  (:func:`settle`), charged as spent without it and recorded as unwritten. A lease given back
  (:func:`return_lease`) returns only what its process never admitted; what it admitted stays held for
  the writes still on their way;
- a process that stops (killed, or stalled) stops renewing its lease: the row expires
  ``LEASE_SECONDS`` after its last renewal (every grant and every settle renews it),
  and the periodic sweep (:func:`reclaim_expired`) charges all it still holds as spent. Admission is
  in memory, so the database cannot know which part of a live lease was admitted: what may have been
  billed stays counted, at the cost of over-counting the part never admitted (at most the lease). The
  swept row keeps what was charged: a late write of the same holder takes its share from there (counted
  once), a late return of a stalled holder takes back what it never admitted. A process uses a lease
  only within half its lifetime since the last renewal, so a lease is never swept while its holder
  still admits calls against it;
- a settle that finds nothing held for it (a grant lost by a database crash) still counts its calls:
  into ``spent_usd`` as far as the limit allows, the rest into ``overage_usd``.

Leases serve gateway calls with relaxed durability only (``decisions._relaxed_durability``): a
decision written after its call was admitted may be lost with the process, as a relaxed commit may be
lost with the database; its spend was counted all the same (charged by the sweep).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from routing import metrics
from routing.caches import ProcessCache, process_cache
from routing.models import BudgetLease, BudgetPeriod, Decision
from routing.selectors.budgets import BudgetStatus
from routing.services import rows
from routing.services.budgets import counted_sql

#: Calls' estimates a web process takes of a tenant's budget at once (0: every call reserves on its own).
LEASE_CALLS = 20
#: A grant is at most 1/LEASE_SHARE of what is left of the budget.
LEASE_SHARE = 8
#: A lease expires this long after its last renewal; the sweep then charges what it holds.
LEASE_SECONDS = 60.0
#: An unused lease goes back after this long.
LEASE_IDLE_SECONDS = 10.0

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

# Move what a group of calls of one holder reserved to the period's spend, and count the calls in the
# period's counter and smoothed rates (as a reservation does). What the calls reserved is taken first
# from the holder's lease (``held``: it leaves leased_usd), then from what the sweep already charged
# for the holder (``charged``: spent already — counted once), and whatever neither covers (``late``: a
# grant the database lost) is counted all the same. New spend goes into spent_usd as far as the
# limit allows, the rest into overage_usd — so no CHECK can refuse money already owed. Calls whose
# decisions cannot be written (``written`` false) are charged alike and recorded as unwritten. A
# returned lease whose last admitted calls are settled is deleted. The period row is locked first, as
# a grant locks it.
_SETTLE_SQL = """
WITH period AS (
    SELECT id, limit_usd - spent_usd - leased_usd AS headroom
    FROM routing_budgetperiod WHERE id = %(period)s FOR UPDATE
), lease AS (
    SELECT id, amount_usd, unwritten_usd, returned_at IS NOT NULL AS returned FROM routing_budgetlease
    WHERE period_id = %(period)s AND holder = %(holder)s AND EXISTS (SELECT 1 FROM period) FOR UPDATE
), held AS (
    SELECT p.id, p.headroom, l.id AS lease_id, l.returned, l.amount_usd AS lease_amount,
           l.unwritten_usd AS lease_unwritten, LEAST(%(amount)s, coalesce(l.amount_usd, 0)) AS held
    FROM period p LEFT JOIN lease l ON true
), charged AS (
    SELECT *, LEAST(%(amount)s - held, coalesce(lease_unwritten, 0)) AS charged FROM held
), split AS (
    SELECT *, %(amount)s - held - charged AS late, LEAST(%(amount)s - charged, GREATEST(headroom + held, 0)) AS to_spent
    FROM charged
), lease_kept AS (
    UPDATE routing_budgetlease l
    SET amount_usd = l.amount_usd - s.held, unwritten_usd = l.unwritten_usd - s.charged,
        expires_at = now() + make_interval(secs => %(ttl)s)
    FROM split s
    WHERE l.id = s.lease_id AND NOT (s.returned AND s.lease_amount = s.held AND s.lease_unwritten = s.charged)
    RETURNING 1
), lease_done AS (
    DELETE FROM routing_budgetlease l USING split s
    WHERE l.id = s.lease_id AND s.returned AND s.lease_amount = s.held AND s.lease_unwritten = s.charged
    RETURNING 1
), settled AS (
    UPDATE routing_budgetperiod b
    SET spent_usd = b.spent_usd + s.to_spent,
        overage_usd = b.overage_usd + (%(amount)s - s.charged - s.to_spent),
        leased_usd = b.leased_usd - s.held,
        unwritten_usd = b.unwritten_usd + CASE WHEN %(written)s THEN -s.charged ELSE s.held + s.late END,
        unwritten_calls = b.unwritten_calls + CASE WHEN %(written)s THEN 0 ELSE %(calls)s END,
        {counted}
    FROM split s WHERE b.id = s.id
    RETURNING s.late
)
""".format(counted=counted_sql("%(calls)s"))

# Give back what the holder never admitted (``unadmitted``: the lease's ``remaining`` once the process
# stopped admitting against it): from what the lease holds, then — a lease the sweep charged while its
# holder was stalled — from what the sweep charged. What it holds for calls admitted and not yet
# written stays held until they are written; a lease left with nothing is deleted. Only once: a second
# return would give back again what the first left held for admitted calls.
_RETURN_SQL = """
WITH period AS (
    SELECT id FROM routing_budgetperiod WHERE id = %(period)s FOR UPDATE
), lease AS (
    SELECT id, amount_usd, unwritten_usd FROM routing_budgetlease
    WHERE period_id = %(period)s AND holder = %(holder)s AND returned_at IS NULL AND EXISTS (SELECT 1 FROM period)
    FOR UPDATE
), released AS (
    SELECT id, amount_usd, unwritten_usd, LEAST(%(unadmitted)s, amount_usd) AS released FROM lease
), shares AS (
    SELECT *, LEAST(%(unadmitted)s - released, unwritten_usd) AS uncharged FROM released
), lease_kept AS (
    UPDATE routing_budgetlease l
    SET amount_usd = l.amount_usd - s.released, unwritten_usd = l.unwritten_usd - s.uncharged,
        returned_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
    FROM shares s WHERE l.id = s.id AND (s.amount_usd > s.released OR s.unwritten_usd > s.uncharged)
    RETURNING 1
), lease_done AS (
    DELETE FROM routing_budgetlease l USING shares s
    WHERE l.id = s.id AND s.amount_usd = s.released AND s.unwritten_usd = s.uncharged
    RETURNING 1
)
UPDATE routing_budgetperiod b
SET leased_usd = b.leased_usd - s.released, spent_usd = b.spent_usd - s.uncharged,
    unwritten_usd = b.unwritten_usd - s.uncharged
FROM shares s WHERE b.id = %(period)s
RETURNING s.amount_usd + s.unwritten_usd > 0
"""

_PROCESS = f"{socket.gethostname()[:60]}:{os.getpid()}"
logger = logging.getLogger(__name__)


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
        return now - self.renewed_at < LEASE_SECONDS / 2


class LeaseBook:
    """Leases, one per budget period in use, kept in ``leases`` (a :class:`~routing.caches.ProcessCache`
    of its own unless given: this process's book, :data:`leases`, keeps them in the named one that
    :func:`~routing.caches.reset_all` clears)."""

    def __init__(self, leases: ProcessCache | None = None) -> None:
        self._leases = leases if leases is not None else ProcessCache("budget leases")
        self._lock = self._leases.lock

    def take(self, *, status: BudgetStatus, amount: Decimal) -> tuple[Lease | None, list[Lease]]:
        """Admit a call of estimated cost ``amount`` against this process's lease of the period, topping
        the lease up from the database when it holds too little. Returns the lease — None when no lease
        covers the call (leases off, or too little left: the caller reserves on its own) — and the
        leases to give back (too old to use, or no longer topped up), which the caller hands to
        :func:`return_lease` after any write already queued against them."""
        calls = LEASE_CALLS
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
                # otherwise all top up at once. Once per LEASE_CALLS calls.
                try:
                    granted = _grant(lease, want=amount * calls, need=amount - lease.remaining, now=now)
                except BaseException:
                    for old in dropped:  # back in the book, which returns it when idle or at shutdown
                        if self._leases.get(old.period_id) is None:
                            self._leases.set(old.period_id, old)
                    raise
                if granted is None:
                    if self._leases.get(status.period_id) is lease:
                        # Too little left for leases: what this one still holds goes back for others.
                        dropped.append(self._leases.pop(status.period_id))
                    return None, dropped
                lease.remaining += granted
                lease.granted = granted
                self._leases.set(status.period_id, lease)
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
                want=lease.call_usd * LEASE_CALLS,
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
                self._leases.pop(lease.period_id)
        return gone

    def all(self) -> list[Lease]:
        """Drop every lease (the process stops)."""
        with self._lock:
            gone = self._leases.values()
            self._leases.clear()
        return gone


# This process's leases (gateway calls only): decisions.py admits against them, the gateway's
# settlement writes, refills and returns them.
leases = LeaseBook(process_cache("budget leases"))


def _grant(lease: Lease, *, want: Decimal, need: Decimal, now: float) -> Decimal | None:
    found = rows.transaction_in_one_round_trip(
        _GRANT_SQL,
        {
            "period": lease.period_id,
            "holder": lease.holder,
            "want": want,
            "need": need,
            "share": LEASE_SHARE,
            "ttl": LEASE_SECONDS,
        },
        wait_for_disk=False,
    )
    if not found:
        return None
    lease.renewed_at = now
    metrics.observe_leases("granted")
    return found[0][0]


@dataclass(frozen=True)
class LeasedCall:
    """A gateway call admitted against a lease: its decision is not written yet."""

    decision: Decision
    lease: Lease


def settle(calls: list[LeasedCall]) -> list[LeasedCall]:
    """Write the decisions of calls admitted against leases, and move their reservations from the leases
    to the periods' spend: one statement per lease, committed in one round trip each. Returns the calls
    whose decisions could not be written; their reservations are charged as spent all the same.

    A statement that fails because of the database is tried again (``rows.retried``). One that fails
    because of a row is split: each call on its own, then — a value PostgreSQL cannot store, such as a
    NUL byte — with that value replaced, and a call still refused is charged without its decision. So
    one call's row never keeps another's from being written, and no call is ever given back."""
    by_lease: dict[tuple[int, str], list[LeasedCall]] = {}
    for call in calls:
        by_lease.setdefault((call.lease.period_id, call.lease.holder), []).append(call)
    unwritten: list[LeasedCall] = []
    attempts = rows.WRITE_ATTEMPTS
    for group in by_lease.values():
        try:
            rows.retried(lambda group=group: _settle(group, written=True), attempts=attempts)
        except Exception as error:
            if rows.transient(error):
                # The database stayed unreachable through the retries: the rows are not at fault, and the
                # rest of this batch is tried once each rather than holding up the writer again and again.
                attempts = 1
                unwritten += _charge(group, error, attempts=attempts)
            else:
                unwritten += _settle_one_by_one(group, error)
    return unwritten


def _settle_one_by_one(group: list[LeasedCall], error: Exception) -> list[LeasedCall]:
    """Write each call of ``group`` (of one lease), whose statement failed with ``error``, on its own;
    those that could not be written (charged)."""
    if len(group) > 1:
        logger.warning(
            "writing %d gateway decisions of lease %s together failed (%s): writing them one at a time",
            len(group),
            group[0].lease.holder,
            error,
        )
    unwritten = []
    for call in group:
        if len(group) > 1:
            try:
                rows.retried(lambda call=call: _settle([call], written=True))
                continue
            except Exception as failed:
                error = failed
        if not rows.transient(error) and rows.make_storable(call.decision):
            try:
                rows.retried(lambda call=call: _settle([call], written=True))
                logger.warning("gateway decision %s was written with unstorable characters replaced", call.decision.id)
                continue
            except Exception as failed:
                error = failed
        unwritten += _charge([call], error)
    return unwritten


def _charge(calls: list[LeasedCall], error: Exception, *, attempts: int = rows.WRITE_ATTEMPTS) -> list[LeasedCall]:
    """Charge what ``calls`` (of one lease) reserved as spent, recorded as unwritten (their decisions could
    not be written: ``error``); ``calls``."""
    for call in calls:
        logger.error(
            "gateway decision %s (tenant %s, budget period %s) could not be written (%s): its reservation of %s USD "
            "is charged as spent and recorded as unwritten",
            call.decision.id,
            call.decision.tenant_id,
            call.lease.period_id,
            error,
            call.decision.reserved_usd,
        )
    try:
        rows.retried(lambda: _settle(calls, written=False), attempts=attempts)
    except Exception as failed:
        logger.error(
            "charging %d unwritten gateway decision(s) failed too (%s): their reservations stay held in lease %s, "
            "which the sweep charges as spent once it expires",
            len(calls),
            failed,
            calls[0].lease.holder,
        )
    return calls


def charge_beyond_reservation(call: LeasedCall, amount: Decimal) -> None:
    """Charge ``amount`` to the period of ``call``, whose decision could not be written, as unwritten
    spend: what the call cost beyond its reservation (already charged), once it was metered. Nothing
    of a lease pays for it: it goes into spent as far as the limit allows, the rest into overage."""
    _statement(
        period_id=call.lease.period_id,
        holder="",
        amount=amount,
        calls=0,
        tau=call.lease.tau,
        written=False,
        inserts=[],
    )


def _settle(calls: list[LeasedCall], *, written: bool) -> None:
    started = time.monotonic()
    lease = calls[0].lease
    inserts = []
    for index, call in enumerate(calls if written else []):
        inserts.append(rows.insert_from(call.decision, source="settled", prefix=f"d{index}_"))
    late = _statement(
        period_id=lease.period_id,
        holder=lease.holder,
        amount=sum((call.decision.reserved_usd for call in calls), Decimal(0)),
        calls=len(calls),
        tau=lease.tau,
        written=written,
        inserts=inserts,
    )
    if written:
        for call in calls:
            rows.saved(call.decision)
    lease.renewed_at = max(lease.renewed_at, started)
    if late:
        logger.warning(
            "%s USD of gateway calls (decisions %s) settled against lease %s with nothing held for them: "
            "counted all the same, beyond the limit as overage",
            late,
            ", ".join(str(call.decision.id) for call in calls),
            lease.holder,
        )


def _statement(
    *, period_id: int, holder: str, amount: Decimal, calls: int, tau: float, written: bool, inserts: list
) -> Decimal:
    """Run :data:`_SETTLE_SQL` with the decision ``inserts`` (``rows.insert_from``); the late amount."""
    params = {
        "period": period_id,
        "holder": holder,
        "amount": amount,
        "calls": calls,
        "written": written,
        "now": timezone.now(),
        "tau": tau,
        "ttl": LEASE_SECONDS,
    }
    ctes = []
    for index, (insert, row_params) in enumerate(inserts):
        ctes.append(f", d{index} AS ({insert})")
        params.update(row_params)
    found = rows.transaction_in_one_round_trip(
        f"{_SETTLE_SQL}{''.join(ctes)} SELECT late FROM settled", params, wait_for_disk=False
    )
    if not found:
        raise LookupError(f"budget period {period_id} no longer exists")
    return found[0][0]


def return_lease(lease: Lease) -> bool:
    """Give back what ``lease`` holds that its process never admitted (it admits no more against it: the
    lease was dropped from the book); False when there was nothing to give back or keep (given back
    before, or settled and gone). Calls admitted and not yet written stay held until they are."""
    found = rows.transaction_in_one_round_trip(
        _RETURN_SQL,
        {
            "period": lease.period_id,
            "holder": lease.holder,
            "unadmitted": lease.remaining,
            "ttl": LEASE_SECONDS,
        },
        wait_for_disk=False,
    )
    metrics.observe_leases("returned")
    return bool(found and found[0][0])


def return_leases(returned: list[Lease]) -> None:
    """:func:`return_lease` each of ``returned``, in the calling thread. (The gateway gives leases back
    on its writer thread instead, after the writes and refills queued against them.)"""
    for lease in returned:
        return_lease(lease)


def reclaim_expired() -> int:
    """Charge as spent what expired leases hold (their processes stopped renewing them: killed, or
    stalled for a lease's lifetime); how many there were. A process admits calls in memory, so the
    database cannot tell which part of a lease it had admitted: all of it stays spent, recorded as
    unwritten, and the row stays, so that a late write or return of its holder finds what was charged
    (a write is then not counted twice; a return takes back what was never admitted)."""
    expired = BudgetLease.objects.filter(expires_at__lt=Now(), amount_usd__gt=0)
    swept = 0
    for period_id in sorted(set(expired.values_list("period_id", flat=True))):
        with transaction.atomic():
            period = BudgetPeriod.objects.select_for_update().get(id=period_id)  # locked first, as a settle does
            leases = list(expired.select_for_update().filter(period_id=period_id))
            total = sum((lease.amount_usd for lease in leases), Decimal(0))
            for lease in leases:
                logger.warning(
                    "budget lease %s of %s expired holding %s USD: charged as spent, recorded as unwritten",
                    lease.holder,
                    period,
                    lease.amount_usd,
                )
            BudgetLease.objects.filter(id__in=[lease.id for lease in leases]).update(
                unwritten_usd=F("unwritten_usd") + F("amount_usd"), amount_usd=0
            )
            # spent + leased is unchanged, so the limit still holds
            BudgetPeriod.objects.filter(id=period_id).update(
                spent_usd=F("spent_usd") + total,
                leased_usd=F("leased_usd") - total,
                unwritten_usd=F("unwritten_usd") + total,
            )
            swept += len(leases)
    if swept:
        metrics.observe_leases("swept", swept)
    return swept

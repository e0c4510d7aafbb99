"""Writing what budget leases admitted: decisions in batches, idle leases given back, all in order.

Calls admitted against this process's lease (``routing/services/budget_leases.py``) hand their
unwritten decision to :func:`write`, which the writer thread (``threads.in_background``: one thread,
jobs run in the order given) writes together with the other decisions waiting at that moment — one
statement per lease; a write that fails is retried there, call by call, before anything behind it
runs. A call's metering (:func:`finish`) is handed to the same thread after its decision, so it
always finds the row — or knows that the row could not be written. Leases that are no longer used go
back through the same thread, after the writes already queued against them, and a lease half used is
topped up there too, ahead of need.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from uuid import UUID

from django.db import DatabaseError

from routing.gateway.threads import in_background
from routing.services import budget_leases, rows
from routing.services.budget_leases import Lease, LeasedCall, leases
from routing.services.gateway import CallRecord, MeteredCall, gateway_finish

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_waiting: list[tuple[LeasedCall, Future]] = []
_sweeper: threading.Thread | None = None
# Calls charged without a decision row, until their metering (decision id → the call): what they cost
# beyond their reservation is charged then. Bounded: a call that never gets metered is forgotten.
_unwritten: dict[UUID, LeasedCall] = {}
_UNWRITTEN_KEPT = 10_000


class DecisionNotWritten(Exception):
    """The call's decision could not be written; its reservation is charged as spent all the same."""


def write(call: LeasedCall) -> Future:
    """Queue the decision of a call admitted against a lease; the future is done once it is written."""
    written: Future = Future()
    with _lock:
        _waiting.append((call, written))
        first = len(_waiting) == 1
    if first:  # a flush already queued takes this call too
        in_background(_flush)
    if leases.claim_refill(call.lease):
        in_background(_refill, call.lease)
    _start_sweeper()
    return written


def _refill(lease: Lease) -> None:
    try:
        leases.refill(lease)
    except Exception:  # the next call that finds the lease short tops it up itself
        logger.exception("refilling the budget lease %s failed", lease.holder)


def _flush() -> None:
    with _lock:
        batch = _waiting[:]
        _waiting.clear()
    if not batch:
        return
    try:
        unwritten = {id(call) for call in budget_leases.settle([call for call, _ in batch])}
    except Exception as exc:
        # Not even charged: their reservations stay held in the lease, which keeps them when it goes back
        # and is charged as spent by the sweep once it expires. The calls go on.
        logger.error("writing %d gateway decisions failed", len(batch), exc_info=exc)
        for _, written in batch:
            written.set_exception(exc)
        return
    for call, written in batch:
        if id(call) in unwritten:
            _remember_unwritten(call)
            written.set_exception(DecisionNotWritten(str(call.decision.id)))
        else:
            written.set_result(None)


def _remember_unwritten(call: LeasedCall) -> None:
    with _lock:
        _unwritten[call.decision.id] = call
        while len(_unwritten) > _UNWRITTEN_KEPT:
            del _unwritten[next(iter(_unwritten))]


def finish(*, decision_id: UUID, record: CallRecord, metered: MeteredCall, log_text: bool) -> MeteredCall:
    """Meter a gateway call (``services/gateway.gateway_finish``) on the writer thread, retried as the
    decisions are: after a database error, again (``rows.retried``); when the record itself is refused,
    with what PostgreSQL cannot store replaced (an upstream's error text or answer holding a NUL byte),
    then without its attempts and text — the cost is what must be written. A call whose decision could
    not be written has no row to meter: what it cost beyond its reservation (charged already) is
    charged to its period. Raises when nothing could be written: the decision keeps its reservation."""
    with _lock:
        unwritten = _unwritten.pop(decision_id, None)
    if unwritten is not None:
        beyond = metered.cost_usd - unwritten.decision.reserved_usd
        if beyond > 0:
            rows.retried(lambda: budget_leases.charge_beyond_reservation(unwritten, beyond))
        return metered
    tries = [
        (record, metered, log_text),
        (_storable(record), metered, log_text),
        (
            dataclasses.replace(record, attempts=[], answer_text="", request_body=None),
            MeteredCall(cost_usd=metered.cost_usd, input_tokens=None, output_tokens=None),
            False,
        ),
    ]
    for number, (each_record, each_metered, each_log_text) in enumerate(tries):
        try:
            result = rows.retried(
                lambda r=each_record, m=each_metered, t=each_log_text: gateway_finish(
                    decision_id=decision_id, record=r, metered=m, log_text=t
                )
            )
        except (DatabaseError, UnicodeError, ValueError) as error:  # what was written, or the database
            if rows.transient(error) or number == len(tries) - 1:
                raise
            logger.warning("metering gateway decision %s failed (%s): trying again with less", decision_id, error)
            continue
        if number:
            logger.warning("gateway decision %s was metered with part of its record left out or replaced", decision_id)
        return result
    raise AssertionError("unreachable")


def _storable(record: CallRecord) -> CallRecord:
    return dataclasses.replace(
        record,
        attempts=rows.storable(record.attempts),
        answer_text=rows.storable(record.answer_text),
        request_body=rows.storable(record.request_body),
    )


def give_back(returned: list[Lease]) -> list[Future]:
    """Return leases this process no longer uses, after the writes queued against them."""
    return [in_background(_return, lease) for lease in returned]


def _return(lease: Lease) -> None:
    try:
        rows.retried(lambda: budget_leases.return_lease(lease))
    except Exception:  # what it holds stays held; the sweep charges it once the lease expires
        logger.exception("returning the budget lease %s failed", lease.holder)


def _start_sweeper() -> None:
    global _sweeper
    if _sweeper is not None:
        return
    with _lock:
        if _sweeper is None:
            _sweeper = threading.Thread(target=_sweep_idle, name="budget-lease-sweeper", daemon=True)
            _sweeper.start()


def _sweep_idle() -> None:
    """Give back the leases left unused for LEASE_IDLE_SECONDS (a tenant's traffic
    moved to other processes, or stopped), so that their budget is available to every process."""
    idle = budget_leases.LEASE_IDLE_SECONDS
    every = max(min(idle, budget_leases.LEASE_SECONDS / 4) / 2, 0.05)
    while True:
        time.sleep(every)
        give_back(leases.idle(idle_seconds=idle))


def shutdown() -> None:
    """Write what is queued and give every lease back (the web process stops), waiting for both: the
    writer is one thread, so each job runs after every job queued before it."""
    written = in_background(_flush)
    returned = give_back(leases.all())
    written.result()
    for future in returned:
        future.result()

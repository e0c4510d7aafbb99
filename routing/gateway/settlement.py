"""Writing what budget leases admitted: decisions in batches, idle leases given back, all in order.

Calls admitted against this process's lease (``routing/services/budget_leases.py``) hand their
unwritten decision to :func:`write`, which the writer thread (``threads.in_background``: one thread,
jobs run in the order given) writes together with the other decisions waiting at that moment — one
statement per lease. A call's metering is handed to the same thread after its decision, so it always
finds the row. Leases that are no longer used go back through the same thread, after the writes
already queued against them, and a lease half used is topped up there too, ahead of need.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from django.conf import settings

from routing.gateway.threads import in_background
from routing.services import budget_leases
from routing.services.budget_leases import Lease, LeasedCall, leases

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_waiting: list[tuple[LeasedCall, Future]] = []
_sweeper: threading.Thread | None = None


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
        budget_leases.settle([call for call, _ in batch])
    except Exception as exc:
        # Their spend stays counted (leased) until the lease goes back or is swept; the calls go on.
        logger.error("writing %d gateway decisions failed", len(batch), exc_info=exc)
        for _, written in batch:
            written.set_exception(exc)
        return
    for _, written in batch:
        written.set_result(None)


def give_back(returned: list[Lease]) -> None:
    """Return leases this process no longer uses, after the writes queued against them."""
    for lease in returned:
        in_background(_return, lease)


def _return(lease: Lease) -> None:
    try:
        budget_leases.return_lease(lease)
    except Exception:  # the sweep returns it once it expires
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
    """Give back the leases left unused for ROUTERHUB_GATEWAY_LEASE_IDLE_SECONDS (a tenant's traffic
    moved to other processes, or stopped), so that their budget is available to every process."""
    idle = settings.ROUTERHUB_GATEWAY_LEASE_IDLE_SECONDS
    every = max(min(idle, settings.ROUTERHUB_GATEWAY_LEASE_SECONDS / 4) / 2, 0.05)
    while True:
        time.sleep(every)
        give_back(leases.idle(idle_seconds=idle))


def shutdown() -> None:
    """Write what is queued and give every lease back (the web process stops), waiting for both."""
    give_back(leases.all())
    in_background(_flush).result()  # runs after every job queued before it: the writer is one thread

"""Budget leases against real rows: grants, admission in memory, batched writes, return and sweep.

The gateway's calls through leases (100 concurrent streams on a small budget, leases given back when
the server stops) are in ``tests/processes/test_gateway.py``; writes retried after a database error,
through the writer thread and outside any test transaction, in ``test_settlement.py``.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from registry.models import LLM
from routing.exceptions import BudgetExhausted
from routing.models import BudgetLease, BudgetPeriod, Decision
from routing.selectors.budgets import refreshed
from routing.selectors.routers import RoutableLLM
from routing.services import budget_leases, budgets, decisions
from routing.services.budget_leases import LeaseBook, LeasedCall
from routing.services.scoring import RouteRequest
from routing.services.tenancy import tenant_budget_changed, tenant_create

pytestmark = pytest.mark.django_db
CALL = Decimal("0.01")


@pytest.fixture
def status():
    return budgets.budget_status_current(tenant=tenant_create(name="leases", budget_usd="4.00"))


def period_of(status) -> BudgetPeriod:
    return BudgetPeriod.objects.get(id=status.period_id)


def decision_row(status, amount=CALL) -> Decision:
    """An unsaved gateway decision reserving ``amount`` of the period, as the gateway builds it."""
    llm = LLM.objects.get_or_create(name="org/leased-llm:v1", defaults={"usd_per_mtok_in": 1, "usd_per_mtok_out": 1})[0]
    return Decision(
        tenant_id=period_of(status).tenant_id,
        routed_text="q",
        prompt_tokens=10,
        llm=llm,
        state_version=1,
        strategy="direct",
        lambda_reason=Decision.LambdaReason.DIRECT,
        estimated_cost_usd=amount,
        budget_period_id=status.period_id,
        reserved_usd=amount,
        source=Decision.Source.GATEWAY,
        call_status=Decision.CallStatus.PENDING,
    )


def decision(status, lease) -> LeasedCall:
    return LeasedCall(decision=decision_row(status), lease=lease)


def test_a_lease_is_granted_once_and_calls_are_admitted_from_it_in_memory(status, django_assert_num_queries):
    book = LeaseBook()
    lease, dropped = book.take(status=status, amount=CALL)
    # 20 calls' worth (0.20 USD), within an eighth of the 4.00 USD left (0.50 USD).
    assert dropped == [] and lease.remaining == Decimal("0.19")
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd) == (0, Decimal("0.20"))
    assert BudgetLease.objects.get(holder=lease.holder).amount_usd == Decimal("0.20")
    with django_assert_num_queries(0):
        for _ in range(19):
            assert book.take(status=status, amount=CALL) == (lease, [])
    assert lease.remaining == 0
    topped_up, _ = book.take(status=status, amount=CALL)  # the 21st call tops the same lease up
    assert topped_up is lease and period_of(status).leased_usd == Decimal("0.40")


def test_a_grant_is_at_most_a_share_of_what_is_left(status):
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("3.60"))  # 0.40 left
    lease, _ = LeaseBook().take(status=status, amount=CALL)
    assert lease.remaining + CALL == Decimal("0.05")  # 0.40 / 8, not 20 × 0.01


def test_when_little_is_left_there_is_no_lease_and_what_one_held_goes_back(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("3.75"))  # 0.05 left
    for _ in range(19):
        book.take(status=status, amount=CALL)
    # 0.05 / 8 < 0.01: no grant; the caller reserves on its own and returns the spent-out lease.
    assert book.take(status=status, amount=CALL) == (None, [lease])
    assert book.take(status=status, amount=CALL) == (None, [])


def test_settling_writes_the_decisions_and_moves_their_reservations_to_spend(status):
    book = LeaseBook()
    calls = [decision(status, book.take(status=status, amount=CALL)[0]) for _ in range(3)]
    budget_leases.settle(calls)
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd, period.requests) == (Decimal("0.03"), Decimal("0.17"), 3)
    assert period.request_rate > 0 and period.spend_rate > 0  # pacing sees the calls, as after reserve()
    assert BudgetLease.objects.get().amount_usd == Decimal("0.17")
    written = Decision.objects.filter(id__in=[c.decision.id for c in calls])
    assert written.count() == 3 and {d.reserved_usd for d in written} == {CALL}


def test_a_reservation_of_its_own_counts_the_leased_budget_as_taken(status):
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("3.00"), leased_usd=Decimal("0.995"))
    row = decision_row(status)
    assert budgets.reserve_with_decision(status=status, amount=CALL, decision=row, wait_for_disk=False) is None
    assert refreshed(status).remaining_usd == Decimal("0.005")


def test_returning_a_lease_gives_back_what_it_still_holds(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    budget_leases.settle([decision(status, lease)])
    assert book.all() == [lease]
    assert budget_leases.return_lease(lease) is True
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd) == (CALL, 0) and not BudgetLease.objects.exists()
    assert budget_leases.return_lease(lease) is False  # nothing twice


def test_a_call_written_after_its_lease_went_back_still_counts(status):
    lease, _ = LeaseBook().take(status=status, amount=CALL)
    budget_leases.return_lease(lease)  # the 0.19 never admitted is available again; the call's 0.01 stays held
    assert period_of(status).leased_usd == CALL
    budget_leases.settle([decision(status, lease)])
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd) == (CALL, 0) and not BudgetLease.objects.exists()


def expire(lease) -> None:
    """The holder stopped renewing ``lease`` (its process was killed) a lifetime ago."""
    BudgetLease.objects.filter(holder=lease.holder).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_the_sweep_charges_only_expired_leases(status):
    stopped, _ = LeaseBook().take(status=status, amount=CALL)
    alive, _ = LeaseBook().take(status=status, amount=CALL)
    expire(stopped)
    assert budget_leases.reclaim_expired() == 1
    assert budget_leases.reclaim_expired() == 0  # charged once
    period = period_of(status)
    assert (period.leased_usd, period.spent_usd, period.unwritten_usd) == (Decimal("0.20"),) * 3
    swept = BudgetLease.objects.get(holder=stopped.holder)  # kept: what was charged, for a late write to find
    assert (swept.amount_usd, swept.unwritten_usd) == (0, Decimal("0.20"))
    assert BudgetLease.objects.get(holder=alive.holder).amount_usd == Decimal("0.20")


def test_idle_and_stale_leases_are_dropped_from_the_book(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    assert book.idle(idle_seconds=60) == []
    assert book.idle(idle_seconds=0) == [lease]
    again, _ = book.take(status=status, amount=CALL)
    assert again is not lease  # a new lease, with a holder of its own
    again.renewed_at -= budget_leases.LEASE_SECONDS  # not renewed for a whole lifetime
    newest, dropped = book.take(status=status, amount=CALL)
    assert dropped == [again] and newest is not again


def test_leases_are_off_at_zero_calls(status, monkeypatch):
    monkeypatch.setattr(budget_leases, "LEASE_CALLS", 0)
    assert LeaseBook().take(status=status, amount=CALL) == (None, [])
    assert period_of(status).leased_usd == 0


def test_leased_budget_can_never_be_negative(status):
    with pytest.raises(IntegrityError):
        BudgetPeriod.objects.filter(id=status.period_id).update(leased_usd=Decimal("-0.01"))


def test_a_budget_lowered_under_what_leases_hold_still_takes_their_calls(status):
    lease, _ = LeaseBook().take(status=status, amount=CALL)
    tenant = period_of(status).tenant
    tenant.budget_usd = Decimal("0.05")
    tenant.save()
    tenant_budget_changed(tenant=tenant)
    assert period_of(status).limit_usd == Decimal("0.20")  # not under the 0.20 leased
    budget_leases.settle([decision(status, lease)])  # the admitted call still becomes spend
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd, period.limit_usd) == (CALL, Decimal("0.19"), Decimal("0.20"))


def test_a_lease_half_used_is_refilled_once_ahead_of_need(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    for _ in range(9):
        book.take(status=status, amount=CALL)
    assert lease.remaining == Decimal("0.10") and book.claim_refill(lease) is False  # half left: not yet
    book.take(status=status, amount=CALL)
    assert book.claim_refill(lease) is True and book.claim_refill(lease) is False  # one refill at a time
    book.refill(lease)
    assert lease.remaining == Decimal("0.29") and period_of(status).leased_usd == Decimal("0.40")
    assert book.claim_refill(lease) is False


def test_a_lease_dropped_before_its_refill_gets_no_grant(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    for _ in range(10):
        book.take(status=status, amount=CALL)
    assert book.claim_refill(lease) is True
    assert book.all() == [lease]  # dropped (idle, or the process stops) before the refill ran
    assert budget_leases.return_lease(lease) is True
    book.refill(lease)
    # what the 11 admitted calls reserved stays held for their writes; nothing more was granted
    assert period_of(status).leased_usd == BudgetLease.objects.get().amount_usd == Decimal("0.11")


# --- leases taken out of the book always go back ------------------------------------------------------


def gateway_call(tenant, llm: RoutableLLM, input_tokens: int):
    """A gateway call naming ``llm`` (admitted against this process's lease when one covers it)."""
    request = RouteRequest(text="q", input_tokens=input_tokens, output_tokens=0, source=Decision.Source.GATEWAY)
    return decisions.direct_create(tenant=tenant, llm=llm, request=request)


def test_a_call_refused_with_402_gives_back_the_lease_it_found_too_small(status, monkeypatch):
    book = LeaseBook()
    monkeypatch.setattr(decisions, "leases", book)
    tenant = period_of(status).tenant
    row = LLM.objects.create(name="org/per-token-llm", usd_per_mtok_in=10_000, usd_per_mtok_out=0)
    llm = RoutableLLM.of(row)
    first = gateway_call(tenant, llm, 1)  # 0.01 USD, admitted against a new lease of 0.20
    assert first.leased is not None and period_of(status).leased_usd == Decimal("0.20")
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("3.50"))  # 0.30 left
    with pytest.raises(BudgetExhausted):
        gateway_call(tenant, llm, 100)  # 1.00 USD: the lease is too small, and nothing tops it up
    # Given back: only the admitted call stays held, until its decision is written.
    period = period_of(status)
    assert period.leased_usd == CALL and period.rejected_requests == 1
    assert BudgetLease.objects.get().returned_at is not None
    budget_leases.settle([first.leased])
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd) == (Decimal("3.51"), 0) and not BudgetLease.objects.exists()
    assert budget_leases.reclaim_expired() == 0  # nothing left for the sweep to charge


def test_a_stale_lease_stays_in_the_book_when_the_grant_replacing_it_fails(status, monkeypatch):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    lease.renewed_at -= budget_leases.LEASE_SECONDS  # too old to admit against

    def unreachable(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(budget_leases, "_grant", unreachable)
    with pytest.raises(OperationalError):
        book.take(status=status, amount=CALL)
    assert book.all() == [lease]  # still there for the idle sweep or shutdown to give back


# --- settlement never loses or frees a call -----------------------------------------------------------


@pytest.fixture
def other():
    """A second tenant, whose calls share the writer's batches with the first one's."""
    return budgets.budget_status_current(tenant=tenant_create(name="neighbour", budget_usd="4.00"))


def test_one_unwritable_decision_is_charged_and_the_rest_of_its_batch_is_written(status, other, caplog):
    mine, theirs = LeaseBook().take(status=status, amount=CALL)[0], LeaseBook().take(status=other, amount=CALL)[0]
    good = LeasedCall(decision=decision_row(status), lease=mine)
    bad = LeasedCall(decision=decision_row(other), lease=theirs)
    bad.decision.prompt_tokens = -1  # a row the database refuses (a CHECK), whatever the retries
    neighbour = LeasedCall(decision=decision_row(other), lease=theirs)
    assert budget_leases.settle([good, bad, neighbour]) == [bad]
    assert set(Decision.objects.values_list("id", flat=True)) == {good.decision.id, neighbour.decision.id}
    mine_period, their_period = period_of(status), period_of(other)
    assert (mine_period.spent_usd, mine_period.unwritten_usd, mine_period.requests) == (CALL, 0, 1)
    # the refused call's reservation is spent, recorded as unwritten, never given back to the budget
    assert (their_period.spent_usd, their_period.leased_usd) == (2 * CALL, Decimal("0.18"))
    assert (their_period.unwritten_usd, their_period.unwritten_calls, their_period.requests) == (CALL, 1, 2)
    assert str(bad.decision.id) in caplog.text
    budget_leases.return_lease(theirs)
    assert period_of(other).spent_usd == 2 * CALL and period_of(other).leased_usd == 0


def test_a_nul_byte_in_the_prompt_does_not_keep_the_decision_from_being_written(status):
    lease, _ = LeaseBook().take(status=status, amount=CALL)
    calls = [decision(status, lease), decision(status, lease)]
    calls[1].decision.routed_text = "hi\x00 tell me a long story"
    calls[1].decision.alternatives = [{"llm": "org/odd\ud800-name"}]
    assert budget_leases.settle(calls) == []
    written = Decision.objects.get(id=calls[1].decision.id)
    assert written.routed_text == "hi\ufffd tell me a long story"
    assert written.alternatives == [{"llm": "org/odd\ufffd-name"}]
    period = period_of(status)
    assert (period.spent_usd, period.requests, period.unwritten_usd) == (2 * CALL, 2, 0)


def test_a_lease_returned_before_its_calls_are_written_keeps_them_charged(status):
    book = LeaseBook()
    calls = [decision(status, book.take(status=status, amount=CALL)[0]) for _ in range(3)]
    lease = calls[0].lease
    assert book.all() == [lease]
    assert budget_leases.return_lease(lease) is True  # gives back the 0.17 never admitted, not the 0.03
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd) == (0, 3 * CALL)
    assert refreshed(status).remaining_usd == Decimal("4.00") - 3 * CALL  # not available to other calls
    assert budget_leases.return_lease(lease) is False and period_of(status).leased_usd == 3 * CALL  # only once
    budget_leases.settle(calls)
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd, period.requests) == (3 * CALL, 0, 3)
    assert Decision.objects.count() == 3 and not BudgetLease.objects.exists()


def test_the_sweep_of_a_killed_process_lease_does_not_give_back_its_admitted_calls(status):
    book = LeaseBook()
    for _ in range(3):  # admitted, sent upstream, never written: the process was killed
        book.take(status=status, amount=CALL)
    lease = book.all()[0]
    expire(lease)
    assert budget_leases.reclaim_expired() == 1
    # The database cannot know which part of a live lease was admitted: all of it stays spent.
    assert refreshed(status).remaining_usd == Decimal("3.80")
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd, period.unwritten_usd) == (Decimal("0.20"), 0, Decimal("0.20"))


def test_the_sweep_of_a_returned_lease_charges_exactly_its_admitted_calls(status):
    book = LeaseBook()
    for _ in range(3):
        book.take(status=status, amount=CALL)
    lease = book.all()[0]
    budget_leases.return_lease(lease)  # the process stopped after returning it, before writing the calls
    expire(lease)
    assert budget_leases.reclaim_expired() == 1
    period = period_of(status)
    assert (period.spent_usd, period.leased_usd, period.unwritten_usd) == (3 * CALL, 0, 3 * CALL)


def test_a_write_after_the_sweep_counts_once_even_when_the_budget_is_spent_meanwhile(status):
    book = LeaseBook()
    lease, _ = book.take(status=status, amount=CALL)
    late = decision(status, lease)
    expire(lease)  # the process stalled for a lease's lifetime
    budget_leases.reclaim_expired()
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("4.00"))  # other calls spent the rest
    assert budget_leases.settle([late]) == []
    period = period_of(status)
    assert Decision.objects.filter(id=late.decision.id).exists()
    # charged by the sweep already: written now, not counted twice, not refused by the limit
    assert (period.spent_usd, period.overage_usd, period.unwritten_usd, period.requests) == (
        Decimal("4.00"),
        0,
        Decimal("0.19"),
        1,
    )
    assert book.all() == [lease]
    budget_leases.return_lease(lease)  # the holder is alive after all: what it never admitted comes back
    period = period_of(status)
    assert (period.spent_usd, period.unwritten_usd) == (Decimal("3.81"), 0) and not BudgetLease.objects.exists()


def test_a_write_with_nothing_held_for_it_is_counted_beyond_the_limit_as_overage(status, caplog):
    # A grant the database lost (a crash with relaxed commits), or any settle its lease cannot cover.
    lost = budget_leases.Lease(period_id=status.period_id, holder="host:1:lost", tau=status.smoothing_seconds)
    BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("3.995"))
    call = decision(status, lost)
    assert budget_leases.settle([call]) == []
    period = period_of(status)
    assert Decision.objects.filter(id=call.decision.id).exists()
    assert (period.spent_usd, period.overage_usd, period.requests) == (Decimal("4.00"), Decimal("0.005"), 1)
    assert "host:1:lost" in caplog.text


def test_the_admin_shows_what_was_charged_without_a_decision(status, other, client):
    from django.contrib.auth import get_user_model

    lease, _ = LeaseBook().take(status=other, amount=CALL)
    bad = LeasedCall(decision=decision_row(other), lease=lease)
    bad.decision.prompt_tokens = -1
    budget_leases.settle([bad])
    client.force_login(get_user_model().objects.create_superuser("staff", password="pw-123456"))
    page = client.get("/admin/routing/budgetperiod/").content.decode()
    cells = {  # tenant → {column: what the changelist shows}
        re.search(r'/change/">([^<]+)</a>', row).group(1): dict(re.findall(r'class="field-(\w+)[^"]*">([^<]*)<', row))
        for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)
        if "field-tenant" in row
    }
    assert (cells["neighbour"]["unwritten_usd"], cells["neighbour"]["unwritten_calls"]) == ("0.0100000000", "1")
    assert cells["neighbour"]["spent_usd"] == "0.0100000000"  # charged, not given back
    assert (cells["leases"]["unwritten_usd"], cells["leases"]["unwritten_calls"]) == ("0.0000000000", "0")
    detail = client.get(f"/admin/routing/budgetperiod/{other.period_id}/change/").content.decode()
    assert re.search(r"Unwritten usd:</label>\s*<div class=\"readonly\">0.0100000000</div>", detail)

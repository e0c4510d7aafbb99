"""The gateway's settlement outside any test transaction, as in production: each statement committed on
its own, the writer thread with its own connection, a database error met and retried, a call's
metering written although what the upstream sent cannot be stored as it is."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from registry.models import LLM
from routing.gateway import settlement
from routing.models import BudgetPeriod, Decision, GatewayExchange
from routing.services import budget_leases, budgets
from routing.services.budget_leases import LeaseBook, LeasedCall
from routing.services.gateway import Billing, CallRecord, MeteredCall
from routing.services.tenancy import tenant_create
from tests.routing.services.test_budget_leases import CALL, decision_row, period_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def status(monkeypatch):
    # The writer thread's connection closes after each job, as in the gateway's tests: none stays open
    # on the test database when the test ends.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    return budgets.budget_status_current(tenant=tenant_create(name="settled", budget_usd="4.00"))


def test_a_settle_that_meets_a_database_error_is_retried_until_it_is_written(status):
    lease, _ = LeaseBook().take(status=status, amount=CALL)
    call = LeasedCall(decision=decision_row(status), lease=lease)
    locked, release = threading.Event(), threading.Event()

    def hold_the_budget_row():  # another transaction keeps the tenant's budget row locked for 0.4 s
        with transaction.atomic():
            BudgetPeriod.objects.select_for_update().get(id=status.period_id)
            locked.set()
            release.wait(0.4)
        connection.close()

    holder = threading.Thread(target=hold_the_budget_row)
    holder.start()
    locked.wait(5)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '50ms'")  # the settle's wait for the row fails: LockNotAvailable
    try:
        started = time.monotonic()
        assert budget_leases.settle([call]) == []
        waited = time.monotonic() - started
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        holder.join()
    assert waited >= 0.3  # it failed while the row was locked, and was written once it was free
    period = period_of(status)
    assert Decision.objects.filter(id=call.decision.id).exists()
    assert (period.spent_usd, period.leased_usd, period.unwritten_usd, period.requests) == (CALL, Decimal("0.19"), 0, 1)


def test_the_writer_thread_writes_each_call_of_a_batch_that_one_bad_row_failed(status, caplog):
    neighbour = budgets.budget_status_current(tenant=tenant_create(name="neighbour", budget_usd="4.00"))
    mine, theirs = LeaseBook().take(status=status, amount=CALL)[0], LeaseBook().take(status=neighbour, amount=CALL)[0]
    retired = LLM.objects.create(name="org/retired-llm:v1", usd_per_mtok_in=1, usd_per_mtok_out=1)
    bad = LeasedCall(decision=decision_row(status), lease=mine)
    bad.decision.llm = retired
    retired.delete()  # staff deleted the LLM while its call was in flight: the row fails at COMMIT
    nul = LeasedCall(decision=decision_row(status), lease=mine)
    nul.decision.routed_text = "hi\x00 tell me a long story"
    other = LeasedCall(decision=decision_row(neighbour), lease=theirs)
    futures = [settlement.write(call) for call in (bad, nul, other)]
    for future in futures[1:]:
        assert future.result(timeout=10) is None
    with pytest.raises(settlement.DecisionNotWritten):
        futures[0].result(timeout=10)
    assert set(Decision.objects.values_list("id", flat=True)) == {nul.decision.id, other.decision.id}
    assert Decision.objects.get(id=nul.decision.id).routed_text == "hi\ufffd tell me a long story"
    period = period_of(status)
    assert (period.spent_usd, period.requests, period.unwritten_usd, period.unwritten_calls) == (2 * CALL, 2, CALL, 1)
    assert period_of(neighbour).spent_usd == CALL
    assert str(bad.decision.id) in caplog.text

    # Its metering finds no row: the reservation was charged, and what the call cost beyond it is too.
    metered = MeteredCall(cost_usd=Decimal("0.015"), input_tokens=10, output_tokens=5)
    record = CallRecord(status=Decision.CallStatus.OK, attempts=[], latency_ms=5.0, billing=Billing.SEEN)
    settlement.finish(decision_id=bad.decision.id, record=record, metered=metered, log_text=False)
    before, period = period, period_of(status)
    assert (period.spent_usd, period.unwritten_usd) == (2 * CALL + Decimal("0.005"), Decimal("0.015"))
    assert period.requests == 2  # the call was counted when it was charged
    # pacing sees the extra spend as any other: smoothed over the period's own time constant
    assert period.spend_rate == pytest.approx(before.spend_rate + 0.005 / status.smoothing_seconds, rel=1e-3)


def test_metering_is_written_when_what_the_upstream_sent_holds_a_nul_byte(status):
    tenant = period_of(status).tenant
    tenant.log_gateway_text = True
    tenant.save()
    reservation = Decimal("0.02")
    row = decision_row(status, amount=reservation)
    assert budgets.reserve_with_decision(status=status, amount=reservation, decision=row, wait_for_disk=False)
    record = CallRecord(
        status=Decision.CallStatus.OK,
        attempts=[
            {"llm": "org/first", "outcome": "http_500", "status": 500, "error": "HTTP 500: \x00broken"},
            {"llm": "org/leased-llm:v1", "outcome": "ok", "status": 200},
        ],
        latency_ms=12.5,
        billing=Billing.SEEN,
        answer_text="here\x00 it is",
        request_body={"messages": [{"role": "user", "content": "q"}]},
    )
    metered = MeteredCall(cost_usd=Decimal("0.0123"), input_tokens=40, output_tokens=9)
    settlement.finish(decision_id=row.id, record=record, metered=metered, log_text=True)
    written = Decision.objects.get(id=row.id)
    assert (written.call_status, written.actual_cost_usd, written.output_tokens) == ("ok", Decimal("0.0123"), 9)
    assert written.attempts[0]["error"] == "HTTP 500: \ufffdbroken"
    assert GatewayExchange.objects.get(decision_id=row.id).response_text == "here\ufffd it is"
    assert period_of(status).spent_usd == Decimal("0.0123")  # the metered cost, not the reservation

"""Output serializers rendered by one shared instance (``represent``) give what a new one gives."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace

from routing.apis.serializers import BudgetStatusSerializer, represent


def _status(index: int) -> SimpleNamespace:
    return SimpleNamespace(
        tenant=f"tenant-{index}",
        period="month",
        limit_usd=10.0 + index,
        spent_usd=index / 4,
        remaining_usd=10.0 + index - index / 4,
        overage_usd=0.0,
        ends_at=datetime(2027, 1, 1, tzinfo=UTC),
        when_spent="reject",
    )


def test_a_shared_serializer_renders_what_a_new_one_renders():
    status = _status(3)

    assert represent(BudgetStatusSerializer, status) == BudgetStatusSerializer(status).data
    assert represent(BudgetStatusSerializer, status)["tenant"] == "tenant-3"
    assert represent(BudgetStatusSerializer, status)["period_ends_at"] == "2027-01-01T00:00:00Z"


def test_threads_rendering_at_once_each_get_their_own_values():
    with ThreadPoolExecutor(8) as pool:
        rendered = list(pool.map(lambda i: represent(BudgetStatusSerializer, _status(i)), range(400)))

    assert [body["tenant"] for body in rendered] == [f"tenant-{i}" for i in range(400)]
    assert [body["spent_usd"] for body in rendered] == [i / 4 for i in range(400)]

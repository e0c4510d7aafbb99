"""Serializers reused across requests (``represent``, ``validated``) give what a new one gives."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from rest_framework.exceptions import ValidationError

from routing.apis.decisions import RouteCreateApi
from routing.apis.serializers import BudgetStatusSerializer, represent, validated

RouteInput = RouteCreateApi.InputSerializer


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


def _errors_of_a_new_serializer(data) -> dict:
    serializer = RouteInput(data=data)
    assert not serializer.is_valid()
    return serializer.errors


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": 3, "lambda": "0.5"},
        {"prompt": "hi", "lamda": 1},
        {"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        ["not", "an", "object"],
        {},
    ],
)
def test_a_reused_input_serializer_refuses_what_a_new_one_refuses_with_the_same_errors(data):
    with pytest.raises(ValidationError) as refused:
        validated(RouteInput, data)
    assert refused.value.detail == _errors_of_a_new_serializer(data)


def test_a_reused_input_serializer_accepts_what_a_new_one_accepts():
    data = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "lambda": 0.25, "models": ["a/b", "c@d"]}
    fresh = RouteInput(data=data)
    assert fresh.is_valid(), fresh.errors
    assert validated(RouteInput, data) == fresh.validated_data
    assert validated(RouteInput, {"prompt": "hi"}) == {"prompt": "hi"}  # nothing left over from the call before


def test_a_reused_input_serializer_reads_the_message_cap_on_every_call(settings):
    messages = [{"role": "user", "content": f"turn {i}"} for i in range(8)]
    settings.ROUTERHUB_MAX_MESSAGES = 20
    assert len(validated(RouteInput, {"messages": messages})["messages"]) == 8
    settings.ROUTERHUB_MAX_MESSAGES = 5
    with pytest.raises(ValidationError) as refused:
        validated(RouteInput, {"messages": messages})
    assert "no more than 5" in str(refused.value.detail["messages"])

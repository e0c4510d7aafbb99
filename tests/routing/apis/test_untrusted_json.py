"""/api/ checks bodies with the gateway's validator (routing/json_checks.py): numbers too, wherever they are."""

from __future__ import annotations

import pytest

from routing.models import Decision
from tests.fixtures.api import ROUTE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("number", "said"),
    [("1e999", "is not a finite number"), (str(2**64), "is an integer beyond ±9,223,372,036,854,775,807 (64 bits)")],
)
def test_a_number_nothing_can_hold_is_a_400_naming_it_even_where_the_route_ignores_it(api, fitted, number, said):
    body = '{"messages": [{"role": "user", "content": "What is 2 + 2?", "weight": ' + number + "}]}"
    response = api.post(ROUTE, body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["fields"] == {"messages": [f"`messages[0].weight` {said}."]}
    assert not Decision.objects.exists()
    assert api.post(ROUTE, body.replace(number, "1")).status_code == 200

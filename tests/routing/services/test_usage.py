"""Daily usage roll-ups: the same figures as the decisions they sum, written once however often they run."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from routing.models import BudgetPeriod, Decision, RejectionDay, UsageDay, UsageRollup
from routing.selectors.usage import usage_grouped
from routing.services.usage import usage_rollup_due
from tests.fixtures.api import ApiClient, sample_prompts

pytestmark = pytest.mark.django_db


def move_back(decision_ids, days: int) -> None:
    for i, decision_id in enumerate(decision_ids):
        Decision.objects.filter(id=decision_id).update(created_at=timezone.now() - timedelta(days=days, minutes=i))


def test_rollups_sum_the_decisions_of_closed_days_and_running_twice_changes_nothing(site):
    move_back(site.decisions_a[:4], days=2)
    move_back(site.decisions_b, days=1)
    today = timezone.now().astimezone(UTC).date()
    window = {"since": today - timedelta(days=5), "until": today}
    live = usage_grouped(by=("day", "tenant_id", "llm_id"), **window)

    rolled = usage_rollup_due()
    # closed days whole, and today up to the last full hour (the decisions just made are not in it)
    assert rolled == [today - timedelta(days=2), today - timedelta(days=1), today]
    rows = list(UsageDay.objects.values_list("day", "tenant_id", "llm_id", "requests", "spent_usd"))
    assert sum(r[3] for r in rows) == 7  # 4 of alpha's and 3 of beta's decisions were made on closed days
    expected = (
        Decision.objects.filter(created_at__lt=datetime.combine(today, datetime.min.time(), tzinfo=UTC))
        .values("tenant_id", "llm_id")
        .annotate(n=Count("id"), usd=Sum("reserved_usd"))
    )
    assert sorted((r["tenant_id"], r["llm_id"], r["n"], r["usd"]) for r in expected) == sorted(
        (tenant, llm, n, usd) for _, tenant, llm, n, usd in rows
    )
    # the dashboard reads the same figures from the roll-ups as it did from the decisions
    assert usage_grouped(by=("day", "tenant_id", "llm_id"), **window) == live

    usage_rollup_due()
    assert UsageDay.objects.count() == len(rows) and UsageRollup.objects.count() == 3


def test_today_is_rolled_up_to_the_last_full_hour_and_the_rest_read_live(site):
    now = timezone.now().astimezone(UTC)
    earlier = now.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=30)
    if earlier.date() != now.date():
        pytest.skip("the first half hour of a UTC day has no earlier hour today")
    move_back(site.decisions_a[:2], days=0)
    Decision.objects.filter(id__in=site.decisions_a[:2]).update(created_at=earlier)
    today = now.date()
    live = usage_grouped(by=("tenant_id",), since=today, until=today)
    usage_rollup_due(now=now)
    assert UsageDay.objects.filter(day=today).aggregate(n=Sum("requests"))["n"] == 2  # before this hour
    assert UsageRollup.objects.get(day=today).through == now.replace(minute=0, second=0, microsecond=0)
    assert usage_grouped(by=("tenant_id",), since=today, until=today) == live  # roll-up + this hour, live


def test_late_feedback_reaches_the_rollup_the_next_time_it_runs(site):
    move_back(site.decisions_a[:1], days=1)
    usage_rollup_due()
    Decision.objects.filter(id=site.decisions_a[0]).update(reserved_usd=Decimal("0.5"))
    usage_rollup_due()
    assert UsageDay.objects.get().spent_usd == Decimal("0.5")


def test_refused_requests_are_counted_per_day(make_tenant, fitted):
    tenant, key = make_tenant(name="tiny", budget_usd="0.000001")
    client = ApiClient(key)
    answers = [client.route(prompt).status_code for prompt in sample_prompts(3)]
    assert answers.count(402) == 3
    day = RejectionDay.objects.get(tenant=tenant)
    assert (day.day, day.rejected) == (timezone.now().astimezone(UTC).date(), 3)
    assert BudgetPeriod.objects.get(tenant=tenant).rejected_requests == 3

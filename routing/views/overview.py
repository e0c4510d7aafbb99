"""Overview: requests, spend and predicted quality per day; shares by LLM; budgets and their pace; 402s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.shortcuts import render
from django.utils import timezone

from registry.selectors import llm_names
from routing.selectors.budgets import BudgetPace, budget_paces
from routing.selectors.usage import days_between, rejections_by_day, usage_grouped
from routing.views import charts
from routing.views.base import base_context, dashboard_page
from routing.views.formatting import count, percent, quality, usd, usd_axis

DAYS = 30
TOP_LLMS = 10


@dashboard_page("overview")
def overview(request):
    scope = request.viewer.scope(request)
    now = timezone.now()
    until = now.astimezone(UTC).date()
    since = until - timedelta(days=DAYS - 1)
    days = days_between(since, until)
    daily = usage_grouped(by=("day",), since=since, until=until, tenant=scope)
    rows = [daily.get((d,)) for d in days]
    rejected = rejections_by_day(since=since, until=until, tenant=scope)
    by_llm = usage_grouped(by=("llm_id",), since=since, until=until, tenant=scope)
    budgets_shown = request.viewer.may_see("budgets")
    paces = budget_paces(tenant=scope, now=now) if budgets_shown else []
    totals = {
        "requests": sum(r.requests for r in rows if r),
        "spent_usd": sum((r.spent_usd for r in rows if r), start=0),
        "rejected": sum(rejected.values()),
        "fallbacks": sum(r.fallbacks for r in rows if r),
    }
    context = base_context(
        request,
        page="overview",
        title="Overview",
        since=since,
        until=until,
        totals=totals,
        requests_chart=_requests_chart(days, rows),
        spend_chart=_spend_chart(days, rows),
        quality_chart=_quality_chart(days, rows),
        share_chart=_share_chart(by_llm),
        refusals_chart=_refusals_chart(days, rows, rejected),
        budgets_shown=budgets_shown,
        budgets=[(pace, _pace_chart(pace, now)) for pace in paces],
    )
    return render(request, "dashboard/overview.html", context)


def _requests_chart(days, rows) -> charts.Chart:
    values = [r.requests if r else 0 for r in rows]
    busiest = max(range(len(days)), key=lambda i: values[i])
    return charts.daily_chart(
        days,
        "requests",
        values,
        title="Requests per day",
        summary=(
            f"{count(sum(values))} requests in the last {len(days)} days; the busiest day was "
            f"{charts.day_label(days[busiest])} with {count(values[busiest])}."
            if sum(values)
            else f"No requests in the last {len(days)} days."
        ),
        shown=count,
        axis=count,
    )


def _spend_chart(days, rows) -> charts.Chart:
    values = [float(r.spent_usd) if r else 0.0 for r in rows]
    return charts.daily_chart(
        days,
        "spend",
        values,
        title="Spend per day (USD)",
        summary=f"{usd(sum(values))} spent in the last {len(days)} days, {usd(sum(values) / len(days))} a day on average.",
        shown=usd,
        axis=usd_axis,
    )


def _quality_chart(days, rows) -> charts.Chart:
    points = [(i, r.mean_predicted_quality) for i, r in enumerate(rows) if r and r.requests]
    mean = sum(r.predicted_quality_sum for r in rows if r) / max(sum(r.requests for r in rows if r), 1)
    return charts.xy_chart(
        [charts.Series("mean predicted quality", points, kind="line" if len(points) > 1 else "points")],
        title="Mean predicted quality per day",
        summary=(
            f"The routed LLMs' predicted quality averaged {quality(mean)} over the last {len(days)} days."
            if points
            else "No requests, so no predicted quality, in the last 30 days."
        ),
        x_format=lambda v: charts.day_label(days[min(max(int(round(v)), 0), len(days) - 1)]),
        x_ticks=list(range(0, len(days), 5)),
        x_range=(0, len(days) - 1),
        y_range=(0.0, 1.0),
        y_format=quality,
        legend=False,
        height=220,
        table_head=("day", "mean predicted quality"),
        table_rows=tuple((charts.day_label(days[i]), quality(q)) for i, q in points),
    )


def _share_chart(by_llm: dict) -> charts.Chart:
    names = llm_names(ids=[key[0] for key in by_llm])
    total_requests = sum(r.requests for r in by_llm.values()) or 1
    total_spend = float(sum((r.spent_usd for r in by_llm.values()), start=0)) or 1.0
    ranked = sorted(by_llm.items(), key=lambda item: (-item[1].requests, names.get(item[0][0], "")))
    rows = [
        (names.get(key[0], "?"), r.requests / total_requests, float(r.spent_usd) / total_spend)
        for key, r in ranked[:TOP_LLMS]
    ]
    rest = ranked[TOP_LLMS:]
    if rest:
        rows.append(
            (
                f"{len(rest)} other LLMs",
                sum(r.requests for _, r in rest) / total_requests,
                float(sum((r.spent_usd for _, r in rest), start=0)) / total_spend,
            )
        )
    top = rows[0] if rows else None
    return charts.share_bars(
        rows,
        title="Share of requests and of spend by LLM",
        column_names=("requests", "spend"),
        summary=(
            f"{top[0]} took the most requests ({percent(top[1])}) and {percent(top[2])} of the spend."
            if top
            else "No requests in the last 30 days."
        ),
        table_head=("LLM", "share of requests", "share of spend"),
        table_rows=tuple((name, percent(a), percent(b)) for name, a, b in rows),
    )


def _refusals_chart(days, rows, rejected: dict) -> charts.Chart:
    refused = [rejected.get(d, 0) for d in days]
    fallbacks = [r.fallbacks if r else 0 for r in rows]
    return charts.bar_chart(
        [charts.day_label(d) for d in days],
        [("refused (402)", refused), ("routed to the cheapest LLM (budget spent)", fallbacks)],
        title="Requests refused with 402, and budget fallbacks, per day",
        summary=(
            f"{count(sum(refused))} requests were refused because a budget was spent, and {count(sum(fallbacks))} "
            f"were routed to the cheapest allowed LLM instead, in the last {len(days)} days."
        ),
        y_format=count,
        label_every=5,
        height=200,
        table_head=("day", "refused (402)", "budget fallbacks"),
        table_rows=tuple((charts.day_label(d), count(a), count(b)) for d, a, b in zip(days, refused, fallbacks)),
    )


def _pace_chart(pace: BudgetPace, now: datetime) -> charts.Chart:
    start = pace.starts_at
    offset = lambda moment: (moment - start).total_seconds() / 86400  # noqa: E731
    spent_points = [(0.0, 0.0)] + [
        (
            offset(datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
            if d < now.date()
            else offset(now),
            float(v),
        )
        for d, v in pace.cumulative
    ]
    end = offset(pace.ends_at)
    series = [
        charts.Series("spent", spent_points, colour=charts.colour(0)),
        charts.Series(
            "at the last 24 h's rate",
            [(offset(now), float(pace.spent_usd)), (end, float(pace.projected_usd))],
            kind="dashed",
            colour=charts.colour(1),
        ),
        charts.Series("limit", [(0.0, float(pace.limit_usd)), (end, float(pace.limit_usd))], colour="#999"),
    ]
    return charts.xy_chart(
        series,
        title=f"Budget of {pace.tenant}",
        summary=pace_sentence(pace),
        x_format=lambda v: charts.day_label((start + timedelta(days=v)).date()),
        y_format=usd_axis,
        y_from_zero=True,
        width=420,
        height=190,
        table_head=("day", "spent by the end of the day"),
        table_rows=tuple((charts.day_label(d), usd(v)) for d, v in pace.cumulative),
    )


def pace_sentence(pace: BudgetPace) -> str:
    text = (
        f"{pace.tenant} has spent {usd(pace.spent_usd)} of {usd(pace.limit_usd)} ({percent(pace.spent_share)}) "
        f"this {pace.period}; at the last 24 hours' rate ({usd(pace.usd_per_day)} a day) it ends the {pace.period} at "
        f"{usd(pace.projected_usd)} ({percent(pace.projected_share, decimals=0)} of the limit)"
    )
    if pace.runs_out_at is not None:
        text += f", and the budget runs out on {pace.runs_out_at:%d %b at %H:%M} UTC"
    return text + "."

"""docs/grafana/routerhub.json against routing/metrics.py: every PromQL expression of the dashboard
names only series /metrics exports, and every metric it exports is on the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from routing import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "routerhub.json"

# PromQL's own words (functions, aggregations, keywords) the dashboard may use.
PROMQL = {
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "by",
    "without",
    "ignoring",
    "on",
    "group_left",
    "group_right",
    "max",
    "min",
    "avg",
    "topk",
    "clamp_min",
}


def _series() -> dict[str, set[str]]:
    """Each metric of routing/metrics.py: the series names a scrape shows for it."""
    exported = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            exported[value._name] = {f"{value._name}_total"}
        elif isinstance(value, Histogram):
            exported[value._name] = {f"{value._name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        elif isinstance(value, Gauge):
            exported[value._name] = {value._name}
    return exported


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def names_in(expr: str) -> set[str]:
    """The series an expression reads: its identifiers once label matchers, ranges, strings and the
    label lists of ``by``/``without``/``ignoring``/``on``/``group_*`` are taken out, less PromQL's words."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|ignoring|on|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if word not in PROMQL}


def test_every_expression_of_the_dashboard_names_only_exported_series():
    exported = set().union(*_series().values())
    expressions = _expressions()
    assert len(expressions) >= 10
    unknown = {expr: names_in(expr) - exported for expr in expressions if names_in(expr) - exported}
    assert unknown == {}


def test_every_exported_metric_is_on_the_dashboard():
    shown = set().union(*(names_in(expr) for expr in _expressions()))
    assert {name for name, series in _series().items() if not series & shown} == set()


def test_the_check_sees_a_metric_that_is_not_exported():
    assert names_in('sum by (llm) (rate(routerhub_upstream_errors_total{llm!="x"}[5m]))') == {
        "routerhub_upstream_errors_total"
    }
    assert names_in("histogram_quantile(0.95, sum by (le) (rate(routerhub_stage_seconds_bucket[5m])))") == {
        "routerhub_stage_seconds_bucket"
    }


def test_the_datasource_is_a_template_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert all(target["datasource"]["uid"] == "${DS_PROMETHEUS}" for target in panel["targets"])

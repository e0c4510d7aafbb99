"""The SVG charts and number formats, on plain values (no database)."""

import re

from routing.views import charts
from routing.views.formatting import lam, percent, quality, usd_axis


def test_numbers_are_formatted_for_people():
    assert quality(0.34701859951019287) == "0.347"
    assert quality(None) == "—"
    assert percent(0.1234) == "12.3%"
    assert [lam(v) for v in (0, 0.004567, 3.14159, 1234.5)] == ["0", "4.57e-03", "3.14", "1,234"]
    assert [usd_axis(v) for v in (0, 0.0005, 0.8, 12, 40_000, 1_500_000)] == [
        "$0",
        "$0.0005",
        "$0.80",
        "$12",
        "$40k",
        "$1.5M",
    ]


def test_ticks_are_round_numbers_covering_the_range():
    assert charts.nice_ticks(0, 0.93) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts.nice_ticks(0, 3457, 4) == [0, 1000, 2000, 3000, 4000]
    assert charts.log_ticks(3e-5, 3e-3) == [5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3]


def test_a_line_chart_draws_every_series_and_escapes_names():
    chart = charts.xy_chart(
        [
            charts.Series("<script>alert(1)</script>", [(0, 0.1), (1, 0.5), (2, 0.4)]),
            charts.Series("b", [(0, 1), (2, 0)], kind="dashed"),
        ],
        title="t & u",
        summary="two lines",
    )
    assert chart.svg.count("<polyline") == 2 and 'stroke-dasharray="6 4"' in chart.svg
    assert "<script>" not in chart.svg and "&lt;script&gt;" in chart.svg
    assert 'aria-label="t &amp; u"' in chart.svg


def test_a_heatmap_has_a_cell_per_value_and_frames_the_marked_ones():
    chart = charts.heatmap(
        ["a", "b"], ["#0", "#1", "#2"], [[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]], title="h", summary="s", marked={(1, 2)}
    )
    assert chart.svg.count('class="cell"') == 6
    assert len(re.findall(r'stroke="#000"', chart.svg)) == 1
    assert ">0.90<" in chart.svg  # the default cell format


def test_an_empty_chart_says_so_instead_of_drawing_nothing():
    chart = charts.xy_chart([charts.Series("none", [])], title="empty", summary="no data")
    assert "no data yet" in chart.svg


def test_bars_stack_or_stand_side_by_side():
    def bars(svg):
        return [tuple(float(v) for v in m) for m in re.findall(r'<rect class="series" x="([\d.]+)" y="([\d.]+)"', svg)]

    stacked = charts.bar_chart(["a"], [("x", [1]), ("y", [1])], title="t", summary="s")
    side = charts.bar_chart(["a"], [("x", [1]), ("y", [1])], title="t", summary="s", stacked=False)
    (x1, y1), (x2, y2) = bars(stacked.svg)
    assert x1 == x2 and y2 < y1  # the second bar sits on the first
    (x1, y1), (x2, y2) = bars(side.svg)
    assert x2 > x1 and y1 == y2  # next to it, as tall

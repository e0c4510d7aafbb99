"""Server-rendered SVG charts: no JavaScript, no chart library, nothing fetched at run time.

Each function returns a :class:`Chart`: the SVG markup plus a one-sentence summary; the template
partial ``dashboard/partials/chart.html`` shows the figure with that sentence and a data table as
its text alternative. Everything that comes from data (LLM names, labels) is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape

from django.utils.safestring import SafeString, mark_safe

# Tableau 10: distinguishable, and readable by most colour-blind people.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
FONT = 'font-family="system-ui, sans-serif"'
Format = Callable[[float], str]


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True)
class Chart:
    svg: SafeString
    summary: str  # the sentence that says what the chart shows (its text alternative, with the table)
    table_head: tuple[str, ...] = ()
    table_rows: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    kind: str = "line"  # line | dashed | points | step
    colour: str = ""
    labels: Sequence[str] = ()  # per point, for "points" (drawn next to each point)


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 64
    right: int = 16
    top: int = 12
    bottom: int = 36
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)
    x_log: bool = False
    parts: list[str] = field(default_factory=list)

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        if self.x_log:
            lo, hi, value = math.log10(lo), math.log10(hi), math.log10(max(value, 1e-300))
        return self.left + (value - lo) / ((hi - lo) or 1.0) * self.plot_width

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        return self.top + self.plot_height - (value - lo) / ((hi - lo) or 1.0) * self.plot_height

    def svg(self, title: str) -> SafeString:
        body = "".join(self.parts)
        return mark_safe(
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img" aria-label="{escape(title)}" {FONT} '
            f'font-size="11"><title>{escape(title)}</title>{body}</svg>'
        )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 times the powers of ten within [lo, hi] (both > 0); the decades alone when that is too many."""
    found = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        found += [m * 10.0**exponent for m in (1, 2, 5) if lo <= m * 10.0**exponent <= hi]
    if len(found) > 8:
        found = [t for t in found if math.isclose(10 ** round(math.log10(t)), t)]
    return found


def _axes(frame: _Frame, x_ticks, y_ticks, x_format: Format, y_format: Format, x_label: str, y_label: str) -> None:
    parts = frame.parts
    for value in y_ticks:
        y = frame.y(value)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.left + frame.plot_width:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{escape(y_format(value))}</text>'
        )
    for value in x_ticks:
        x = frame.x(value)
        # the last label would be cut by the edge if centred on its tick
        anchor = "end" if x > frame.width - 30 else "middle"
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top + frame.plot_height:.1f}" '
            f'y2="{frame.top + frame.plot_height + 4:.1f}" stroke="#999"/>'
            f'<text x="{x:.1f}" y="{frame.top + frame.plot_height + 16:.1f}" text-anchor="{anchor}" fill="#555">'
            f"{escape(x_format(value))}</text>"
        )
    bottom = frame.top + frame.plot_height
    parts.append(
        f'<line x1="{frame.left}" x2="{frame.left + frame.plot_width:.1f}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#999"/>'
        f'<line x1="{frame.left}" x2="{frame.left}" y1="{frame.top}" y2="{bottom:.1f}" stroke="#999"/>'
    )
    if x_label:
        parts.append(
            f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.top + frame.plot_height + 32:.1f}" '
            f'text-anchor="middle" fill="#333">{escape(x_label)}</text>'
        )
    if y_label:
        parts.append(
            f'<text transform="translate(12 {frame.top + frame.plot_height / 2:.1f}) rotate(-90)" '
            f'text-anchor="middle" fill="#333">{escape(y_label)}</text>'
        )


def _padded(lo: float, hi: float, *, zero: bool = False) -> tuple[float, float]:
    if zero:
        lo = min(lo, 0.0)
    if hi <= lo:
        return lo - 0.5 if lo else 0.0, hi + 0.5 if hi else 1.0
    return lo, hi


def xy_chart(
    series: Sequence[Series],
    *,
    title: str,
    summary: str,
    x_label: str = "",
    y_label: str = "",
    x_format: Format = lambda v: f"{v:g}",
    y_format: Format = lambda v: f"{v:g}",
    width: int = 640,
    height: int = 320,
    y_from_zero: bool = False,
    legend: bool = True,
    x_ticks: Sequence[float] | None = None,
    x_log: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    table_head: tuple[str, ...] = (),
    table_rows: tuple[tuple[str, ...], ...] = (),
) -> Chart:
    """Lines, dashed lines, steps and labelled points on shared numeric axes (``x_log``: a log-scale x).

    ``x_range`` / ``y_range`` fix an axis (a month of days, qualities in [0, 1]) instead of fitting the data.
    """
    xs = [x for s in series for x, _ in s.points if not x_log or x > 0]
    ys = [y for s in series for _, y in s.points]
    frame = _Frame(width, height, right=24, bottom=30 + (16 if x_label else 0) + (20 if legend else 0), x_log=x_log)
    if not xs:
        frame.parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">no data yet</text>'
        )
        return Chart(frame.svg(title), summary, table_head, table_rows)
    # x spans the data exactly (a date axis must not run past today); y gets round tick values.
    frame.x_range = x_range or _padded(min(xs), max(xs))
    if x_log:
        frame.x_range = (min(xs) / 1.15, max(xs) * 1.15)
        x_ticks = log_ticks(*frame.x_range) if x_ticks is None else x_ticks
    elif x_ticks is None:
        x_ticks = [t for t in nice_ticks(*frame.x_range) if frame.x_range[0] <= t <= frame.x_range[1]]
    y_ticks = nice_ticks(*(y_range or _padded(min(ys), max(ys), zero=y_from_zero)))
    frame.y_range = (y_ticks[0], y_ticks[-1])
    _axes(frame, x_ticks, y_ticks, x_format, y_format, x_label, y_label)
    placed: list[tuple[float, float, float]] = []  # (x, y, width) of point labels drawn so far
    for i, s in enumerate(series):
        stroke = s.colour or colour(i)
        coordinates = [(frame.x(x), frame.y(y)) for x, y in s.points if not x_log or x > 0]
        if s.kind == "step":
            stepped = []
            for j, (x, y) in enumerate(coordinates):
                if j:
                    stepped.append((x, coordinates[j - 1][1]))
                stepped.append((x, y))
            coordinates = stepped
        if s.kind in ("line", "dashed", "step") and coordinates:
            dash = ' stroke-dasharray="6 4"' if s.kind == "dashed" else ""
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
            frame.parts.append(
                f'<polyline class="series" fill="none" stroke="{stroke}" stroke-width="2"{dash} points="{path}">'
                f"<title>{escape(s.name)}</title></polyline>"
            )
        if s.kind == "points":
            for j, (x, y) in enumerate(coordinates):
                label = s.labels[j] if j < len(s.labels) else ""
                frame.parts.append(
                    f'<circle class="series" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{stroke}" fill-opacity="0.85">'
                    f"<title>{escape(label.lstrip('~') or s.name)}</title></circle>"
                )
                if label and not label.startswith("~"):  # "~name": named on hover only, to keep crowds legible
                    anchor, dx = ("end", -6) if x > frame.width - 160 else ("start", 6)
                    left = x + dx - (5.5 * len(label) if anchor == "end" else 0)
                    y_label = _free_line(placed, left, y - 5, 5.5 * len(label))
                    frame.parts.append(
                        f'<text x="{x + dx:.1f}" y="{y_label:.1f}" text-anchor="{anchor}" fill="#333" font-size="10">'
                        f"{escape(label)}</text>"
                    )
    if legend:
        _legend(frame, [(s.name, s.colour or colour(i), s.kind) for i, s in enumerate(series)])
    return Chart(frame.svg(title), summary, table_head, table_rows)


def _free_line(placed: list[tuple[float, float, float]], left: float, y: float, width: float) -> float:
    """A baseline near ``y`` where a label of ``width`` starting at ``left`` overlaps no label placed yet."""
    for shift in (0, 11, -11, 22, -22, 33):
        candidate = y + shift
        if not any(abs(candidate - py) < 11 and left < px + pw and px < left + width for px, py, pw in placed):
            placed.append((left, candidate, width))
            return candidate
    placed.append((left, y, width))
    return y


def _legend(frame: _Frame, entries: list[tuple[str, str, str]]) -> None:
    x, y = frame.left, frame.height - 6
    for name, stroke, kind in entries:
        if kind == "points":
            mark = f'<circle cx="{x + 6}" cy="{y - 4}" r="4" fill="{stroke}"/>'
        else:
            dash = ' stroke-dasharray="4 3"' if kind == "dashed" else ""
            mark = f'<line x1="{x}" x2="{x + 14}" y1="{y - 4}" y2="{y - 4}" stroke="{stroke}" stroke-width="2"{dash}/>'
        frame.parts.append(f'{mark}<text x="{x + 18}" y="{y}" fill="#333">{escape(name)}</text>')
        x += 26 + 6.5 * len(name)


def day_label(day: date) -> str:
    return day.strftime("%d %b")


def daily_chart(
    days: Sequence[date], name: str, values: Sequence[float], *, title: str, summary: str, shown: Format, axis: Format
) -> Chart:
    """One bar a day for one series, with the data table giving each day's value as ``shown`` writes it."""
    labels = [day_label(d) for d in days]
    return bar_chart(
        labels,
        [(name, values)],
        title=title,
        summary=summary,
        y_format=axis,
        label_every=5,
        table_head=("day", name),
        table_rows=tuple(zip(labels, map(shown, values))),
    )


def bar_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    summary: str,
    y_format: Format = lambda v: f"{v:g}",
    y_label: str = "",
    width: int = 640,
    height: int = 220,
    label_every: int = 1,
    stacked: bool = True,
    table_head: tuple[str, ...] = (),
    table_rows: tuple[tuple[str, ...], ...] = (),
) -> Chart:
    """Vertical bars per category, one colour per series: stacked, or side by side (``stacked=False``)."""
    frame = _Frame(width, height, bottom=36 + (18 if len(series) > 1 else 0))
    totals = [
        (sum if stacked else max)(values[i] for _, values in series) if series else 0.0 for i in range(len(categories))
    ]
    y_ticks = nice_ticks(0.0, max(totals, default=0.0) or 1.0, 4)
    if all(float(v).is_integer() for _, values in series for v in values):  # counts: no half requests
        y_ticks = [t for t in y_ticks if float(t).is_integer()] or [0, 1]
    frame.y_range = (0.0, y_ticks[-1])
    _axes(frame, [], y_ticks, str, y_format, "", y_label)
    slot = frame.plot_width / max(len(categories), 1)
    bar_width = slot * 0.7 / (1 if stacked else max(len(series), 1))
    for i, category in enumerate(categories):
        base = 0.0
        for j, (name, values) in enumerate(series):
            value = values[i]
            x = frame.left + i * slot + slot * 0.15 + (0 if stacked else j * bar_width)
            if value > 0:
                top, bottom = frame.y(base + value), frame.y(base)
                frame.parts.append(
                    f'<rect class="series" x="{x:.1f}" y="{top:.1f}" '
                    f'width="{bar_width:.1f}" height="{max(bottom - top, 0.5):.1f}" fill="{colour(j)}">'
                    f"<title>{escape(category)}: {escape(name)} {escape(y_format(value))}</title></rect>"
                )
            if stacked:
                base += value
        if i % label_every == 0:
            frame.parts.append(
                f'<text x="{frame.left + (i + 0.5) * slot:.1f}" y="{frame.top + frame.plot_height + 16:.1f}" '
                f'text-anchor="middle" fill="#555">{escape(category)}</text>'
            )
    if len(series) > 1:
        _legend(frame, [(name, colour(j), "line") for j, (name, _) in enumerate(series)])
    return Chart(frame.svg(title), summary, table_head, table_rows)


def share_bars(
    rows: Sequence[tuple[str, float, float]],
    *,
    title: str,
    summary: str,
    column_names: tuple[str, str],
    width: int = 640,
    table_head: tuple[str, ...] = (),
    table_rows: tuple[tuple[str, ...], ...] = (),
) -> Chart:
    """Two shares (e.g. of requests and of spend) per row, as paired horizontal bars with their percentages."""
    row_height, label_width = 30, 210
    height = 28 + row_height * len(rows)
    frame = _Frame(width, height, left=label_width, right=70, top=24, bottom=4)
    scale = frame.plot_width
    for j, name in enumerate(column_names):
        frame.parts.append(
            f'<rect x="{label_width + j * 150}" y="4" width="10" height="10" fill="{colour(j)}"/>'
            f'<text x="{label_width + j * 150 + 14}" y="13" fill="#333">{escape(name)}</text>'
        )
    for i, (label, first, second) in enumerate(rows):
        y = frame.top + i * row_height
        frame.parts.append(
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end" fill="#333">{escape(_clip(label, 30))}'
            f"<title>{escape(label)}</title></text>"
        )
        for j, share in enumerate((first, second)):
            bar = max(share, 0.0) * scale
            frame.parts.append(
                f'<rect class="series" x="{label_width}" y="{y + 3 + j * 12}" width="{max(bar, 1):.1f}" height="10" '
                f'fill="{colour(j)}"><title>{escape(label)}: {escape(column_names[j])} {100 * share:.1f}%</title></rect>'
                f'<text x="{label_width + bar + 4:.1f}" y="{y + 12 + j * 12}" fill="#555" font-size="10">'
                f"{100 * share:.1f}%</text>"
            )
    return Chart(frame.svg(title), summary, table_head, table_rows)


def heatmap(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    title: str,
    summary: str,
    marked: set[tuple[int, int]] = frozenset(),
    value_format: Format = lambda v: f"{v:.2f}",
    table_head: tuple[str, ...] = (),
    table_rows: tuple[tuple[str, ...], ...] = (),
) -> Chart:
    """Rows × columns of values in [0, 1], light (low) to dark red (high); ``marked`` cells get a black frame."""
    cell_w, cell_h, label_width, top = 46, 20, 230, 34
    width = label_width + cell_w * len(column_labels) + 12
    height = top + cell_h * len(row_labels) + 8
    frame = _Frame(width, height)
    for j, label in enumerate(column_labels):
        frame.parts.append(
            f'<text x="{label_width + (j + 0.5) * cell_w:.1f}" y="{top - 8}" text-anchor="middle" fill="#333">'
            f"{escape(label)}</text>"
        )
    for i, label in enumerate(row_labels):
        y = top + i * cell_h
        frame.parts.append(
            f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end" fill="#333">{escape(_clip(label, 34))}'
            f"<title>{escape(label)}</title></text>"
        )
        for j, value in enumerate(values[i]):
            x = label_width + j * cell_w
            fill, ink = _heat(value)
            frame.parts.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell_w - 1}" height="{cell_h - 1}" fill="{fill}">'
                f"<title>{escape(label)}, {escape(column_labels[j])}: {escape(value_format(value))}</title></rect>"
                f'<text x="{x + cell_w / 2:.1f}" y="{y + 14}" text-anchor="middle" fill="{ink}" font-size="10">'
                f"{escape(value_format(value))}</text>"
            )
            if (i, j) in marked:
                frame.parts.append(
                    f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 3}" height="{cell_h - 3}" fill="none" '
                    f'stroke="#000" stroke-width="2"/>'
                )
    return Chart(frame.svg(title), summary, table_head, table_rows)


def _heat(value: float) -> tuple[str, str]:
    """White-to-red for a value in [0, 1], and the text colour that stays readable on it."""
    t = min(max(float(value), 0.0), 1.0) if math.isfinite(value) else 0.0
    red, green, blue = 255 - int(t * 75), int(255 - t * 205), int(255 - t * 205)
    return f"rgb({red},{green},{blue})", ("#fff" if t > 0.6 else "#222")


def interval_chart(
    rows: Sequence[tuple[str, float, float]],
    *,
    title: str,
    summary: str,
    value_format: Format = lambda v: f"{v:+.4f}",
    width: int = 640,
    table_head: tuple[str, ...] = (),
    table_rows: tuple[tuple[str, ...], ...] = (),
) -> Chart:
    """Each row's value with a ± interval (a forest plot), around a line at zero."""
    row_height, label_width = 24, 200
    frame = _Frame(width, 30 + row_height * len(rows) + 24, left=label_width, right=24, top=10, bottom=28)
    spans = [v - abs(e) for _, v, e in rows] + [v + abs(e) for _, v, e in rows] + [0.0]
    ticks = nice_ticks(min(spans), max(spans), 5)
    frame.x_range = (ticks[0], ticks[-1])
    bottom = frame.top + row_height * len(rows) + 10
    for value in ticks:
        x = frame.x(value)
        frame.parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{bottom}" stroke="{"#999" if value == 0 else "#eee"}"/>'
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555">{escape(value_format(value))}</text>'
        )
    for i, (label, value, error) in enumerate(rows):
        y = frame.top + 12 + i * row_height
        lo, hi = frame.x(value - abs(error)), frame.x(value + abs(error))
        frame.parts.append(
            f'<text x="{label_width - 8}" y="{y + 4}" text-anchor="end" fill="#333">{escape(_clip(label, 30))}</text>'
            f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y}" y2="{y}" stroke="{colour(0)}" stroke-width="2"/>'
            f'<circle class="series" cx="{frame.x(value):.1f}" cy="{y}" r="4" fill="{colour(0)}">'
            f"<title>{escape(label)}: {escape(value_format(value))} ± {abs(error):.4f}</title></circle>"
        )
    return Chart(frame.svg(title), summary, table_head, table_rows)


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"

"""Numbers for people: 0.347, not 0.34701859951019287; USD with as many digits as the amount needs.

Plain functions (the template filters in ``routing/templatetags/dashboard.py`` and the SVG charts
both use them), so a figure reads the same in a table, a caption and a chart label.
"""

from __future__ import annotations

import math

DASH = "—"


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def quality(value) -> str:
    """A quality or error in [0, 1] with three decimals: 0.347."""
    value = _number(value)
    return DASH if value is None else f"{value:.3f}"


def usd(value) -> str:
    """USD: cents from one dollar up ($12.35, $1,234.50), three significant digits below ($0.0347, $0.00000123)."""
    value = _number(value)
    if value is None:
        return DASH
    if value == 0:
        return "$0"
    sign, value = ("−" if value < 0 else ""), abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(value)))  # three significant digits
    return f"{sign}${value:.{decimals}f}"


def usd_axis(value) -> str:
    """USD for an axis tick, short: $0, $0.0005, $0.80, $12, $40k, $1.5M."""
    value = _number(value)
    if value is None:
        return DASH
    if value == 0:
        return "$0"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"${value / 1e6:g}M"
    if magnitude >= 1e3:
        return f"${value / 1e3:g}k"
    if magnitude >= 1:
        return f"${value:g}"
    decimals = max(2, 1 - math.floor(math.log10(magnitude)))  # two significant digits
    return f"${value:.{decimals}f}".rstrip("0").rstrip(".") if decimals > 2 else f"${value:.2f}"


def lam_input(value) -> str:
    """λ for a form's number field: plain digits, four significant ones."""
    value = _number(value)
    return "0" if not value else f"{value:.4g}"


def percent(value, *, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage: 0.1234 → 12.3%."""
    value = _number(value)
    return DASH if value is None else f"{100 * value:.{decimals}f}%"


def plain(value) -> str:
    """A weight (in prompts' worth) or a score, without trailing zeros: two decimals from 1 up (6, 1.5,
    1,234.5), three significant digits below (0.75, 0.00123)."""
    value = _number(value)
    if value is None:
        return DASH
    if abs(value) < 1:
        return f"{value:.3g}" if value else "0"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def count(value) -> str:
    value = _number(value)
    return DASH if value is None else f"{int(round(value)):,}"


def lam(value) -> str:
    """A cost weight λ (loss per USD; often thousands): 0, 0.0123, 4.56, 1,234."""
    value = _number(value)
    if value is None:
        return DASH
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def signed(value, *, decimals: int = 4) -> str:
    """A difference with its sign: +0.0026, −0.0012."""
    value = _number(value)
    if value is None:
        return DASH
    text = f"{value:+.{decimals}f}"
    return text.replace("-", "−")


def short(text: str, length: int = 160) -> str:
    """One line of at most ``length`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"

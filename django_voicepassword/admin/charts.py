"""Charts as SVG drawn on the server: no JavaScript, nothing from a CDN.

Each function returns safe markup for a template: an ``<svg>`` that scales to
its container's width, with a ``<title>`` for screen readers and one per bar
or point (the browser shows it on hover). Colours come from CSS classes
(``static/voicepassword/admin/admin.css``), so the charts follow the admin's
light and dark themes. Every label is escaped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

__all__ = ["Bar", "Point", "bar_chart", "hbar_chart", "line_chart", "nice_ceiling", "ticks"]

WIDTH = 560
HEIGHT = 210
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 30

_ids = itertools.count(1)


@dataclass(frozen=True)
class Bar:
    """One bar (or one point of a line): its axis label, value and hover text."""

    label: str
    value: float | None
    title: str


#: A line chart's points are bars without the bar.
Point = Bar


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10.0 * power  # pragma: no cover  (the loop always returns)


def ticks(low: float, high: float, *, count: int = 4) -> list[float]:
    """Round values from at most ``low`` to at least ``high``, about ``count`` steps apart."""
    if high <= low:
        high = low + 1
    step = nice_ceiling((high - low) / count)
    first = math.floor(low / step) * step
    values = [first]
    while values[-1] < high - step * 1e-9:
        values.append(first + step * len(values))
    return values


def _fmt(number: float) -> str:
    return f"{number:.1f}"


def _svg(title: str, body: SafeString, *, css: str, height: int = HEIGHT) -> SafeString:
    title_id = f"vp-chart-{next(_ids)}"
    return format_html(
        '<svg class="vp-chart {}" viewBox="0 0 {} {}" role="img" aria-labelledby="{}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{}">{}</title>{}</svg>',
        css,
        WIDTH,
        height,
        title_id,
        title_id,
        title,
        body,
    )


def _axes(
    scale: list[float],
    value_label: Callable[[float, int], str],
    labels: Sequence[str],
    x_of: Callable[[int], float],
) -> SafeString:
    """A horizontal grid line per value of ``scale``, and every seventh x label.

    ``value_label(value, decimals)`` writes a value; ``decimals`` is what the
    scale's step needs (0 for a step of 1 or more, else 1 or 2).
    """
    plot_h = HEIGHT - TOP - BOTTOM
    low, high = scale[0], scale[-1]
    step = scale[1] - scale[0] if len(scale) > 1 else 1.0
    decimals = 0 if step >= 1 else (1 if round(step * 10, 6).is_integer() else 2)
    parts = []
    for value in scale:
        y = TOP + plot_h * (1 - (value - low) / (high - low))
        parts.append(
            format_html(
                '<line class="vp-gridline" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="vp-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                _fmt(y),
                WIDTH - RIGHT,
                _fmt(y),
                LEFT - 6,
                _fmt(y + 4),
                value_label(value, decimals),
            )
        )
    last = len(labels) - 1
    for index, label in enumerate(labels):
        if index % 7 != last % 7:
            continue
        parts.append(
            format_html(
                '<text class="vp-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                _fmt(x_of(index)),
                HEIGHT - 8,
                label,
            )
        )
    return mark_safe("".join(parts))  # noqa: S308  (every part went through format_html)


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    value_label: Callable[[float, int], str],
    maximum: float | None = None,
    css: str = "",
) -> SafeString:
    """Vertical bars from zero, up to ``maximum`` or a round value above the tallest."""
    values = [bar.value or 0.0 for bar in bars]
    scale = ticks(0.0, maximum) if maximum is not None else ticks(0.0, max(values, default=0.0))
    top = scale[-1]
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(bars), 1)

    def x_of(index: int) -> float:
        return LEFT + slot * (index + 0.5)

    rects = []
    for index, bar in enumerate(bars):
        if bar.value is None:
            continue
        h = plot_h * min(bar.value / top, 1.0) if top else 0.0
        rects.append(
            format_html(
                '<rect class="vp-bar" x="{}" y="{}" width="{}" height="{}">'
                "<title>{}</title></rect>",
                _fmt(LEFT + slot * index + slot * 0.15),
                _fmt(TOP + plot_h - h),
                _fmt(slot * 0.7),
                _fmt(max(h, 0.5)),
                bar.title,
            )
        )
    body = _axes(scale, value_label, [bar.label for bar in bars], x_of)
    return _svg(title, mark_safe(body + "".join(rects)), css=css)  # noqa: S308


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    value_label: Callable[[float, int], str],
    threshold: float | None = None,
    threshold_title: str = "",
    css: str = "",
) -> SafeString:
    """A line through the points that have a value, and a dashed ``threshold`` line."""
    known = [p.value for p in points if p.value is not None]
    if threshold is not None:
        known.append(threshold)
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    scale = ticks(low, high)
    low, high = scale[0], scale[-1]
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)

    def x_of(index: int) -> float:
        return LEFT + slot * (index + 0.5)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    segments: list[list[tuple[float, float]]] = [[]]
    dots = []
    for index, point in enumerate(points):
        if point.value is None:
            if segments[-1]:
                segments.append([])
            continue
        x, y = x_of(index), y_of(point.value)
        segments[-1].append((x, y))
        dots.append(
            format_html(
                '<circle class="vp-dot" cx="{}" cy="{}" r="3"><title>{}</title></circle>',
                _fmt(x),
                _fmt(y),
                point.title,
            )
        )
    lines = format_html_join(
        "",
        '<polyline class="vp-line" points="{}"/>',
        ((" ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in seg),) for seg in segments if seg),
    )
    limit = ""
    if threshold is not None:
        y = y_of(threshold)
        limit = format_html(
            '<line class="vp-threshold" x1="{}" y1="{}" x2="{}" y2="{}"><title>{}</title></line>',
            LEFT,
            _fmt(y),
            WIDTH - RIGHT,
            _fmt(y),
            threshold_title,
        )
    body = _axes(scale, value_label, [p.label for p in points], x_of)
    return _svg(title, mark_safe(body + limit + lines + "".join(dots)), css=css)  # noqa: S308


def hbar_chart(
    rows: Sequence[tuple[str, int, str]],
    *,
    title: str,
) -> SafeString:
    """Horizontal bars, one per ``(label, value, css class)``, longest first as given."""
    row_h = 24
    height = TOP + row_h * max(len(rows), 1) + 6
    label_w = 150
    plot_w = WIDTH - label_w - RIGHT - 60
    top = max((value for _label, value, _css in rows), default=0) or 1
    parts = []
    for index, (label, value, css) in enumerate(rows):
        y = TOP + row_h * index
        w = plot_w * value / top
        parts.append(
            format_html(
                '<text class="vp-axis vp-label" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect class="vp-hbar {}" x="{}" y="{}" width="{}" height="{}">'
                "<title>{}: {}</title></rect>"
                '<text class="vp-axis" x="{}" y="{}">{}</text>',
                label_w - 8,
                _fmt(y + row_h / 2 + 4),
                label,
                css,
                label_w,
                _fmt(y + 4),
                _fmt(max(w, 1.0)),
                row_h - 8,
                label,
                value,
                _fmt(label_w + max(w, 1.0) + 6),
                _fmt(y + row_h / 2 + 4),
                value,
            )
        )
    return _svg(title, mark_safe("".join(parts)), css="vp-chart--hbar", height=height)  # noqa: S308

"""Server-rendered SVG charts for reports: plain geometry, no scripts, no CDN."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    label: str
    series: int


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    points: list[tuple[float, float, float, str]]  # x, y, value, label
    labels: list[tuple[float, str]]
    max_value: float
    series: list[str]
    line_name: str


def trend_chart(
    labels: list[str],
    bar_series: dict[str, list[float]],
    line: tuple[str, list[float | None]] | None = None,
    *,
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Grouped bars (e.g. created, resolved) and an optional 0-100 % line."""
    pad_left, pad_bottom, pad_top = 40, 30, 10
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    n = max(len(labels), 1)
    slot = plot_w / n
    names = list(bar_series)
    max_value = max([1.0, *(v for values in bar_series.values() for v in values)])
    bar_w = slot * 0.8 / max(len(names), 1)
    bars = []
    for i, label in enumerate(labels):
        for s, name in enumerate(names):
            value = bar_series[name][i]
            h = plot_h * value / max_value
            x = pad_left + i * slot + slot * 0.1 + s * bar_w
            bars.append(Bar(x, pad_top + plot_h - h, bar_w, h, value, label, s))
    points = []
    if line is not None:
        for i, percent in enumerate(line[1]):
            if percent is None:
                continue
            x = pad_left + i * slot + slot / 2
            points.append((x, pad_top + plot_h * (1 - percent / 100), percent, labels[i]))
    step = max(1, n // 12)
    axis = [(pad_left + i * slot + slot / 2, labels[i]) for i in range(0, len(labels), step)]
    return Chart(width, height, bars, points, axis, max_value, names, line[0] if line else "")

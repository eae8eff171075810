"""Inline SVG charts of the QA report pages, drawn on the server (no scripts, no chart library)."""

from __future__ import annotations

import html
from typing import Any

BRAND, BAD, WARN, GREY, GRID = "#00706b", "#c53030", "#b7791f", "#616e7c", "#e2e8f0"
FONT = 'font-family="Noto Sans CJK SC, Microsoft YaHei, sans-serif"'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(label: str, n: int = 16) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _svg_open(width: int, height: int, label: str, font_size: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_e(label)}" {FONT} font-size="{font_size}">')


def _x_grid(label_w: int, plot_w: float, top: int, height: int, bottom: int, ticks: list[str]) -> list[str]:
    """Vertical grid lines with their tick labels under the plot, evenly spaced from 0 to the maximum."""
    parts = []
    for k, tick in enumerate(ticks):
        x = label_w + plot_w * k / (len(ticks) - 1)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" fill="{GREY}">{_e(tick)}</text>')
    return parts


def hbars(
    items: list[tuple[str, float | None, str]],
    *,
    max_value: float,
    label: str,
    fmt: str = "{:.1f}",
    threshold: float | None = None,
    width: int = 640,
    bar_h: int = 26,
    label_w: int = 170,
) -> str:
    """Horizontal bars (label, value, tooltip) from 0 to max_value; bars below `threshold` in red."""
    if not items:
        return ""
    top, bottom = 8, 26
    plot_w = width - label_w - 60
    height = top + bar_h * len(items) + bottom
    parts = [_svg_open(width, height, label, 12),
             *_x_grid(label_w, plot_w, top, height, bottom, [fmt.format(max_value * k / 4) for k in range(5)])]
    if threshold is not None:
        x = label_w + plot_w * threshold / max_value
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{BAD}" '
                     'stroke-dasharray="4 3"/>')  # fmt: skip
    for i, (name, value, tip) in enumerate(items):
        y = top + i * bar_h
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.65:.1f}" text-anchor="end">{_e(_short(name))}'
                     f"<title>{_e(name)}</title></text>")  # fmt: skip
        if value is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + bar_h * 0.65:.1f}" fill="{GREY}">–</text>')
            continue
        w = plot_w * max(0.0, min(value, max_value)) / max_value
        color = BAD if threshold is not None and value < threshold else BRAND
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{bar_h - 8}" fill="{color}" rx="2">'
                     f"<title>{_e(tip)}</title></rect>")  # fmt: skip
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.65:.1f}">{_e(fmt.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def precision_chart(rows: list[dict[str, Any]], names: dict[str, str], width: int = 640, bar_h: int = 28) -> str:
    """Per-rule precision (confirmed / verdicts) as bars with the 95% Wilson interval as a whisker."""
    if not rows:
        return ""
    label_w, top, bottom = 200, 8, 26
    plot_w = width - label_w - 70
    height = top + bar_h * len(rows) + bottom
    parts = [_svg_open(width, height, "规则准确率", 12),
             *_x_grid(label_w, plot_w, top, height, bottom, [f"{25 * k}%" for k in range(5)])]
    for i, r in enumerate(rows):
        y = top + i * bar_h
        name = names.get(r["rule"], r["rule"])
        p = float(r["precision"])
        color = BAD if p < 0.6 else (WARN if p < 0.8 else BRAND)
        w = plot_w * p
        tip = (f"{name}（{r['rule']}）：{r['true']}/{r['verdicts']} 确认，准确率 {100 * p:.0f}%"
               + (f"，95% 区间 {100 * r['ci_low']:.0f}%–{100 * r['ci_high']:.0f}%" if r.get("ci_low") is not None
                  else ""))  # fmt: skip
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.65:.1f}" text-anchor="end">{_e(_short(name, 14))}'
                     f"<title>{_e(tip)}</title></text>")  # fmt: skip
        parts.append(f'<rect x="{label_w}" y="{y + 6}" width="{w:.1f}" height="{bar_h - 12}" fill="{color}" '
                     f'opacity="0.85" rx="2"><title>{_e(tip)}</title></rect>')  # fmt: skip
        if r.get("ci_low") is not None:
            x1, x2 = label_w + plot_w * r["ci_low"], label_w + plot_w * r["ci_high"]
            cy = y + bar_h / 2
            parts.append(f'<line x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" stroke="#1f2933"/>'
                         f'<line x1="{x1:.1f}" y1="{cy - 5:.1f}" x2="{x1:.1f}" y2="{cy + 5:.1f}" stroke="#1f2933"/>'
                         f'<line x1="{x2:.1f}" y1="{cy - 5:.1f}" x2="{x2:.1f}" y2="{cy + 5:.1f}" stroke="#1f2933"/>')
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{y + bar_h * 0.65:.1f}">{100 * p:.0f}% '
                     f'<tspan fill="{GREY}">({r["true"]}/{r["verdicts"]})</tspan></text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def scatter(pairs: list[tuple[float, float, str]], size: int = 300) -> str:
    """Machine score (x) against the reviewer's score (y), with the diagonal of perfect agreement."""
    if not pairs:
        return ""
    pad = 36
    plot = size - pad - 10

    def xy(a: float, b: float) -> tuple[float, float]:
        return pad + plot * a / 100, 10 + plot - plot * b / 100

    parts = [_svg_open(size, size, "机器得分与人工得分", 11)]
    for k in range(5):
        x, y = xy(25 * k, 25 * k)
        parts.append(f'<line x1="{pad}" y1="{y:.1f}" x2="{pad + plot}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{10 + plot}" stroke="{GRID}"/>'
                     f'<text x="{pad - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{GREY}">{25 * k}</text>'
                     f'<text x="{x:.1f}" y="{size - 12}" text-anchor="middle" fill="{GREY}">{25 * k}</text>')
    (x0, y0), (x1, y1) = xy(0, 0), xy(100, 100)
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{GREY}" stroke-dasharray="4 3"/>')
    for a, b, tip in pairs:
        x, y = xy(a, b)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{BRAND}" opacity="0.8">'
                     f"<title>{_e(tip)}</title></circle>")  # fmt: skip
    parts.append(f'<text x="{pad + plot / 2}" y="{size - 1}" text-anchor="middle">机器得分</text>')
    parts.append(f'<text x="10" y="{10 + plot / 2}" transform="rotate(-90 10 {10 + plot / 2})" '
                 'text-anchor="middle">人工得分</text></svg>')  # fmt: skip
    return "".join(parts)

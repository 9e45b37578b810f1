"""Line charts as a plain SVG document: no dependency, readable in any browser, checkable as XML.

The soak's plot is a few lines over time; matplotlib (and numpy, Pillow, fonts) would be a heavy
extra for that, and an SVG of our own is always written, whatever is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

Series = tuple[str, Sequence[tuple[float, float]]]

COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WIDTH = 960
LEGEND = 230  # the legend's column on the right
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 28, 40


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high`` (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return [round(t, 10) for t in ticks]


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    top: float,
    height: int = 260,
    y_from_zero: bool = True,
    dashed: Sequence[str] = (),
) -> str:
    """One chart as an SVG group placed ``top`` pixels down, a legend on the right; ``dashed``: labels drawn so."""
    points = [p for _, pts in series for p in pts]
    xs = [x for x, _ in points] or [0.0, 1.0]
    ys = [y for _, y in points] or [0.0, 1.0]
    x_ticks = [t for t in nice_ticks(min(xs), max(xs), 6) if t <= max(xs)] + [max(xs)]  # the axis ends with the data
    y_low = 0.0 if y_from_zero else min(ys)
    y_ticks = nice_ticks(min(y_low, min(ys)), max(ys) * 1.05 if max(ys) > 0 else 1.0)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w = WIDTH - LEGEND - PAD_L - PAD_R
    plot_h = height - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + (x - x0) / ((x1 - x0) or 1.0) * plot_w

    def py(y: float) -> float:
        return PAD_T + plot_h - (y - y0) / ((y1 - y0) or 1.0) * plot_h

    out = [f'<g transform="translate(0,{top:.0f})">']
    out.append(f'<text x="{PAD_L}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>')
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>')
    for t in x_ticks[:-1]:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{PAD_T + plot_h}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{PAD_T + plot_h + 16}" font-size="11" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    out.append(
        f'<text x="{PAD_L + plot_w / 2:.0f}" y="{height - 6}" font-size="12" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14,{PAD_T + plot_h / 2:.0f}) rotate(-90)" font-size="12" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for n, (label, pts) in enumerate(series):
        color = "#555555" if label in dashed else COLORS[n % len(COLORS)]
        dash = ' stroke-dasharray="6,4"' if label in dashed else ""
        if len(pts) == 1:
            (x, y) = pts[0]
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>')
        elif pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        ly = PAD_T + 6 + n * 18
        lx = WIDTH - LEGEND + 8
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{lx + 24}" y="{ly + 4}" font-size="11">{escape(label)}</text>')
    out.append("</g>")
    return "\n".join(out)


def document(title: str, charts: Sequence[tuple[str, int]]) -> str:
    """A whole SVG: a title line, then the charts (``(svg group, its height)``) one under another."""
    height = 34 + sum(h for _, h in charts)
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{PAD_L}" y="22" font-size="15">{escape(title)}</text>',
        *(group for group, _ in charts),
        "</svg>",
    ]
    return "\n".join(body) + "\n"

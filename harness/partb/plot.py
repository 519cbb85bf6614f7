"""Loss curves as PNG with PIL (no plotting library needed): log-scale y, one colour per series."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageDraw

from harness.atomic import atomic_write_bytes

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def line_plot(path: str | Path, series: dict[str, tuple[list[float], list[float]]], title: str,
              xlabel: str = "step") -> None:
    """render_plot written to ``path`` as PNG, atomically."""
    buf = io.BytesIO()
    render_plot(series, title, xlabel).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def render_plot(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str = "step",
                size: tuple[int, int] = (640, 400)) -> Image.Image:
    """series: name -> (x values, y values > 0), drawn on a log10 y axis."""
    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [math.log10(max(y, 1e-12)) for _, yv in series.values() for y in yv]
    if not xs:
        raise ValueError(f"nothing to plot for {title!r}")
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys)) if math.ceil(max(ys)) > math.floor(min(ys)) else math.floor(min(ys)) + 1
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: h - bottom - (math.log10(max(y, 1e-12)) - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for e in range(y0, y1 + 1):
        y = h - bottom - (e - y0) / (y1 - y0) * (h - top - bottom)
        d.line([left - 4, y, left, y], fill="black")
        d.text((8, y - 6), f"1e{e}", fill="black")
    for frac in (0, 0.5, 1):
        x = left + frac * (w - left - right)
        d.text((x - 10, h - bottom + 6), f"{x0 + frac * (x1 - x0):.0f}", fill="black")
    d.text((w // 2 - 20, h - 20), xlabel, fill="black")
    d.text((left, 12), title, fill="black")
    for i, (name, (xv, yv)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        points = [(px(x), py(y)) for x, y in zip(xv, yv)]
        if len(points) > 1:
            d.line(points, fill=color, width=2)
        for p in points if len(points) < 40 else []:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
        d.text((w - right - 150, top + 8 + 14 * i), name, fill=color)
    return img

"""Small SVG charts drawn on the server (no JavaScript, no plotting library): a histogram and a bar chart.

Each returns an `<svg>` string the templates insert as is; every text in it is escaped.
"""

from __future__ import annotations

from html import escape

import numpy as np

W, H, PAD_L, PAD_B, PAD_T = 420, 170, 46, 34, 22


def _frame(title: str, body: list[str]) -> str:
    return (f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">'
            f'<text x="{W / 2}" y="14" text-anchor="middle" class="plot-title">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def histogram(values: np.ndarray, title: str, unit: str, bins: int = 24) -> str:
    """Counts of `values` in equal-width bins (log-spaced when they span two orders of magnitude)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return _frame(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no rows</text>'])
    lo, hi = float(v.min()), float(v.max())
    log = lo > 0 and hi / max(lo, 1) > 100
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, _ = np.histogram(v, edges)
    return _bars([f"{edges[i]:,.0f}" for i in range(bins)], counts.tolist(), title,
                 f"{unit} ({'log' if log else 'linear'} bins; median {np.median(v):,.0f}, max {hi:,.0f})", every=6)


def bars(labels: list[str], counts: list[float], title: str, caption: str = "",
         second: list[float] | None = None) -> str:
    """One bar per label; with `second`, a paired lighter bar (e.g. planned beside realized)."""
    return _bars(labels, counts, title, caption, every=1, second=second)


def _bars(labels: list[str], counts: list[float], title: str, caption: str, every: int,
          second: list[float] | None = None) -> str:
    n = max(len(counts), 1)
    top = max([*counts, *(second or []), 1e-12])
    plot_w, plot_h = W - PAD_L - 8, H - PAD_B - PAD_T
    slot = plot_w / n
    body = [f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - 8}" y2="{H - PAD_B}" class="axis"/>',
            f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end" class="tick">{top:,.3g}</text>',
            f'<text x="{PAD_L - 4}" y="{H - PAD_B}" text-anchor="end" class="tick">0</text>']
    for i, c in enumerate(counts):
        x = PAD_L + i * slot + 1
        width = max(slot - 2, 1) / (2 if second is not None else 1)
        h = plot_h * c / top
        body.append(f'<rect x="{x:.1f}" y="{H - PAD_B - h:.1f}" width="{width:.1f}" height="{h:.1f}" class="bar">'
                    f'<title>{escape(labels[i])}: {c:,.4g}</title></rect>')
        if second is not None:
            h2 = plot_h * second[i] / top
            body.append(f'<rect x="{x + width:.1f}" y="{H - PAD_B - h2:.1f}" width="{width:.1f}" height="{h2:.1f}" '
                        f'class="bar2"><title>{escape(labels[i])}: {second[i]:,.4g}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{x + slot / 2:.1f}" y="{H - PAD_B + 12}" text-anchor="middle" class="tick">'
                        f'{escape(labels[i][:14])}</text>')
    if caption:
        body.append(f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle" class="caption">{escape(caption)}</text>')
    return _frame(title, body)

"""Figure helpers shared by the experiments' plots: labels that never overlap, legends outside the data.

Read by people, not only by the code that wrote them: every label is placed by adjustText (moved off
the other labels and the markers, joined to its point by a thin leader line when moved), legends
sit outside the axes, and an empty panel says that it is empty (:func:`mark_no_data`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: float = 7) -> list[Any]:
    """Write ``labels`` at their points, move them apart (adjustText), separate any pair adjustText left
    overlapping, then join each moved label to its point with a thin leader line; the text objects."""
    from adjustText import adjust_text

    if len(labels) == 1:  # nothing to avoid but its own marker and error bar: just above and right of it
        return [ax.annotate(labels[0], (xs[0], ys[0]), xytext=(5, 7), textcoords="offset points", fontsize=fontsize)]
    texts = [ax.text(x, y, label, fontsize=fontsize, zorder=5) for x, y, label in zip(xs, ys, labels)]
    if len(texts) > 1:
        adjust_text(texts, x=np.asarray(xs, dtype=float), y=np.asarray(ys, dtype=float), ax=ax,
                    expand=(1.3, 1.6), force_text=(0.4, 0.6), force_static=(0.3, 0.5), ensure_inside_axes=True,
                    max_move=None, iter_lim=2000)
        _separate_overlaps(ax, texts)
        _leader_lines(ax, texts, xs, ys)
    return texts


def _separate_overlaps(ax: Any, texts: Sequence[Any], margin_px: float = 1.0, max_rounds: int = 5000) -> None:
    """Push apart, vertically and deterministically, every pair of labels whose boxes still overlap:
    adjustText is a heuristic and can leave a pair touching; this makes "no two labels overlap" hold.

    Works on the boxes in display pixels (a label's size does not change when it moves), one pair per
    round: the lower-left overlapping pair is split evenly up and down by its overlap plus a margin."""
    renderer = ax.figure.canvas.get_renderer()
    boxes = np.array([t.get_window_extent(renderer).extents for t in texts], dtype=float)  # x0, y0, x1, y1
    start = boxes.copy()
    upper_triangle = np.triu(np.ones((len(texts), len(texts)), dtype=bool), k=1)
    for _ in range(max_rounds):
        x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
        overlap = ((x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None])
                   & (y0[:, None] < y1[None, :]) & (y0[None, :] < y1[:, None]) & upper_triangle)
        if not overlap.any():
            break
        i, j = np.argwhere(overlap)[0]
        lower, upper = (i, j) if y0[i] + y1[i] <= y0[j] + y1[j] else (j, i)
        shift = (y1[lower] - y0[upper]) / 2 + margin_px
        boxes[upper, [1, 3]] += shift
        boxes[lower, [1, 3]] -= shift
    to_data = ax.transData.inverted()
    for text, before, after in zip(texts, start, boxes):
        if after[1] != before[1]:
            x_px, y_px = ax.transData.transform(text.get_position())
            text.set_position(to_data.transform((x_px, y_px + after[1] - before[1])))


def _leader_lines(ax: Any, texts: Sequence[Any], xs: Sequence[float], ys: Sequence[float],
                  min_length_px: float = 8.0) -> None:
    """A thin grey line from each label that sits away from its point back to the point."""
    from matplotlib.patches import FancyArrowPatch

    for text, x, y in zip(texts, xs, ys):
        start = text.get_position()
        distance = np.hypot(*(ax.transData.transform(start) - ax.transData.transform((x, y))))
        if distance >= min_length_px:
            ax.add_patch(FancyArrowPatch(posA=start, posB=(x, y), patchA=text, arrowstyle="-", color="0.45",
                                         lw=0.5, zorder=4))


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    """The axes' legend to the right of its plot area, never over data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kwargs)


def mark_no_data(ax: Any, text: str) -> None:
    """Say in an empty panel that it is empty, and why, instead of leaving blank axes."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.35",
            wrap=True, bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.7"})
    ax.set_xticks([])
    ax.set_yticks([])


def overlapping_labels(figure: Any) -> list[tuple[str, str]]:
    """Pairs of data labels (axes texts, not titles) whose boxes overlap once drawn: what a reader cannot read."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    pairs = []
    for ax in figure.axes:
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text()]
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                if box_a.overlaps(box_b):
                    pairs.append((a, b))
    return pairs

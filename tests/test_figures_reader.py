"""Figures drawn for a reader: no overlapping labels, legends beside the data, hollow unaudited points,
lines only through one protector's settings, lensless masks framed with a colour bar.

Drawn from the committed tables only (no dataset image, no model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campro_bench.experiments.audit_report import plane_figure
from campro_bench.experiments.figures import overlapping_labels, pyplot
from campro_bench.experiments.lensless import mask_figure
from campro_bench.experiments.tradeoff import is_sweep, tradeoff_figure

REPO = Path(__file__).resolve().parents[1]
TRADEOFF = pd.read_csv(REPO / "baselines" / "tradeoff" / "tradeoff.csv")
DRAWN = TRADEOFF[TRADEOFF["AP"].notna()]
"""The points with a person AP: those the figure draws (one without AP is named under the panels)."""


@pytest.fixture(scope="module")
def tradeoff():
    figure = tradeoff_figure(TRADEOFF)
    yield figure
    pyplot().close(figure)


def test_tradeoff_labels_do_not_overlap(tradeoff) -> None:
    assert overlapping_labels(tradeoff) == []
    labels = [t.get_text() for ax in tradeoff.axes for t in ax.texts]
    assert sorted(labels) == sorted(list(DRAWN["label"].astype(str)) * 2)  # every point labelled on both panels
    missing = TRADEOFF[TRADEOFF["AP"].isna()]
    footnote = " ".join(t.get_text() for t in tradeoff.texts)
    assert all(f"{m} {label}" in footnote for m, label in zip(missing["method"], missing["label"]))


def test_tradeoff_legends_are_outside_the_data(tradeoff) -> None:
    renderer = tradeoff.canvas.get_renderer()
    for ax in tradeoff.axes:
        legend = ax.get_legend()
        assert legend is not None
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def marker_lines(ax):
    return [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "") and len(line.get_xdata())]


def test_unaudited_points_are_hollow_on_the_worst_case_panel(tradeoff) -> None:
    worst = tradeoff.axes[1]
    hollow, filled = set(), set()
    for line in marker_lines(worst):
        points = {round(float(x), 6) for x in line.get_xdata()}
        (hollow if line.get_markerfacecolor() == "none" else filled).update(points)
    unaudited = {round(100 * v, 6) for v in DRAWN.loc[DRAWN["audit_worst_case"].isna(), "worst_case"]}
    audited = {round(100 * v, 6) for v in DRAWN.loc[DRAWN["audit_worst_case"].notna(), "worst_case"]}
    assert hollow == unaudited and audited <= filled and unaudited and audited


def test_lines_join_only_one_protectors_settings(tradeoff) -> None:
    assert is_sweep(["lowres:factor=4", "lowres:factor=8"]) and not is_sweep(["lowres:factor=4"])
    assert not is_sweep(["campro-isp:preset=casia-adv", "campro-isp:preset=casia-adv-w1"])
    sweeps = {round(100 * v, 6) for v in TRADEOFF.loc[TRADEOFF["spec"].str.match(r"(lowres|defocus):"), "accuracy"]}
    for line in tradeoff.axes[0].get_lines():
        if line.get_linestyle() not in ("None", "none", "") and line.get_drawstyle() == "default" and len(line.get_xdata()) > 1:
            assert {round(float(x), 6) for x in line.get_xdata()} <= sweeps  # never through CamPro presets


def test_audit_planes_of_the_committed_audits_have_readable_labels() -> None:
    for summary in sorted((REPO / "baselines" / "audit").glob("*/summary.csv")):
        figure = plane_figure(pd.read_csv(summary))
        assert overlapping_labels(figure) == [], summary.parent.name
        pyplot().close(figure)


def test_masks_are_framed_with_a_colour_bar() -> None:
    masks = {"open": np.ones((8, 8)), "pinhole": np.pad(np.ones((1, 1)), 3)[:8, :8], "random": np.eye(8)}
    rows = pd.DataFrame({"variant": list(masks), "aperture_ratio": [1.0, 1 / 64, 1 / 8]})
    figure = mask_figure(masks, rows)
    images = [ax for ax in figure.axes if ax.images]
    assert len(images) == 3 and len(figure.axes) == 4  # three masks and a colour bar
    for ax in images:
        assert all(s.get_visible() and s.get_linewidth() > 0 for s in ax.spines.values())
    bar = [ax for ax in figure.axes if not ax.images][0]
    assert "transmission" in bar.get_ylabel()
    pyplot().close(figure)


def test_crowded_labels_are_separated_where_adjusttext_leaves_overlaps() -> None:
    """Twenty labels in a tiny panel: adjustText alone leaves several pairs overlapping; the final
    separation pass must leave none, and every label keeps its own text."""
    from campro_bench.experiments.figures import place_labels

    plt = pyplot()
    rng = np.random.default_rng(0)
    xs, ys = list(rng.uniform(0, 100, 20)), list(rng.uniform(0, 1, 20))
    figure, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot(xs, ys, "o")
    ax.set(xlim=(0, 100), ylim=(0, 1))
    texts = place_labels(ax, xs, ys, [f"label {i}" for i in range(20)])
    try:
        assert overlapping_labels(figure) == []
        assert sorted(t.get_text() for t in texts) == sorted(f"label {i}" for i in range(20))
    finally:
        plt.close(figure)

"""Fig. 9: t-SNE of raw and protected face features with nearest-neighbour decision regions.

For a few identities of a face dataset and one recogniser, per protector, three panels:

(a) the raw features' t-SNE map, the plane coloured by the identity of the nearest raw point
    (1-NN decision regions in the map);
(b) the protected features of the same images placed into that raw map (openTSNE's
    ``transform``: each new point is optimised against the fixed raw points), over the raw
    regions: where a protected face lands is where a raw-trained attacker would put it;
(c) the protected features in a t-SNE map of their own, with their own 1-NN regions: whether
    protected faces of one person still cluster (what a re-enrolling attacker could exploit).

The figure is a scatter of features; no face image is drawn. ``tsne.csv`` gives, per panel, the
share of points whose 1-NN in the map has the same identity (leave-one-out in (a) and (c); the
nearest raw point in (b)), and the same share in the feature space itself (cosine), so the
picture has a number beside it. t-SNE maps are for looking; the numbers of record are E1's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import option
from ..errors import CamproError
from ..privacy.evaluate import dataset_index, load_embeddings, subset_image_ids
from ..registries import EXPERIMENTS
from .base import ExperimentResult, RunContext
from .common import check_compare
from .spec import parse_protocol


@dataclass(frozen=True)
class TsneConfig:
    """The Fig. 9 protocol (``protocols/tsne.toml``)."""

    dataset: str = option("lfw", help="face dataset")
    model: str = option("facenet-casia", help="the face recogniser whose features are mapped")
    protectors: list[str] = option(lambda: ["campro-isp:preset=casia-adv"], help="one figure per protector spec")
    identities: int = option(10, ge=2, le=20, help="the first N identities by name with >= min_images images")
    min_images: int = option(20, ge=2, le=10_000, help="identities with fewer images are passed over")
    max_images_per_identity: int = option(20, ge=0, help="0 = all; N = a seeded subset per identity")
    seed: int = option(0, ge=0, help="t-SNE initialisation and image subset seed")
    perplexity: float = option(30.0, gt=1.0, le=200.0, help="t-SNE perplexity")
    grid: int = option(300, ge=20, le=2000, help="decision-region raster, cells per side")
    detector: str = option("mtcnn", help="face detector spec")
    batch_size: int = option(64, ge=1, le=4096, help="embedding batch size")


def tsne_map(features: np.ndarray, cfg: TsneConfig) -> Any:
    """openTSNE embedding of unit features (cosine), seeded."""
    from openTSNE import TSNE

    perplexity = min(cfg.perplexity, (len(features) - 1) / 3)  # openTSNE's limit for small sets
    return TSNE(perplexity=perplexity, metric="cosine", random_state=cfg.seed, n_jobs=1, verbose=False).fit(features)


def nn_share(points: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None,
             reference_labels: np.ndarray | None = None, metric: str = "euclidean") -> float:
    """Share of ``points`` whose nearest reference point has their label (leave-one-out when
    ``reference`` is None)."""
    from scipy.spatial.distance import cdist

    ref = points if reference is None else reference
    ref_labels = labels if reference_labels is None else reference_labels
    d = cdist(points, ref, metric=metric)
    if reference is None:
        np.fill_diagonal(d, np.inf)
    return float((ref_labels[d.argmin(axis=1)] == labels).mean())


def _regions(ax: Any, points: np.ndarray, labels: np.ndarray, bounds: np.ndarray, cells: int, colours: Any) -> None:
    """Colour the plane by the label of the nearest point (1-NN decision regions)."""
    from scipy.spatial import cKDTree

    xs = np.linspace(bounds[0, 0], bounds[1, 0], cells)
    ys = np.linspace(bounds[0, 1], bounds[1, 1], cells)
    gx, gy = np.meshgrid(xs, ys)
    nearest = cKDTree(points).query(np.c_[gx.ravel(), gy.ravel()])[1]
    ax.imshow(labels[nearest].reshape(cells, cells), origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
              cmap=colours, vmin=-0.5, vmax=colours.N - 0.5, alpha=0.25, aspect="auto", interpolation="nearest")


def _bounds(*sets: np.ndarray) -> np.ndarray:
    pts = np.concatenate(sets)
    low, high = pts.min(axis=0), pts.max(axis=0)
    pad = 0.05 * (high - low)
    return np.stack([low - pad, high + pad])


def figure(raw_map: np.ndarray, placed: np.ndarray, own: np.ndarray, labels: np.ndarray, names: list[str],
           protector: str, model: str, cells: int) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors[: max(len(names), 2)])
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4))
    panels = [("(a) raw features", raw_map, raw_map, "o"),
              ("(b) protected, placed in the raw map", placed, raw_map, "^"),
              ("(c) protected, their own map", own, own, "^")]
    for ax, (title, pts, region_pts, marker) in zip(axes, panels):
        bounds = _bounds(pts, region_pts)
        _regions(ax, region_pts, labels, bounds, cells, colours)
        ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap=colours, vmin=-0.5, vmax=colours.N - 0.5, s=18,
                   marker=marker, edgecolors="black", linewidths=0.3)
        ax.set_xlim(bounds[:, 0])
        ax.set_ylim(bounds[:, 1])
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours(i), label=n) for i, n in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 5), fontsize=8, frameon=False)
    fig.suptitle(f"t-SNE of {model} features: raw vs {protector}; background = nearest-neighbour regions",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


@EXPERIMENTS.register("tsne", protocol="tsne",
                      description="Fig. 9: t-SNE of raw and protected features with nearest-neighbour regions")
def run_tsne(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    cfg = parse_protocol(TsneConfig, spec, "tsne")
    if not cfg.protectors:
        raise CamproError("the tsne protocol needs at least one protector spec in 'protectors'")
    index = dataset_index(cfg.dataset, ctx.data_root_option)
    ids = subset_image_ids(index, cfg.min_images, cfg.identities, cfg.max_images_per_identity, cfg.seed)
    found = len({name for i, name in index if i in set(ids)})
    if found < cfg.identities:
        raise CamproError(f"{cfg.dataset} has only {found} identities with >= {cfg.min_images} images; "
                          f"lower 'min_images' or 'identities' (asked for {cfg.identities})")

    def features(protector: str) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        emb = load_embeddings(cfg.dataset, cfg.model, protector, pipeline="paper", detector=cfg.detector,
                              data_root=ctx.data_root_option, cache_dir=ctx.cache_dir, models_dir=ctx.models_dir,
                              device=str(ctx.device), batch_size=cfg.batch_size, progress=ctx.progress,
                              image_ids=ids, min_images_per_identity=1)
        ctx.manifest.models.setdefault("embeddings", {})[protector] = emb.provenance
        return (np.asarray(emb.embeddings, np.float64), np.asarray(emb.labels), list(emb.identity_names),
                np.asarray(emb.detected, bool))

    with ctx.manifest.timer("embedding"):
        raw, labels, names, raw_found = features("raw")
    rows, figures = [], {}
    for n, protector in enumerate(cfg.protectors):
        with ctx.manifest.timer("embedding"):
            prot, prot_labels, _, prot_found = features(protector)
        if not (prot_labels == labels).all():
            raise CamproError(f"the face pipeline returned other images for '{protector}' than for raw")
        keep = raw_found & prot_found  # a face missing on either side has no point to draw
        with ctx.manifest.timer("tsne"):
            raw_map = tsne_map(raw[keep], cfg)
            placed = np.asarray(raw_map.transform(prot[keep]))
            own = np.asarray(tsne_map(prot[keep], cfg))
        lab, points = labels[keep], np.asarray(raw_map)
        rows.append({"protector": protector, "model": cfg.model, "points": int(keep.sum()),
                     "identities": len(names),
                     "raw_map_1nn": nn_share(points, lab),
                     "placed_in_raw_map_1nn": nn_share(placed, lab, points, lab),
                     "own_map_1nn": nn_share(own, lab),
                     "raw_features_1nn": nn_share(raw[keep], lab, metric="cosine"),
                     "protected_vs_raw_features_1nn": nn_share(prot[keep], lab, raw[keep], lab, metric="cosine"),
                     "protected_features_1nn": nn_share(prot[keep], lab, metric="cosine")})
        figures[f"tsne-{n}"] = figure(points, placed, own, lab, names, protector, cfg.model, cfg.grid)
    ctx.manifest.seeds["tsne"] = {"seed": cfg.seed, "rule": "openTSNE TSNE(random_state=seed) for every map; "
                                  "image subset numpy.random.default_rng([seed, crc32(identity)])"}
    ctx.manifest.data["identities"] = names
    notes = (f"{len(names)} identities of {cfg.dataset} (the first by name with >= {cfg.min_images} images, at most "
             f"{cfg.max_images_per_identity} each), model {cfg.model}. Figures tsne-N.png follow the order of "
             "'protectors'. Columns *_1nn: share of points whose nearest neighbour (leave-one-out; in (b) the nearest "
             "raw point) has the same identity, in the 2-D map or in the feature space (cosine); chance is about "
             f"1/{len(names)}.")
    return ExperimentResult(tables={"tsne": pd.DataFrame(rows)}, figures=figures, notes=notes)

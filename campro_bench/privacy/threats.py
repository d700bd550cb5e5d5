"""Threat-model tables of an E1-protocol run: rank-k, verification, open-set and identity leakage.

Only assembly: the metrics are the pure functions of :mod:`.threat_models`; this module feeds
them the run's features and draws and summarises each metric over the seeded draws (mean, std,
t-interval, like ``e1.csv``). Rules (docs/privacy.md, "Threat models"):

* **Scores.** Rank-k uses each classifier's own scores (``nearest``: cosine to the enrolled
  template; ``linear``: the logits), fitted on the gallery only. Verification, open-set and
  leakage use cosine similarity to the enrolled template (the unit mean of an identity's k
  enrolled images): a verifier compares two faces, it trains nothing.
* **Thresholds** are calibrated per model on raw-vs-raw comparisons (raw gallery, raw probes),
  pooled over the draws, and fixed before any protected probe is scored; protected probes are
  judged against that same threshold, whichever gallery they meet. A rate the calibration scores
  cannot measure (fewer than ``min_false_accepts`` false accepts at it) gives NaN and a note.
* **Verification pairs** (per draw): every identity's probe against its own template (genuine)
  and against every other identity's template (impostor): C genuine and C (C - 1) impostor pairs.
* **Open-set** (per draw): a seeded half of the identities is the watch-list
  (:func:`~.threat_models.watch_lists`); mated searches are the probes of the listed identities,
  non-mated searches every drawn image (gallery and probe) of the others.
* **Own calibration** (re-enrolled gallery only): the same metrics with the threshold calibrated
  on the protected comparisons themselves, as a gray-box attacker who owns the camera can do.
* **Leakage**: cosine of each drawn image's protected embedding to its raw embedding, and the
  share accepted by the raw image-to-image verification threshold at ``leakage_far``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..config import option, validate_config
from ..errors import CamproError, UnknownNameError
from .classifiers import build_classifier
from .identification import FeatureSet
from .splits import IdentificationSplits
from .stats import summarize
from .threat_models import (
    OPEN_SET_STREAM,
    THREAT_MODELS,
    OperatingPoint,
    UnmeasurableRateError,
    calibrate,
    enrolment_templates,
    leakage,
    open_set_rates,
    open_set_scores,
    rank_k_hits,
    verification_scores,
    watch_lists,
)

if TYPE_CHECKING:
    from .evaluate import ProtocolConfig, ProtocolOutcome


@dataclass(frozen=True)
class ThreatConfig:
    """``[threats]``: the operating points of the threat models beyond closed-set top-1."""

    ranks: list[int] = option(lambda: [5, 10], help="rank-k: the shortlist sizes k")
    fars: list[float] = option(lambda: [1e-2, 1e-3, 1e-4], help="verification: false-accept rates")
    fpirs: list[float] = option(lambda: [1e-2, 1e-1], help="open-set: false-positive identification rates")
    min_false_accepts: int = option(10, ge=1, le=1_000_000,
                                    help="a rate is reported only if its calibration holds this many false accepts")
    leakage_far: float = option(1e-3, gt=0.0, lt=1.0, help="leakage: the raw verification threshold's FAR")

    def __post_init__(self) -> None:
        validate_config(self, "threats")
        if not self.ranks or min(self.ranks) < 1:
            raise CamproError(f"threats.ranks must be a non-empty list of integers >= 1, got {self.ranks}")
        for key in ("fars", "fpirs"):
            rates = getattr(self, key)
            if not rates or not all(0.0 < r < 1.0 for r in rates):
                raise CamproError(f"threats.{key} must be a non-empty list of rates in (0, 1), got {rates}")


def check_threat_models(names: Sequence[str]) -> None:
    """Refuse an unknown threat model, naming the known ones."""
    bad = [n for n in names if n not in THREAT_MODELS]
    if bad or not names:
        raise UnknownNameError(f"unknown threat model(s) {bad or names}; known: {', '.join(THREAT_MODELS)}")


def rate_label(rate: float) -> str:
    """``1e-2`` for 0.01: the way papers write operating points."""
    exponent = math.log10(rate)
    return f"1e{round(exponent)}" if abs(exponent - round(exponent)) < 1e-9 else f"{rate:g}"


# ----------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------
def _gallery_index(splits: IdentificationSplits) -> np.ndarray:
    """``[R, C, K]`` gallery indices (K = 1 for the paper's one-image enrolment)."""
    return splits.gallery if splits.gallery.ndim == 3 else splits.gallery[:, :, None]


def cosine_templates(gallery: FeatureSet, splits: IdentificationSplits, first_only: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Enrolled templates ``[R, C, D]`` and their validity ``[R, C]`` (``first_only``: the first
    enrolled image alone, for image-to-image comparisons)."""
    index = _gallery_index(splits)[..., :1] if first_only else _gallery_index(splits)
    return enrolment_templates(gallery.embeddings[index], gallery.detected[index])


def cosine_scores(templates: np.ndarray, valid: np.ndarray, search: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Cosine ``[R, P, C]`` of unit searches ``[R, P, D]`` against templates; ``-inf`` where the
    template or the searched face is missing."""
    unit = search / np.maximum(np.linalg.norm(search, axis=-1, keepdims=True), 1e-12)
    s = np.einsum("rpd,rcd->rpc", unit.astype(np.float64), templates.astype(np.float64))
    s[~np.broadcast_to(valid[:, None, :], s.shape)] = -np.inf
    s[~found] = -np.inf
    return s


def fit_classifier(name: str, options: dict[str, Any] | None, gallery: FeatureSet, splits: IdentificationSplits,
                   device: torch.device | str = "cpu") -> Any:
    """The classifier ``name`` fitted on each draw's gallery alone (as in
    :func:`~.identification.identify_many`)."""
    index = splits.gallery
    g = torch.from_numpy(np.ascontiguousarray(gallery.embeddings[index], dtype=np.float32)).to(device)
    gv = torch.from_numpy(np.ascontiguousarray(gallery.detected[index], dtype=bool)).to(device)
    with torch.inference_mode():
        return build_classifier(name, options).fit(g, gv)


def classifier_scores(fitted: Any, probes: FeatureSet, splits: IdentificationSplits,
                      device: torch.device | str = "cpu") -> np.ndarray:
    """``[R, C, C]`` scores of each probe against every identity by a fitted classifier; a probe
    without a face scores ``-inf`` everywhere."""
    p = torch.from_numpy(np.ascontiguousarray(probes.embeddings[splits.probe], dtype=np.float32)).to(device)
    with torch.inference_mode():
        scores = fitted.scores(p).double().cpu().numpy()
    scores[~probes.detected[splits.probe].astype(bool)] = -np.inf
    return scores


# ----------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """Where a row belongs: dataset, image type, gallery kind, model."""

    dataset: str
    image_type: str
    gallery: str
    model: str


def _row(cell: Cell, cfg: "ProtocolConfig", threat: str, classifier: str, metric: str, per_repeat: np.ndarray | None,
         identities: int, calibration: int | None = None, note: str = "") -> dict[str, Any]:
    values = None if per_repeat is None else np.asarray(per_repeat, np.float64)
    s = summarize(values, cfg.confidence) if values is not None else None
    return {"dataset": cell.dataset, "image_type": cell.image_type, "gallery": cell.gallery, "model": cell.model,
            "gallery_images": cfg.gallery_images, "threat_model": threat, "classifier": classifier, "metric": metric,
            "value_mean": s.mean if s else math.nan, "value_std": s.std if s else math.nan,
            "ci_low": s.ci_low if s else math.nan, "ci_high": s.ci_high if s else math.nan,
            "repeats": cfg.repeats, "identities": identities,
            "calibration_scores": calibration if calibration is not None else math.nan, "note": note}


def operating_points(scores: np.ndarray, rates: Sequence[float], minimum: int) -> dict[float, OperatingPoint | str]:
    """The threshold of each false-accept ``rates`` entry, calibrated on the negative ``scores``
    (impostor pairs for FAR, non-mated searches for FPIR) with :func:`calibrate`, or the reason it
    cannot be measured (``"not measured: ..."``: the threshold would rest on fewer than ``minimum``
    false accepts, or too few scores are finite).

    Shared by the E1 threat rows here and the audit's threat rows, so both calibrate the same way."""
    out: dict[float, OperatingPoint | str] = {}
    for rate in rates:
        try:
            out[rate] = calibrate(scores, rate, minimum)
        except UnmeasurableRateError as exc:
            out[rate] = f"not measured: {exc}"
    return out


@dataclass
class ModelFeatures:
    """One model's features on one dataset: by image type, plus the raw image type's name."""

    by_spec: Mapping[str, FeatureSet]
    raw_spec: str


def _galleries(cfg: "ProtocolConfig", spec: str, is_raw: bool, feats: ModelFeatures) -> dict[str, FeatureSet]:
    kinds = {"raw": feats.by_spec[feats.raw_spec]} if "raw" in cfg.galleries else {}
    if "protected" in cfg.galleries and not is_raw:
        kinds["protected"] = feats.by_spec[spec]
    return kinds


def rank_rows(cfg: "ProtocolConfig", dataset: str, model: str, feats: ModelFeatures, is_raw: Mapping[str, bool],
              splits: IdentificationSplits, device: torch.device | str) -> list[dict[str, Any]]:
    """Rank-k hit rate of every classifier, image type and gallery kind (ties in expectation)."""
    rows = []
    truth = np.broadcast_to(np.arange(splits.n_identities), splits.probe.shape)
    raw_fits: dict[str, Any] = {}  # one fit on the raw gallery serves every image type
    for spec in cfg.protectors:
        for kind, gallery in _galleries(cfg, spec, is_raw[spec], feats).items():
            for name in cfg.classifiers:
                options = cfg.classifier_options.get(name)
                if kind == "raw" and name in raw_fits:
                    fitted = raw_fits[name]
                else:
                    fitted = fit_classifier(name, options, gallery, splits, device)
                    if kind == "raw":
                        raw_fits[name] = fitted
                scores = classifier_scores(fitted, feats.by_spec[spec], splits, device)
                hits = rank_k_hits(scores, truth, cfg.threats.ranks).mean(axis=1)  # [R, K]
                for n, k in enumerate(cfg.threats.ranks):
                    rows.append(_row(Cell(dataset, spec, kind, model), cfg, "rank-k", name, f"rank-{k}",
                                     hits[:, n], splits.n_identities))
    return rows


def verification_rows(cfg: "ProtocolConfig", dataset: str, model: str, feats: ModelFeatures,
                      is_raw: Mapping[str, bool], splits: IdentificationSplits) -> tuple[list[dict[str, Any]], dict]:
    """TAR at each FAR (threshold from raw-vs-raw impostor pairs) and the FAR the protected
    impostor pairs actually reach at that threshold."""
    raw = feats.by_spec[feats.raw_spec]
    probe_found = lambda fs: fs.detected[splits.probe].astype(bool)  # noqa: E731
    t_raw, v_raw = cosine_templates(raw, splits)
    _, calib = verification_scores(cosine_scores(t_raw, v_raw, raw.embeddings[splits.probe], probe_found(raw)),
                                   probe_found(raw))
    points = operating_points(calib, cfg.threats.fars, cfg.threats.min_false_accepts)
    rows = []
    for spec in cfg.protectors:
        probes = feats.by_spec[spec]
        for kind, gallery in _galleries(cfg, spec, is_raw[spec], feats).items():
            t, v = cosine_templates(gallery, splits)
            genuine, impostor = verification_scores(
                cosine_scores(t, v, probes.embeddings[splits.probe], probe_found(probes)), probe_found(probes))
            cell = Cell(dataset, spec, kind, model)
            for far, point in points.items():
                label = rate_label(far)
                if isinstance(point, str):
                    rows.append(_row(cell, cfg, "verification", "cosine", f"TAR@FAR={label}", None,
                                     splits.n_identities, calib.size, point))
                    continue
                tar = [point.accept_rate(g) for g in genuine]
                far_seen = [point.accept_rate(i) for i in impostor]
                rows.append(_row(cell, cfg, "verification", "cosine", f"TAR@FAR={label}", np.array(tar),
                                 splits.n_identities, calib.size))
                rows.append(_row(cell, cfg, "verification", "cosine", f"FAR seen@FAR={label}", np.array(far_seen),
                                 splits.n_identities, calib.size))
            if kind == "protected":  # the re-enrolling attacker can also calibrate on protected impostor pairs
                rows += _own_calibration(cell, cfg, "verification", "TAR@FAR", impostor, cfg.threats.fars,
                                         lambda p: [p.accept_rate(g) for g in genuine], splits.n_identities)
    info = {rate_label(r): ({"threshold": p.threshold, "impostor_scores": p.impostors} if not isinstance(p, str)
                            else p) for r, p in points.items()}
    return rows, info


OWN = " (own calibration)"
"""Suffix of the metrics whose threshold the re-enrolling attacker calibrates on protected
comparisons (protected gallery only): the raw threshold means little when protected faces all
look alike, which the ``seen`` rows show."""


def _own_calibration(cell: Cell, cfg: "ProtocolConfig", threat: str, metric: str, negatives: np.ndarray,
                     rates: Sequence[float], per_draw: Any, identities: int) -> list[dict[str, Any]]:
    """Rows of ``metric`` at thresholds calibrated on the protected ``negatives`` themselves."""
    rows = []
    for rate, point in operating_points(negatives, rates, cfg.threats.min_false_accepts).items():
        label = f"{metric}={rate_label(rate)}{OWN}"
        values = None if isinstance(point, str) else np.array(per_draw(point))
        rows.append(_row(cell, cfg, threat, "cosine", label, values, identities, negatives.size,
                         point if isinstance(point, str) else ""))
    return rows


def _open_set_searches(feats: FeatureSet, splits: IdentificationSplits, off: np.ndarray, r: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and face flags of the non-mated searches of draw ``r``: every drawn image
    (gallery and probe) of the identities ``off`` the watch-list."""
    index = np.concatenate([_gallery_index(splits)[r, off].ravel(), splits.probe[r, off]])
    return feats.embeddings[index], feats.detected[index].astype(bool)


def open_set_draw(templates: tuple[np.ndarray, np.ndarray], probes: FeatureSet, splits: IdentificationSplits,
                   watch: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One open-set draw ``r`` against the watch-list ``watch``: (top score, its watch-list slot, the
    true slot, -1 for a non-mated search) of every search (the mated probes of ``watch`` first, then
    every drawn image of the identities off the list), and the non-mated mask.

    ``templates``: every identity's enrolled template and validity (:func:`cosine_templates`); only
    the listed ones are searched. Shared by :func:`open_set_rows` and the audit's open-set rows."""
    off = np.setdiff1d(np.arange(splits.n_identities), watch)
    t, v = templates[0][r:r + 1], templates[1][r:r + 1]
    mated_emb = probes.embeddings[splits.probe[r, watch]]
    mated_found = probes.detected[splits.probe[r, watch]].astype(bool)
    non_emb, non_found = _open_set_searches(probes, splits, off, r)
    emb = np.concatenate([mated_emb, non_emb])[None]
    found = np.concatenate([mated_found, non_found])[None]
    top, slot = open_set_scores(cosine_scores(t, v, emb, found)[0], watch)
    true_slot = np.concatenate([watch, np.full(non_emb.shape[0], -1)])
    return top, slot, true_slot, true_slot < 0


def open_set_rows(cfg: "ProtocolConfig", dataset: str, model: str, feats: ModelFeatures, is_raw: Mapping[str, bool],
                  splits: IdentificationSplits) -> tuple[list[dict[str, Any]], dict]:
    """DIR at each FPIR (threshold from raw non-mated searches of a raw watch-list) and the FPIR
    the protected non-mated searches reach at that threshold."""
    watch = watch_lists(splits.n_identities, splits.repeats, cfg.seed)
    raw = feats.by_spec[feats.raw_spec]
    raw_templates = cosine_templates(raw, splits)
    raw_draws = [open_set_draw(raw_templates, raw, splits, watch[r], r) for r in range(splits.repeats)]
    calib = np.concatenate([top[non] for top, _, _, non in raw_draws])
    points = operating_points(calib, cfg.threats.fpirs, cfg.threats.min_false_accepts)
    rows = []
    for spec in cfg.protectors:
        for kind, gallery in _galleries(cfg, spec, is_raw[spec], feats).items():
            templates = cosine_templates(gallery, splits)
            draws = [open_set_draw(templates, feats.by_spec[spec], splits, watch[r], r) for r in range(splits.repeats)]
            cell = Cell(dataset, spec, kind, model)
            for fpir, point in points.items():
                label = rate_label(fpir)
                if isinstance(point, str):
                    rows.append(_row(cell, cfg, "open-set", "cosine", f"DIR@FPIR={label}", None, watch.shape[1],
                                     calib.size, point))
                    continue
                rates = np.array([open_set_rates(top, slot, true, point) for top, slot, true, _ in draws])
                rows.append(_row(cell, cfg, "open-set", "cosine", f"DIR@FPIR={label}", rates[:, 0], watch.shape[1],
                                 calib.size))
                rows.append(_row(cell, cfg, "open-set", "cosine", f"FPIR seen@FPIR={label}", rates[:, 1],
                                 watch.shape[1], calib.size))
            if kind == "protected":
                non_mated = np.concatenate([top[non] for top, _, _, non in draws])
                rows += _own_calibration(cell, cfg, "open-set", "DIR@FPIR", non_mated, cfg.threats.fpirs,
                                         lambda p: [open_set_rates(t, s, tr, p)[0] for t, s, tr, _ in draws],
                                         watch.shape[1])
    info = {"watch_list": f"numpy.random.default_rng([seed + repeat, {OPEN_SET_STREAM}]).permutation(C)[:C // 2]",
            "watch_list_size": int(watch.shape[1]), "non_mated_searches_per_draw": int(calib.size // splits.repeats),
            "thresholds": {rate_label(r): ({"threshold": p.threshold, "non_mated_searches": p.impostors}
                                           if not isinstance(p, str) else p) for r, p in points.items()}}
    return rows, info


def raw_leakage_point(raw: FeatureSet, splits: IdentificationSplits, far: float, min_false_accepts: int
                      ) -> OperatingPoint | str:
    """The raw image-to-image verification threshold at ``far``: each draw's raw probes against
    the first enrolled raw image of every other identity, pooled over the draws (or why not)."""
    found = raw.detected[splits.probe].astype(bool)
    t, v = cosine_templates(raw, splits, first_only=True)
    _, calib = verification_scores(cosine_scores(t, v, raw.embeddings[splits.probe], found), found)
    return operating_points(calib, [far], min_false_accepts)[far]


def leakage_summary(raw: FeatureSet, variant: FeatureSet, used: np.ndarray, point: OperatingPoint | str,
                    far: float) -> dict[str, Any]:
    """Mean (and std) cosine of the ``used`` images' ``variant`` (protected, restored, enhanced)
    embeddings to their raw ones, and the share the raw threshold ``point`` accepts."""
    both = raw.detected[used].astype(bool) & variant.detected[used].astype(bool)
    cos = leakage(variant.embeddings[used], raw.embeddings[used], both)[both]
    share = math.nan if isinstance(point, str) or not cos.size else float(point.accept(cos).mean())
    return {"images": int(np.asarray(used).size), "faces_on_both": int(both.sum()),
            "cosine_mean": float(cos.mean()) if cos.size else math.nan,
            "cosine_std": float(cos.std(ddof=1)) if cos.size > 1 else math.nan,
            f"share_above_raw_threshold@FAR={rate_label(far)}": share,
            "raw_threshold": math.nan if isinstance(point, str) else point.threshold,
            "note": point if isinstance(point, str) else ""}


def drawn_images(splits: IdentificationSplits) -> np.ndarray:
    """Indices of every image some draw uses (gallery or probe)."""
    return np.unique(np.concatenate([_gallery_index(splits).ravel(), splits.probe.ravel()]))


def leakage_rows(cfg: "ProtocolConfig", dataset: str, model: str, feats: ModelFeatures, is_raw: Mapping[str, bool],
                 splits: IdentificationSplits) -> list[dict[str, Any]]:
    """Per protected image type: :func:`leakage_summary` over every drawn image."""
    raw = feats.by_spec[feats.raw_spec]
    far = cfg.threats.leakage_far
    point = raw_leakage_point(raw, splits, far, cfg.threats.min_false_accepts)
    used = drawn_images(splits)
    return [{"dataset": dataset, "image_type": spec, "model": model,
             **leakage_summary(raw, feats.by_spec[spec], used, point, far)}
            for spec in cfg.protectors if not is_raw[spec]]


# ----------------------------------------------------------------------------------------
# the tables of a run
# ----------------------------------------------------------------------------------------
def closed_set_rows(cfg: "ProtocolConfig", outcome: "ProtocolOutcome") -> list[dict[str, Any]]:
    """E1's own top-1 rows, in the threat table's form (the same numbers as ``e1.csv``)."""
    rows = []
    for (dataset, spec, clf, kind, model), res in outcome.results.items():
        rows.append(_row(Cell(dataset, spec, kind, model), cfg, "closed-set", clf, "top-1", res.accuracies,
                         int(res.correct.shape[1])))
    return rows


def threat_tables(cfg: "ProtocolConfig", outcome: "ProtocolOutcome", device: torch.device | str = "cpu"
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(long threat table, leakage table, manifest notes) of a finished E1-protocol run."""
    rows: list[dict[str, Any]] = closed_set_rows(cfg, outcome) if "closed-set" in cfg.threat_models else []
    leaks: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    for dataset, by_model in outcome.features.items():
        splits = outcome.splits[dataset]
        for model, by_spec in by_model.items():
            feats = ModelFeatures(by_spec, outcome.raw_spec)
            is_raw = {spec: spec == outcome.raw_spec for spec in cfg.protectors}
            info: dict[str, Any] = {}
            if "rank-k" in cfg.threat_models:
                rows += rank_rows(cfg, dataset, model, feats, is_raw, splits, device)
            if "verification" in cfg.threat_models:
                more, info["verification"] = verification_rows(cfg, dataset, model, feats, is_raw, splits)
                rows += more
            if "open-set" in cfg.threat_models:
                more, info["open-set"] = open_set_rows(cfg, dataset, model, feats, is_raw, splits)
                rows += more
            leaks += leakage_rows(cfg, dataset, model, feats, is_raw, splits)
            notes[f"{dataset}|{model}"] = info
    return pd.DataFrame(rows), pd.DataFrame(leaks), notes


METRIC_ORDER = ("closed-set", "rank-k", "verification", "open-set")


def threats_wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, image type, gallery, model), one column per metric (classifier
    named for top-1 and rank-k), in %; the observed FAR / FPIR columns are left out."""
    if long.empty:
        return long
    shown = long[~long["metric"].str.contains("seen")].copy()
    shown["column"] = [f"{m} {c}" if t in ("closed-set", "rank-k") else m
                       for m, c, t in zip(shown["metric"], shown["classifier"], shown["threat_model"])]
    order = list(dict.fromkeys(shown.sort_values("threat_model", key=lambda s: s.map(METRIC_ORDER.index),
                                                 kind="stable")["column"]))
    keys = ["dataset", "image_type", "gallery", "model"]
    wide = shown.pivot(index=keys, columns="column", values="value_mean")
    rows = pd.MultiIndex.from_frame(shown[keys].drop_duplicates())  # pivoting sorts; restore the run's order
    return (wide.reindex(index=rows, columns=order) * 100.0).reset_index()

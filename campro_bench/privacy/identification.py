"""Closed-set identification on embedding arrays (paper Sec. VI-A and VII-B).

Everything works on whole-dataset arrays (``embeddings [N, D]``, ``detected [N]``) plus an
:class:`~campro_bench.privacy.splits.IdentificationSplits`: a repeat only resamples *indices*, so
nothing is ever embedded twice. Per repeat, a classifier is fitted on the gallery features alone
and scores the probes; a probe is correct iff its top-1 class is its own identity.

Rules for missing faces (``detected == False``, all-zero embedding):

* a probe with no face is counted as wrong (the attacker identified nobody);
* a gallery image with no face leaves its identity without a template: that class can never be
  predicted, so its probe is wrong too, but the identity stays in the gallery and in the chance
  level ``1 / C``. Splits never depend on detection, so every model and protector of a dataset is
  evaluated on exactly the same draws.

One fitted gallery serves any number of probe sets (:func:`identify_many`): with a raw gallery the
classifier is trained once per model and repeat, not once per protector.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from .cache import OutcomeCache, array_digest, outcome_key
from .classifiers import IdentificationClassifier
from .splits import IdentificationSplits
from .stats import AccuracySummary, summarize


@dataclass(frozen=True)
class FeatureSet:
    """Whole-dataset features of one (model, protector): ``embeddings [N, D]``, ``detected [N]``."""

    embeddings: np.ndarray
    detected: np.ndarray

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.detected.shape != (self.embeddings.shape[0],):
            raise ValueError(
                f"features need embeddings [N, D] and detected [N]; got {self.embeddings.shape} "
                f"and {self.detected.shape}"
            )

    def digest(self) -> str:
        return array_digest(self.embeddings, self.detected.astype(bool))


@dataclass
class IdentificationResult:
    """Per-repeat, per-identity outcome of one (gallery, probe set, classifier)."""

    correct: np.ndarray  # bool [R, C]
    gallery_detected: np.ndarray  # bool [R, C], or [R, C, K] with k gallery images per identity
    probe_detected: np.ndarray  # bool [R, C]
    chance: float
    fit_info: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def accuracies(self) -> np.ndarray:
        """Top-1 accuracy of each repeat ``[R]``."""
        return self.correct.mean(axis=1)

    def summary(self, confidence: float = 0.95) -> AccuracySummary:
        return summarize(self.accuracies, confidence)


SMALL_PROBLEM = 1 << 22
"""Score-matrix elements below which one CPU thread is used: waking a thread pool for each tiny
op costs more than it saves (milliseconds per op on a busy machine)."""


@contextlib.contextmanager
def _threads_for(elements: int, device: torch.device) -> Iterator[None]:
    previous = torch.get_num_threads()
    small = device.type == "cpu" and elements < SMALL_PROBLEM and previous > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(previous)


def _chunks(repeats: int, identities: int, memory_budget: int) -> list[slice]:
    per_repeat = 4 * identities * identities * 4  # a few float32 [C, C] buffers per repeat
    size = max(1, min(repeats, memory_budget // max(per_repeat, 1)))
    return [slice(i, min(i + size, repeats)) for i in range(0, repeats, size)]


def _gather(features: FeatureSet, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    emb = torch.from_numpy(np.ascontiguousarray(features.embeddings[index], dtype=np.float32)).to(device)
    det = torch.from_numpy(np.ascontiguousarray(features.detected[index], dtype=bool)).to(device)
    return emb, det


@torch.inference_mode()
def identify_many(
    classifier: IdentificationClassifier,
    gallery: FeatureSet,
    probes: Mapping[str, FeatureSet],
    splits: IdentificationSplits,
    *,
    device: torch.device | str = "cpu",
    cache: OutcomeCache | None = None,
    memory_budget: int = 1 << 30,
) -> dict[str, IdentificationResult]:
    """Fit ``classifier`` on the gallery of every repeat once; evaluate every probe set on it.

    Returns one :class:`IdentificationResult` per probe-set name. With ``cache``, outcomes are
    looked up by content (classifier config, gallery and probe features, splits) and the fit is
    skipped when every probe set is cached.
    """
    device = torch.device(device)
    reps, ids = splits.gallery.shape[:2]
    gallery_det = gallery.detected[splits.gallery].astype(bool)  # [R, C] or, k images each, [R, C, K]
    keys: dict[str, str] = {}
    results: dict[str, IdentificationResult] = {}
    if cache is not None:
        split_digest = array_digest(splits.gallery, splits.probe)
        gallery_digest = gallery.digest()
        for name, feats in probes.items():
            keys[name] = outcome_key(classifier.config(), gallery_digest, feats.digest(), split_digest)
            hit = cache.get(keys[name])
            if hit is not None and hit[0].shape == (reps, ids):
                results[name] = IdentificationResult(
                    hit[0], gallery_det, feats.detected[splits.probe].astype(bool), splits.chance,
                    hit[1], cached=True,
                )
    todo = {name: feats for name, feats in probes.items() if name not in results}
    if not todo:
        return results
    correct = {name: np.zeros((reps, ids), dtype=bool) for name in todo}
    fit_info: dict[str, list[Any]] = {}
    target = torch.arange(ids, device=device)
    for part in _chunks(reps, ids, memory_budget):
        g_emb, g_det = _gather(gallery, splits.gallery[part], device)
        with _threads_for(g_emb.shape[0] * ids * ids, device):
            fitted = classifier.fit(g_emb, g_det)  # the gallery only: probes are never passed here
            for key in ("train_loss", "train_accuracy", "converged", "iterations", "grad_max"):
                if hasattr(fitted, key):
                    fit_info.setdefault(key, []).extend(getattr(fitted, key))
            has_template = g_det if g_det.dim() == 2 else g_det.any(dim=-1)
            for name, feats in todo.items():
                p_emb, p_det = _gather(feats, splits.probe[part], device)
                top1 = fitted.scores(p_emb).argmax(dim=-1)
                hit = (top1 == target) & p_det & has_template  # no template or no probe face: wrong
                correct[name][part] = hit.cpu().numpy()
    for name, feats in todo.items():
        results[name] = IdentificationResult(
            correct[name], gallery_det, feats.detected[splits.probe].astype(bool), splits.chance, fit_info
        )
        if cache is not None:
            cache.put(keys[name], correct[name], fit_info)
    return {name: results[name] for name in probes}


def identify(
    classifier: IdentificationClassifier,
    gallery: FeatureSet,
    probe: FeatureSet,
    splits: IdentificationSplits,
    **kwargs: Any,
) -> IdentificationResult:
    """:func:`identify_many` for a single probe set."""
    return identify_many(classifier, gallery, {"probe": probe}, splits, **kwargs)["probe"]

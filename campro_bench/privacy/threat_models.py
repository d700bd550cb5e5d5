"""Threat models beyond closed-set top-1, as pure functions on scores and embeddings.

Closed-set rank-1 with one gallery image per identity (:mod:`.identification`) is one attacker.
These functions measure the others a face-privacy study compares (docs/privacy.md, "Threat
models"), torchmetrics-style: functions on arrays first; :mod:`.threats` only assembles tables.

* :func:`rank_k_hits`: an attacker who shortlists k candidates (CMC at rank k);
* :func:`calibrate` + :class:`OperatingPoint`: a decision threshold at a fixed false-accept rate,
  calibrated on impostor scores (raw-vs-raw pairs) *before* protected probes are scored;
  :func:`verification_scores` splits a score matrix into genuine and impostor pairs (1:1
  verification: TAR at FAR);
* :func:`watch_lists`, :func:`open_set_scores`, :func:`open_set_rates`: open-set 1:N search
  against a watch-list (DIR at FPIR);
* :func:`enrolment_templates`: a k-image enrolment's template (the mean unit embedding);
* :func:`leakage`: cosine of a protected (or restored) face to the same image's raw embedding.

Ties are broken uniformly at random *in expectation* (no random numbers are drawn): a probe whose
true class ties with ``e - 1`` others counts ``(k - g) / e`` of a rank-k hit, ``g`` being the
classes scoring strictly higher; a threshold that falls on tied impostor scores accepts the
fraction of them that makes the false-accept rate exactly the target (the randomised
Neyman-Pearson test, i.e. linear interpolation of the ROC). With continuous scores neither rule
ever matters; with degenerate ones (every face mapped to one embedding) they give the known
answers: rank-k = k / C, TAR = FAR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CamproError

THREAT_MODELS = ("closed-set", "rank-k", "verification", "open-set")
"""``closed-set``: top-1 over the whole gallery (E1's e1.csv); ``rank-k``: the true identity among
the k best; ``verification``: 1:1 accept/reject at a fixed FAR; ``open-set``: 1:N search of a
watch-list at a fixed FPIR."""

OPEN_SET_STREAM = 1
"""Second word of the watch-list generator seed ``default_rng([seed + repeat, OPEN_SET_STREAM])``:
a stream independent of the gallery/probe draws of the same repeat."""


class UnmeasurableRateError(CamproError):
    """A false-accept rate below what the number of impostor scores can measure."""


def _unit(x: np.ndarray) -> np.ndarray:
    """Unit rows; all-zero rows (no face) stay zero."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------
# rank-k
# ----------------------------------------------------------------------------------------
def rank_k_hits(scores: np.ndarray, true_class: np.ndarray, ks: list[int] | tuple[int, ...]) -> np.ndarray:
    """Expected rank-k hit of each probe, ``[..., P, len(ks)]`` in [0, 1].

    ``scores [..., P, C]`` (``-inf`` for a class without a template; a probe whose face was not
    found should have all ``-inf`` scores), ``true_class [..., P]``. A probe is a hit at rank k when
    its true class is among the k best; ties are broken uniformly at random (in expectation). A
    true class scored ``-inf`` (no template, or no probe face) is never a hit. The CMC
    ``rank_k_hits(...).mean(axis=-2)`` is non-decreasing in k and reaches 1 at k = C when every
    probe and template is valid.
    """
    scores = np.asarray(scores, dtype=np.float64)
    true_class = np.asarray(true_class, dtype=np.int64)
    if scores.shape[:-1] != true_class.shape:
        raise ValueError(f"scores {scores.shape} and true_class {true_class.shape} disagree")
    classes = scores.shape[-1]
    if any(int(k) < 1 for k in ks):
        raise CamproError(f"ranks must be >= 1, got {list(ks)}")
    own = np.take_along_axis(scores, true_class[..., None], axis=-1)
    greater = (scores > own).sum(axis=-1)
    equal = (scores == own).sum(axis=-1)  # includes the true class itself
    finite = np.isfinite(own[..., 0])
    out = np.empty((*true_class.shape, len(ks)))
    for n, k in enumerate(ks):
        k = min(int(k), classes)
        out[..., n] = np.where(finite, np.clip((k - greater) / np.maximum(equal, 1), 0.0, 1.0), 0.0)
    return out


# ----------------------------------------------------------------------------------------
# thresholds at a fixed false-accept rate
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoint:
    """A decision rule fixed on impostor scores: accept a score above ``threshold``, and the
    fraction ``tie_accept`` of the scores exactly at it (so that the calibration set's
    false-accept rate is exactly ``rate``)."""

    rate: float
    threshold: float
    tie_accept: float
    impostors: int

    def accept(self, scores: np.ndarray) -> np.ndarray:
        """Acceptance (probability) of each score; ``-inf`` (no face) is never accepted."""
        s = np.asarray(scores, dtype=np.float64)
        return (s > self.threshold) + self.tie_accept * (s == self.threshold)

    def accept_rate(self, scores: np.ndarray) -> float:
        """Mean acceptance over ``scores`` (TAR on genuine, FAR / FPIR on impostor scores)."""
        s = np.asarray(scores)
        return float(self.accept(s).mean()) if s.size else math.nan


def min_impostors(rate: float, min_false_accepts: int) -> int:
    """Impostor scores needed to measure ``rate``: ``min_false_accepts / rate`` (rounded up)."""
    return math.ceil(min_false_accepts / rate - 1e-9)


def calibrate(impostor_scores: np.ndarray, rate: float, min_false_accepts: int = 10) -> OperatingPoint:
    """The operating point whose false-accept rate on ``impostor_scores`` is exactly ``rate``.

    Raises :class:`UnmeasurableRateError` when ``rate x len(impostor_scores)`` is below
    ``min_false_accepts`` (a threshold there would rest on fewer false accepts than that; 10 by
    default, a relative standard error of about 30 % on the rate), or when fewer than
    ``rate x n`` impostor scores are finite (faces missing).
    """
    if not 0.0 < rate < 1.0:
        raise CamproError(f"a false-accept rate must lie in (0, 1), got {rate}")
    if min_false_accepts < 1:
        raise CamproError(f"min_false_accepts must be >= 1, got {min_false_accepts}")
    s = np.sort(np.asarray(impostor_scores, dtype=np.float64).ravel())[::-1]
    n = s.size
    target = rate * n
    if target < min_false_accepts - 1e-9:
        raise UnmeasurableRateError(
            f"rate {rate:g} needs >= {min_impostors(rate, min_false_accepts):,} impostor scores "
            f"({min_false_accepts} false accepts); only {n:,} available")
    j = min(n, math.ceil(target - 1e-9))
    threshold = float(s[j - 1])
    if not math.isfinite(threshold):
        raise UnmeasurableRateError(f"rate {rate:g}: fewer than {target:.0f} of {n:,} impostor scores are finite "
                                    "(faces not found)")
    greater = int((s > threshold).sum())
    equal = int((s == threshold).sum())
    return OperatingPoint(rate, threshold, float((target - greater) / equal), n)


# ----------------------------------------------------------------------------------------
# verification (1:1)
# ----------------------------------------------------------------------------------------
def verification_scores(scores: np.ndarray, probe_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine ``[R, C]`` and impostor ``[R, C, C - 1]`` cosine scores of a closed-set score matrix.

    ``scores [R, C, C]``: probe c (of identity c) against the template of every identity (``-inf``
    where a template has no face); ``probe_valid [R, C]``: False where the probe has no face (its
    row becomes ``-inf``: a face not found is never accepted). Pair rule: in every draw, each
    identity's probe against its own template is a genuine pair, against every other identity's
    template an impostor pair.
    """
    s = np.where(np.asarray(probe_valid, bool)[..., None], np.asarray(scores, np.float64), -np.inf)
    reps, probes, classes = s.shape
    if probes != classes:
        raise ValueError(f"verification needs one probe per identity, got {probes} probes for {classes} identities")
    genuine = np.diagonal(s, axis1=1, axis2=2).copy()
    off = ~np.eye(classes, dtype=bool)
    impostor = s[:, off].reshape(reps, classes, classes - 1)
    return genuine, impostor


# ----------------------------------------------------------------------------------------
# open-set (1:N) search
# ----------------------------------------------------------------------------------------
def watch_lists(identities: int, repeats: int, seed: int, size: int | None = None) -> np.ndarray:
    """``[R, W]`` sorted identity slots on the watch-list of each draw: a uniform random half
    (``size`` = ``identities // 2`` by default), drawn by
    ``numpy.random.default_rng([seed + r, OPEN_SET_STREAM])``."""
    size = identities // 2 if size is None else size
    if not 1 <= size < identities:
        raise CamproError(f"a watch-list needs between 1 and {identities - 1} of {identities} identities, got {size}")
    return np.stack([np.sort(np.random.default_rng([seed + r, OPEN_SET_STREAM]).permutation(identities)[:size])
                     for r in range(repeats)])


def open_set_scores(scores: np.ndarray, watch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top score over the watch-list and the slot it came from, for each search.

    ``scores [P, C]`` against every identity's template (``-inf`` where none), ``watch [W]``
    the enrolled slots. Returns ``(top [P], slot [P])``: ``slot`` is the enrolled identity's
    slot in ``0..C-1``.
    """
    sub = np.asarray(scores, np.float64)[:, watch]
    best = sub.argmax(axis=1)
    return sub[np.arange(sub.shape[0]), best], np.asarray(watch)[best]


def open_set_rates(top: np.ndarray, slot: np.ndarray, true_slot: np.ndarray,
                   point: OperatingPoint) -> tuple[float, float]:
    """(DIR, FPIR) of searches at an operating point calibrated on non-mated top scores.

    ``true_slot [P]``: the searched person's slot if enrolled on the watch-list, ``-1`` if not.
    DIR (detection and identification rate) = share of the mated searches whose top candidate is
    the right person *and* is accepted; FPIR = share of the non-mated searches with an accepted
    candidate. With no mated search nobody can be detected and identified: DIR is 0; with no
    non-mated search FPIR is NaN.
    """
    top, slot, true_slot = np.asarray(top, np.float64), np.asarray(slot), np.asarray(true_slot)
    accepted = point.accept(top)
    mated = true_slot >= 0
    dir_ = float((accepted * (slot == true_slot))[mated].sum() / mated.sum()) if mated.any() else 0.0
    fpir = float(accepted[~mated].mean()) if (~mated).any() else math.nan
    return dir_, fpir


# ----------------------------------------------------------------------------------------
# enrolment and leakage
# ----------------------------------------------------------------------------------------
def enrolment_templates(embeddings: np.ndarray, detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Templates of a k-image enrolment: the unit mean of the unit embeddings of the images whose
    face was found. ``embeddings [..., K, D]``, ``detected [..., K]`` -> ``([..., D], valid [...])``;
    with K = 1 the template is the image's own unit embedding."""
    e = _unit(embeddings) * np.asarray(detected, bool)[..., None]
    return _unit(e.sum(axis=-2)).astype(np.float32), np.asarray(detected, bool).any(axis=-1)


def leakage(protected: np.ndarray, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cosine of each protected (or restored) embedding to the raw embedding of the same image,
    ``[N]``; NaN where ``valid`` is False (a face missing on either side)."""
    cos = (_unit(protected) * _unit(raw)).sum(axis=-1)
    return np.where(np.asarray(valid, bool), cos, np.nan)

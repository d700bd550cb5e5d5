"""Face verification on LFW pairs: the official View 2 protocol, as pure functions.

For each of the 10 folds of ``pairs.txt`` the decision threshold on the cosine similarity of the
two embeddings is the one with the best accuracy on the other nine folds, and the accuracy is
measured on the held-out fold; the result is the mean and standard deviation over folds (the
protocol of Huang et al. 2007 used by FaceNet, dlib and SFace for their published numbers).

Evaluating only the first ``k`` folds uses the other ``k - 1`` for each threshold; with ``k = 1``
the fold is split into its even and odd pairs, each half's threshold chosen on the other half.

Sandberg's ``validate_on_lfw.py`` (the source of FaceNet's published 0.9905) adds two options,
available here too: ``--flip`` (each image's embedding concatenated with that of its mirrored
crop, :class:`HorizontalFlip`) and ``subtract_mean`` (the mean embedding of the training folds is
subtracted before the cosine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..datasets.faces import Pair
from ..protectors.base import Protector


class HorizontalFlip(Protector):
    """Mirror images left-right: in the paper pipeline, the mirrored aligned crop (test-time
    augmentation of Sandberg's ``--use_flipped_images``). Not registered: not a camera protector."""

    name = "hflip"
    differentiable = True

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return images.flip(-1)


@dataclass
class VerificationResult:
    """Per-fold accuracies and thresholds of a verification run."""

    accuracies: np.ndarray  # [folds]
    thresholds: np.ndarray  # [folds]
    pairs: int

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std())


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (predict *same* when ``score >= t``) with the best accuracy.

    Exact over all distinct scores; ties go to the lowest-scoring candidate's midpoint rule.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    tp = np.cumsum(y)  # same pairs at or above each candidate
    fp = np.cumsum(1 - y)
    tn = (1 - y).sum() - fp
    correct = tp + tn
    last_of_value = np.r_[s[1:] != s[:-1], True]  # a threshold cannot split equal scores
    correct = np.where(last_of_value, correct, -1)
    best = int(np.argmax(correct))
    all_different = int((1 - y).sum())  # threshold above every score
    if all_different > correct[best]:
        return float(s[0] + 1e-6)
    following = s[best + 1] if best + 1 < len(s) else s[best] - 1e-6
    return float((s[best] + following) / 2)


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((scores >= threshold) == same.astype(bool)).mean())


def pair_scores(pairs: list[Pair], index: dict[str, int], embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair's embeddings (rows are unit length, or zero if no face)."""
    a = embeddings[[index[p.first] for p in pairs]]
    b = embeddings[[index[p.second] for p in pairs]]
    return (a * b).sum(1)


def mean_subtracted_scores(pairs: list[Pair], index: dict[str, int], embeddings: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Scores as a function of the training pairs: cosine after subtracting their mean embedding."""
    a = embeddings[[index[p.first] for p in pairs]].astype(np.float64)
    b = embeddings[[index[p.second] for p in pairs]].astype(np.float64)

    def scores(train: np.ndarray) -> np.ndarray:
        mu = np.concatenate([a[train], b[train]]).mean(0)
        x, y = a - mu, b - mu
        return (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)

    return scores


def verify_folds(pairs: list[Pair], scores: np.ndarray | Callable[[np.ndarray], np.ndarray],
                 folds: int | None = None) -> VerificationResult:
    """The k-fold protocol over the first ``folds`` folds of ``pairs`` (all by default).

    ``scores`` is one score per pair, or a function of the boolean training mask that returns
    them (for scores that learn from the training folds, e.g. :func:`mean_subtracted_scores`).
    """
    fold_ids = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    used = sorted(set(fold_ids.tolist()))[: folds or None]
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    if len(used) == 1:
        members = np.nonzero(fold_ids == used[0])[0]
        for test, train in ((members[0::2], members[1::2]), (members[1::2], members[0::2])):
            splits.append((np.isin(np.arange(len(pairs)), train), np.isin(np.arange(len(pairs)), test)))
    else:
        splits = [(np.isin(fold_ids, [f for f in used if f != fold]), fold_ids == fold) for fold in used]
    accs, thresholds = [], []
    for train, test in splits:
        s = scores(train) if callable(scores) else scores
        t = best_threshold(s[train], same[train])
        accs.append(accuracy(s[test], same[test], t))
        thresholds.append(t)
    if len(used) == 1:  # the two halves of one fold report as that fold
        accs, thresholds = [float(np.mean(accs))], [float(np.mean(thresholds))]
    return VerificationResult(np.array(accs), np.array(thresholds), int(np.isin(fold_ids, used).sum()))

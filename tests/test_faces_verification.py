"""The LFW verification protocol: exact best thresholds and fold bookkeeping."""

from __future__ import annotations

import numpy as np

from campro_bench.datasets.faces import Pair
from campro_bench.faces.verification import accuracy, best_threshold, pair_scores, verify_folds


def test_best_threshold_is_exhaustively_best() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        same = rng.random(60) < 0.5
        scores = np.round(rng.normal(same * 0.8, 0.5), 1)  # ties on purpose
        t = best_threshold(scores, same)
        brute = max(accuracy(scores, same, c) for c in np.r_[scores, scores.max() + 1])
        assert accuracy(scores, same, t) == brute


def test_separable_scores_give_perfect_accuracy() -> None:
    same = np.array([True] * 5 + [False] * 5)
    scores = np.r_[np.linspace(0.6, 0.9, 5), np.linspace(-0.2, 0.3, 5)]
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.6 and accuracy(scores, same, t) == 1.0


def test_fold_protocol_uses_other_folds_for_thresholds() -> None:
    pairs, scores = [], []
    for fold in range(3):
        for k in range(10):
            same = k < 5
            pairs.append(Pair(fold, f"a{fold}{k}", f"b{fold}{k}", same))
            # folds 0 and 1 separate at 0.5; fold 2's scores are shifted so that 0.5 misclassifies some
            scores.append((0.7 if same else 0.3) + (0.25 if fold == 2 else 0.0))
    result = verify_folds(pairs, np.array(scores))
    assert result.pairs == 30 and len(result.accuracies) == 3
    assert result.accuracies[0] == 1.0 and result.accuracies[1] == 1.0
    assert result.accuracies[2] == 0.5  # its threshold came from folds 0-1, not from itself
    one = verify_folds(pairs, np.array(scores), folds=1)
    assert one.pairs == 10 and one.mean == 1.0


def test_pair_scores_are_cosines() -> None:
    emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]], np.float32)
    pairs = [Pair(0, "x", "y", True), Pair(0, "x", "z", False)]
    assert np.allclose(pair_scores(pairs, {"x": 0, "y": 1, "z": 2}, emb), [0.6, 0.0])


def test_mean_subtraction_removes_a_shared_offset() -> None:
    from campro_bench.faces.verification import mean_subtracted_scores

    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(40)]
    people = rng.normal(size=(20, 64))
    emb = np.stack([people[k // 2] + 0.05 * rng.normal(size=64) for k in range(40)]) + 50.0  # huge shared offset
    pairs = [Pair(f, ids[2 * k], ids[2 * k + 1], True) for f in (0, 1) for k in range(10 * f, 10 * f + 10)]
    pairs += [Pair(f, ids[2 * k], ids[(2 * k + 3) % 40], False) for f in (0, 1) for k in range(10 * f, 10 * f + 10)]
    index = {i: n for n, i in enumerate(ids)}
    assert verify_folds(pairs, mean_subtracted_scores(pairs, index, emb)).mean == 1.0
    same = np.array([p.same for p in pairs])
    plain = pair_scores(pairs, index, emb / np.linalg.norm(emb, axis=1, keepdims=True))
    centred = mean_subtracted_scores(pairs, index, emb)(np.ones(len(pairs), bool))
    assert plain[same].min() - plain[~same].max() < 0.05  # the offset squeezes all cosines near 1
    assert centred[same].min() - centred[~same].max() > 0.5

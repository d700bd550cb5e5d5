"""Known answers of the threat-model metrics (campro_bench.privacy.threat_models)."""

from __future__ import annotations

import numpy as np
import pytest

from campro_bench.errors import CamproError
from campro_bench.privacy.threat_models import (
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

FARS = (1e-2, 1e-3, 1e-4)


def clustered(identities: int, per_id: int, dim: int = 64, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """``[C, per_id, D]`` unit embeddings tightly around random centres: genuine cosines ~ 0.99,
    impostor cosines ~ N(0, 1/D), far apart."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, 1, dim))
    x = centres / np.linalg.norm(centres, axis=-1, keepdims=True) + noise * rng.standard_normal((identities, per_id, dim)) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def score_matrix(templates: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``[R, P, C]`` cosine scores of unit probes ``[R, P, D]`` against unit templates ``[R, C, D]``."""
    return np.einsum("rpd,rcd->rpc", probes, templates)


def draws(emb: np.ndarray, repeats: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per repeat, per identity: a random (gallery, probe) pair of different images."""
    rng = np.random.default_rng(seed)
    c, m, _ = emb.shape
    g, p = np.empty((repeats, c), int), np.empty((repeats, c), int)
    for r in range(repeats):
        for i in range(c):
            g[r, i], p[r, i] = rng.choice(m, 2, replace=False)
    ids = np.arange(c)
    return emb[ids, g], emb[ids, p]


# ---------------------------------------------------------------------------- rank-k
def test_rank_k_is_non_decreasing_and_reaches_one_at_the_gallery_size() -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((3, 40, 40))
    truth = np.broadcast_to(np.arange(40), (3, 40))
    ks = list(range(1, 41))
    cmc = rank_k_hits(scores, truth, ks).mean(axis=1)  # [R, K]
    assert (np.diff(cmc, axis=1) >= 0).all()
    assert np.allclose(cmc[:, -1], 1.0)
    assert np.allclose(cmc[:, 0], (scores.argmax(-1) == truth).mean(1))  # rank-1 = top-1
    assert (cmc[:, 0] < 0.2).all()  # random scores: near chance, not trivially 1


def test_rank_k_of_identical_scores_is_chance_and_missing_templates_never_hit() -> None:
    scores = np.zeros((1, 10, 10))
    hits = rank_k_hits(scores, np.arange(10)[None], [1, 5, 10]).mean(axis=1)[0]
    assert np.allclose(hits, [0.1, 0.5, 1.0])
    scores = np.random.default_rng(0).standard_normal((1, 10, 10))
    scores[..., 3] = -np.inf  # identity 3 has no template
    assert rank_k_hits(scores, np.arange(10)[None], [10])[0, 3, 0] == 0.0
    with pytest.raises(CamproError, match="ranks must be >= 1"):
        rank_k_hits(scores, np.arange(10)[None], [0])


# ---------------------------------------------------------------------------- verification
def test_separable_embeddings_give_tar_one_at_every_far() -> None:
    emb = clustered(200, 3)
    gal, probe = draws(emb, 3)
    genuine, impostor = verification_scores(score_matrix(gal, probe), np.ones((3, 200), bool))
    assert genuine.min() > impostor.max()  # the set is separable
    for far in FARS:
        point = calibrate(impostor, far)
        assert point.accept_rate(genuine) == 1.0
        assert point.accept_rate(impostor) == pytest.approx(far)


def test_identical_embeddings_for_every_identity_give_tar_equal_to_far() -> None:
    emb = np.ones((200, 3, 8)) / np.sqrt(8)  # every face of every person maps to one embedding
    gal, probe = draws(emb, 3)
    genuine, impostor = verification_scores(score_matrix(gal, probe), np.ones((3, 200), bool))
    for far in FARS:
        point = calibrate(impostor, far)
        assert point.accept_rate(genuine) == pytest.approx(far)


def test_identity_free_random_embeddings_give_tar_near_far() -> None:
    """Continuous scores with no identity information: TAR ~ FAR within binomial noise."""
    rng = np.random.default_rng(3)
    gal, probe = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in rng.standard_normal((2, 5, 300, 32)))
    genuine, impostor = verification_scores(score_matrix(gal, probe), np.ones((5, 300), bool))
    point = calibrate(impostor, 1e-1)
    assert abs(point.accept_rate(genuine) - 0.1) < 4 * np.sqrt(0.1 * 0.9 / genuine.size)


def test_threshold_comes_from_impostors_only_and_missing_faces_are_rejected() -> None:
    emb = clustered(100, 3)
    gal, probe = draws(emb, 2)
    valid = np.ones((2, 100), bool)
    valid[0, :10] = False
    genuine, impostor = verification_scores(score_matrix(gal, probe), valid)
    assert np.isneginf(genuine[0, :10]).all() and np.isneginf(impostor[0, :10]).all()
    point = calibrate(impostor, 1e-2)
    assert point.accept_rate(genuine[0]) == pytest.approx(0.9)  # only the found faces are accepted
    shifted = calibrate(impostor, 1e-2)
    assert shifted == point  # a pure function of the impostor scores


def test_a_far_the_impostor_pairs_cannot_measure_is_refused() -> None:
    scores = np.random.default_rng(0).standard_normal(9_900)  # 100 identities, one draw
    assert calibrate(scores, 1e-2).impostors == 9_900  # 99 false accepts: measurable
    with pytest.raises(UnmeasurableRateError, match=r"0.001 needs >= 10,000 impostor scores .* only 9,900"):
        calibrate(scores, 1e-3)  # 9.9 false accepts < the default 10
    assert calibrate(scores, 1e-3, min_false_accepts=1).threshold == np.sort(scores)[-10]  # 9.9 -> the 10th
    with pytest.raises(CamproError, match=r"in \(0, 1\)"):
        calibrate(scores, 0.0)
    with pytest.raises(UnmeasurableRateError, match="finite"):
        calibrate(np.full(1000, -np.inf), 0.1)


# ---------------------------------------------------------------------------- open-set
def test_open_set_with_every_probe_non_mated_gives_dir_zero_and_fpir_as_set() -> None:
    emb = clustered(200, 3)
    gal, probe = draws(emb, 1)
    watch = watch_lists(200, 1, seed=0)[0]
    off = np.setdiff1d(np.arange(200), watch)
    top, slot = open_set_scores(score_matrix(gal, probe)[0][off], watch)
    true_slot = np.full(off.size, -1)
    for fpir in (1e-1, 1e-2):
        point = calibrate(top, fpir, min_false_accepts=1)
        dir_, observed = open_set_rates(top, slot, true_slot, point)
        assert dir_ == 0.0 and observed == pytest.approx(fpir)


def test_open_set_on_separable_embeddings_detects_and_identifies_every_mated_search() -> None:
    emb = clustered(400, 3)
    gal, probe = draws(emb, 1)
    watch = watch_lists(400, 1, seed=0)[0]
    scores = score_matrix(gal, probe)[0]
    top, slot = open_set_scores(scores, watch)
    mated = np.isin(np.arange(400), watch)
    true_slot = np.where(mated, np.arange(400), -1)
    for fpir in (1e-1, 1e-2):
        point = calibrate(top[~mated], fpir, min_false_accepts=1)
        dir_, observed = open_set_rates(top, slot, true_slot, point)
        assert dir_ == 1.0 and observed == pytest.approx(fpir)
    # an unseparable protector: every probe is one embedding -> nothing above the raw threshold
    flat = np.full_like(scores, -1.0)
    t2, s2 = open_set_scores(flat, watch)
    assert open_set_rates(t2, s2, true_slot, calibrate(top[~mated], 1e-1, min_false_accepts=1)) == (0.0, 0.0)


def test_watch_lists_are_a_seeded_half() -> None:
    a, b = watch_lists(101, 4, seed=7), watch_lists(101, 4, seed=7)
    assert a.shape == (4, 50) and (a == b).all()
    assert all(len(set(row)) == 50 for row in a) and not (a[0] == a[1]).all()
    assert (watch_lists(101, 3, seed=8)[:2] == a[1:3]).all()  # repeat r of seed s = repeat r-1 of seed s+1
    with pytest.raises(CamproError, match="watch-list"):
        watch_lists(1, 1, seed=0)


# ---------------------------------------------------------------------------- enrolment and leakage
def test_one_image_enrolment_is_the_image_itself_and_k_images_average() -> None:
    emb = clustered(5, 3)
    one, valid = enrolment_templates(emb[:, :1], np.ones((5, 1), bool))
    assert np.allclose(one, emb[:, 0], atol=1e-6) and valid.all()
    three, _ = enrolment_templates(emb, np.ones((5, 3), bool))
    mean = emb.mean(1) / np.linalg.norm(emb.mean(1), axis=-1, keepdims=True)
    assert np.allclose(three, mean, atol=1e-6)
    det = np.ones((5, 3), bool)
    det[0] = [False, True, False]
    det[1] = False
    partial, valid = enrolment_templates(emb, det)
    assert np.allclose(partial[0], emb[0, 1], atol=1e-6) and not valid[1] and valid[0]


def test_leakage_is_the_cosine_to_the_raw_embedding() -> None:
    emb = clustered(4, 2)[:, 0]
    assert np.allclose(leakage(emb, emb, np.ones(4, bool)), 1.0)
    assert np.allclose(leakage(-emb, emb, np.ones(4, bool)), -1.0)
    assert np.isnan(leakage(emb, emb, np.array([True, False, True, True]))[1])

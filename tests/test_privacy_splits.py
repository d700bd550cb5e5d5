"""Sampling invariants of the closed-set identification splits (paper Sec. VI-A)."""

from __future__ import annotations

import numpy as np
import pytest

from campro_bench.errors import EmptyDatasetError
from campro_bench.privacy import sample_splits, select_identities


@pytest.fixture
def labels() -> np.ndarray:
    # identities 0..5 with 1, 2, 3, 5, 1, 8 images, interleaved (dataset order need not be grouped)
    counts = [1, 2, 3, 5, 1, 8]
    values = np.repeat(np.arange(6), counts)
    return np.random.default_rng(123).permutation(values)


def test_one_gallery_and_a_different_probe_per_identity(labels: np.ndarray) -> None:
    splits = sample_splits(labels, repeats=25, seed=7)
    assert splits.identities.tolist() == [1, 2, 3, 5]  # identities with a single image are dropped
    assert splits.gallery.shape == splits.probe.shape == (25, 4)
    assert np.all(splits.gallery != splits.probe)
    for r in range(25):
        assert labels[splits.gallery[r]].tolist() == splits.identities.tolist()
        assert labels[splits.probe[r]].tolist() == splits.identities.tolist()
    assert splits.seeds == tuple(range(7, 32))
    assert splits.chance == pytest.approx(0.25)


def test_deterministic_by_seed_and_different_seeds_differ(labels: np.ndarray) -> None:
    a = sample_splits(labels, repeats=5, seed=3)
    b = sample_splits(labels, repeats=5, seed=3)
    c = sample_splits(labels, repeats=5, seed=4)
    np.testing.assert_array_equal(a.gallery, b.gallery)
    np.testing.assert_array_equal(a.probe, b.probe)
    assert not np.array_equal(a.gallery, c.gallery)
    # seed 4 is repeat 1 of seed 3: the per-repeat seeds make repeats reusable across base seeds
    np.testing.assert_array_equal(a.gallery[1:], c.gallery[:-1])
    assert len({tuple(row) for row in a.gallery}) > 1  # repeats differ from each other


def test_draws_cover_every_ordered_pair_uniformly() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    splits = sample_splits(labels, repeats=3000, seed=0)
    pairs = list(zip(splits.gallery[:, 0].tolist(), splits.probe[:, 0].tolist()))
    counts = {p: pairs.count(p) for p in set(pairs)}
    assert set(counts) == {(i, j) for i in range(3) for j in range(3) if i != j}
    assert all(abs(n / 3000 - 1 / 6) < 0.03 for n in counts.values())


def test_select_identities_first_n_by_name() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    names = ["carol", "alice", "bob", "dave"]
    assert select_identities(labels, names, max_identities=2).tolist() == [1, 2]  # alice, bob
    assert select_identities(labels, names).tolist() == [1, 2, 0]  # dave has one image
    splits = sample_splits(labels, identities=select_identities(labels, names, max_identities=2))
    assert set(labels[splits.gallery.ravel()].tolist()) == {1, 2}


def test_too_few_identities_is_a_clear_error() -> None:
    with pytest.raises(EmptyDatasetError, match="at least 2 identities with >= 2 images; found 1"):
        sample_splits(np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="min_images >= 2"):
        select_identities(np.array([0, 0, 1, 1]), min_images=1)


def test_k_image_enrolment_draws_k_distinct_gallery_images_and_k1_is_todays_gallery(labels: np.ndarray) -> None:
    one = sample_splits(labels, repeats=6, seed=2, min_images=4)
    also_one = sample_splits(labels, repeats=6, seed=2, min_images=4, gallery_images=1)
    np.testing.assert_array_equal(one.gallery, also_one.gallery)
    np.testing.assert_array_equal(one.probe, also_one.probe)
    assert one.gallery_images == 1 and one.gallery.ndim == 2
    three = sample_splits(labels, repeats=6, seed=2, min_images=4, gallery_images=3)
    assert three.gallery.shape == (6, 2, 3) and three.gallery_images == 3
    np.testing.assert_array_equal(three.gallery[:, :, 0], one.gallery)  # the first enrolled image is k=1's
    for r in range(6):
        for c in range(2):
            images = [*three.gallery[r, c], three.probe[r, c]]
            assert len(set(images)) == 4 and set(labels[images]) == {three.identities[c]}


def test_k_larger_than_an_identitys_images_is_a_clear_error(labels: np.ndarray) -> None:
    with pytest.raises(EmptyDatasetError, match="at least 4 images .* smallest has 2"):
        sample_splits(labels, repeats=2, seed=0, gallery_images=3)

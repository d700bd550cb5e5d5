"""Closed-set identification splits (paper Sec. VI-A): one gallery and one probe image per identity.

Only labels are needed to draw a split, so a split is the same for every model and protector of a
dataset: differences between rows of Table I come from the models and protectors, never from
different samples. Repeat ``r`` draws from ``numpy.random.default_rng(seed + r)``; the seeds are
kept in the returned :class:`IdentificationSplits` and end up in the run manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import EmptyDatasetError


@dataclass(frozen=True)
class IdentificationSplits:
    """``repeats`` independent gallery/probe draws over the same identities.

    Attributes:
        identities: label values of the kept identities ``[C]``; column ``c`` of ``gallery`` and
            ``probe`` belongs to identity ``identities[c]``, and class ``c`` is its gallery slot.
        gallery: dataset indices ``[R, C]`` of the enrolled image of each identity per repeat, or
            ``[R, C, K]`` with a k-image enrolment (``gallery_images = K > 1``).
        probe: dataset indices ``[R, C]`` of the query image, always a different image.
        seeds: the generator seed of each repeat (``base seed + repeat index``).
    """

    identities: np.ndarray
    gallery: np.ndarray
    probe: np.ndarray
    seeds: tuple[int, ...]

    @property
    def repeats(self) -> int:
        return int(self.gallery.shape[0])

    @property
    def n_identities(self) -> int:
        return int(self.identities.shape[0])

    @property
    def gallery_images(self) -> int:
        """Images enrolled per identity (1: the paper's protocol)."""
        return 1 if self.gallery.ndim == 2 else int(self.gallery.shape[2])

    @property
    def chance(self) -> float:
        """Top-1 accuracy of a uniform random guess over the gallery."""
        return 1.0 / self.n_identities


def select_identities(
    labels: np.ndarray,
    identity_names: Sequence[str] | None = None,
    *,
    min_images: int = 2,
    max_identities: int | None = None,
) -> np.ndarray:
    """Label values with at least ``min_images`` images, optionally the first ``max_identities``.

    "First" is by identity name in sorted order when names are given (by label value otherwise),
    so a subset such as ``max_identities = 100`` is the same on every machine.
    """
    if min_images < 2:
        raise ValueError("closed-set identification needs min_images >= 2 (a gallery and a probe)")
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    kept = values[counts >= min_images]
    if identity_names is not None:
        kept = np.array(sorted(kept.tolist(), key=lambda v: (identity_names[int(v)], int(v))), dtype=labels.dtype)
    if max_identities is not None and max_identities > 0:
        kept = kept[:max_identities]
    if kept.size < 2:
        raise EmptyDatasetError(
            f"closed-set identification needs at least 2 identities with >= {min_images} images; "
            f"found {kept.size}"
        )
    return kept


def sample_splits(
    labels: np.ndarray,
    *,
    repeats: int = 10,
    seed: int = 0,
    identities: np.ndarray | None = None,
    min_images: int = 2,
    gallery_images: int = 1,
) -> IdentificationSplits:
    """Draw ``repeats`` splits: per identity, a uniformly random ordered pair of distinct images.

    Vectorised: each repeat gives every image of a kept identity a uniform random key; sorting by
    (identity, key) puts a uniformly random permutation of each identity's images first, and its
    first two images become gallery and probe. With ``gallery_images = K > 1`` the first K images
    are the gallery (``[R, C, K]``) and image K + 1 the probe; K = 1 is exactly the draw above.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if gallery_images < 1:
        raise ValueError("gallery_images must be >= 1")
    labels = np.asarray(labels)
    if identities is None:
        identities = select_identities(labels, min_images=min_images)
    identities = np.asarray(identities)
    slot = {int(v): c for c, v in enumerate(identities.tolist())}
    member = np.isin(labels, identities)
    index = np.flatnonzero(member)
    column = np.array([slot[int(v)] for v in labels[index]], dtype=np.int64)
    counts = np.bincount(column, minlength=identities.size)
    need = gallery_images + 1
    if counts.min(initial=need) < need:
        raise EmptyDatasetError(f"every selected identity needs at least {need} images (a gallery of {gallery_images} "
                                f"and a different probe); the smallest has {int(counts.min())}")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    seeds = tuple(int(seed) + r for r in range(repeats))
    gallery = np.empty((repeats, identities.size, gallery_images), dtype=np.int64)
    probe = np.empty((repeats, identities.size), dtype=np.int64)
    for r, s in enumerate(seeds):
        keys = np.random.default_rng(s).random(index.size)
        order = np.lexsort((keys, column))
        for k in range(gallery_images):
            gallery[r, :, k] = index[order[starts + k]]
        probe[r] = index[order[starts + gallery_images]]
    if gallery_images == 1:
        gallery = gallery[:, :, 0].copy()
    return IdentificationSplits(identities=identities, gallery=gallery, probe=probe, seeds=seeds)

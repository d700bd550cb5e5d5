"""Nearest-neighbour and softmax linear classifiers, and the identification protocol on arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.privacy import (
    FeatureSet,
    LinearSchedule,
    build_classifier,
    identify,
    identify_many,
    sample_splits,
    summarize,
    train_linear,
)
from campro_bench.privacy.cache import OutcomeCache
from campro_bench.privacy.classifiers import l2_normalize

IDS, PER_ID, DIM = 40, 3, 32


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny tensors: a thread pool's wake-ups would cost more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clustered(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """IDS identities x PER_ID images around random unit centres; returns (labels, embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(IDS, DIM))
    labels = np.repeat(np.arange(IDS), PER_ID)
    x = centres[labels] + noise * rng.normal(size=(labels.size, DIM))
    return labels, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def features(x: np.ndarray, detected: np.ndarray | None = None) -> FeatureSet:
    det = np.ones(len(x), bool) if detected is None else detected
    return FeatureSet(np.where(det[:, None], x, 0).astype(np.float32), det)


@pytest.mark.parametrize("name", ["nearest", "linear"])
def test_separable_embeddings_are_identified_perfectly(name: str) -> None:
    labels, x = clustered(noise=0.05)
    splits = sample_splits(labels, repeats=4, seed=0)
    result = identify(build_classifier(name), features(x), features(x), splits)
    assert result.correct.shape == (4, IDS)
    np.testing.assert_array_equal(result.accuracies, 1.0)


@pytest.mark.parametrize("name", ["nearest", "linear"])
def test_random_embeddings_give_about_chance(name: str) -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(200), 2)
    x = rng.normal(size=(400, DIM)).astype(np.float32)
    splits = sample_splits(labels, repeats=10, seed=0)
    result = identify(build_classifier(name), features(x), features(x), splits)
    assert result.chance == pytest.approx(1 / 200)
    assert result.accuracies.mean() < 0.03  # chance 0.005; binomial sd over 2000 probes ~0.0016


def test_undetected_probes_and_missing_templates_count_as_wrong() -> None:
    labels, x = clustered(noise=0.05)
    splits = sample_splits(labels, repeats=2, seed=0)
    no_probe = np.ones(len(labels), bool)
    no_probe[splits.probe[0, :5]] = False  # first 5 identities' probes in repeat 0
    result = identify(build_classifier("nearest"), features(x), features(x, no_probe), splits)
    assert result.correct[0].sum() == IDS - 5 and not result.correct[0, :5].any()
    assert result.probe_detected[0].sum() == IDS - 5
    no_gallery = np.ones(len(labels), bool)
    no_gallery[splits.gallery[1, :3]] = False
    for name in ("nearest", "linear"):
        result = identify(build_classifier(name), features(x, no_gallery), features(x), splits)
        assert not result.correct[1, :3].any()  # those identities have no template
        assert result.correct[1, 3:].all()  # the rest are unaffected (scores of missing slots are -inf)
        assert result.chance == pytest.approx(1 / IDS)  # they stay in the gallery


def test_linear_fit_never_sees_probes() -> None:
    labels, x = clustered(noise=0.3)
    gallery_x, probe_x = features(x), features(-x)  # probes visibly different from any gallery row
    splits = sample_splits(labels, repeats=3, seed=0)
    classifier = build_classifier("linear")
    seen: list[torch.Tensor] = []
    fit = classifier.fit

    def spy(gallery: torch.Tensor, valid: torch.Tensor):  # type: ignore[no-untyped-def]
        seen.append(gallery.clone())
        return fit(gallery, valid)

    classifier.fit = spy  # type: ignore[method-assign]
    identify(classifier, gallery_x, probe_x, splits)
    assert len(seen) == 1
    expected = torch.from_numpy(gallery_x.embeddings[splits.gallery])
    torch.testing.assert_close(seen[0], expected)


def test_linear_schedule_is_fixed_and_deterministic() -> None:
    labels, x = clustered(noise=0.6)
    splits = sample_splits(labels, repeats=2, seed=0)
    g = torch.from_numpy(x[splits.gallery])
    valid = torch.ones(2, IDS, dtype=torch.bool)
    a = train_linear(g, valid, LinearSchedule())
    b = train_linear(g, valid, LinearSchedule())
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    assert LinearSchedule() == LinearSchedule(steps=100, lr=1.0, momentum=0.9, weight_decay=0.01)
    assert a.train_accuracy == [1.0, 1.0] and max(a.train_loss) < 0.5
    config = build_classifier("linear").config()
    assert config["init"] == "zeros" and config["steps"] == 100
    with pytest.raises(CamproError, match="unknown linear-classifier key .early_stopping.; known keys: lr, momentum"):
        build_classifier("linear", {"early_stopping": True})
    with pytest.raises(UnknownNameError, match="known identification classifiers: linear, nearest"):
        build_classifier("svm")


def test_linear_gradient_matches_autograd() -> None:
    """One hand-written step equals a torch.autograd step of the documented objective."""
    torch.manual_seed(0)
    x = l2_normalize(torch.randn(2, 7, 5))
    valid = torch.tensor([[True] * 7, [True, True, False, True, True, True, True]])
    schedule = LinearSchedule(steps=1, lr=0.5, momentum=0.0, weight_decay=0.1)
    fit = train_linear(x, valid, schedule)
    w = torch.zeros(2, 7, 5, requires_grad=True)
    b = torch.zeros(2, 7, requires_grad=True)
    logits = (x @ w.transpose(1, 2) + b[:, None, :]).masked_fill(~valid[:, None, :], float("-inf"))
    ce = torch.logsumexp(logits, -1) - logits.diagonal(dim1=1, dim2=2)
    loss = torch.where(valid, ce, torch.zeros_like(ce)).sum() + 0.05 * (w**2).sum()
    loss.backward()
    torch.testing.assert_close(fit.weight, -0.5 * w.grad)
    torch.testing.assert_close(fit.bias, -0.5 * b.grad)


def test_reenrolment_uses_protected_gallery_and_probes() -> None:
    labels, x = clustered(noise=0.05)
    rng = np.random.default_rng(5)
    rotation = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0].astype(np.float32)
    protected = features(x @ rotation)  # identity-preserving but unlike the raw embeddings
    splits = sample_splits(labels, repeats=3, seed=0)
    nearest = build_classifier("nearest")
    raw_gallery = identify(nearest, features(x), protected, splits)
    reenrolled = identify(nearest, protected, protected, splits)
    assert raw_gallery.accuracies.mean() < 0.2
    np.testing.assert_array_equal(reenrolled.accuracies, 1.0)


def test_many_probe_sets_share_one_fit_and_the_cache_returns_identical_outcomes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    labels, x = clustered(noise=0.8)
    rng = np.random.default_rng(2)
    probes = {"same": features(x), "noisy": features(x + 0.5 * rng.normal(size=x.shape).astype(np.float32))}
    splits = sample_splits(labels, repeats=3, seed=0)
    classifier = build_classifier("linear", {"steps": 20})
    calls = []
    fit = classifier.fit
    classifier.fit = lambda g, v: calls.append(1) or fit(g, v)  # type: ignore[method-assign]
    cache = OutcomeCache(tmp_path)
    first = identify_many(classifier, features(x), probes, splits, cache=cache)
    assert len(calls) == 1 and not any(r.cached for r in first.values())
    second = identify_many(classifier, features(x), probes, splits, cache=cache)
    assert len(calls) == 1 and all(r.cached for r in second.values())
    for name in probes:
        np.testing.assert_array_equal(first[name].correct, second[name].correct)
    other = identify_many(build_classifier("linear", {"steps": 21}), features(x), probes, splits, cache=cache)
    assert not any(r.cached for r in other.values())  # the schedule is part of the key
    chunked = identify_many(classifier, features(x), probes, splits, memory_budget=1)  # one repeat per chunk
    for name in probes:
        np.testing.assert_array_equal(chunked[name].correct, first[name].correct)


def test_summary_t_interval() -> None:
    s = summarize([0.5, 0.6, 0.7], confidence=0.95)
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t_{0.975, 2}
    assert (s.ci_low, s.ci_high) == pytest.approx((0.6 - half, 0.6 + half))
    assert summarize([1.0, 0.98, 1.0]).ci_high == 1.0  # clipped: an accuracy cannot exceed 1
    single = summarize([0.4])
    assert single.mean == 0.4 and np.isnan(single.std) and np.isnan(single.ci_low)


def test_default_schedule_is_near_the_optimum_of_its_objective() -> None:
    """100 steps land close to what 2,000 steps of the same objective converge to (anisotropic data
    with a shared mean direction, like face embeddings), so the schedule is not a stopping rule."""
    gen = torch.Generator().manual_seed(0)
    common, centres = torch.randn(32, generator=gen), torch.randn(120, 32, generator=gen)
    g, p = (l2_normalize(1.2 * common + centres + 1.3 * torch.randn(2, 120, 32, generator=gen)) for _ in range(2))
    valid = torch.ones(2, 120, dtype=torch.bool)
    fit = train_linear(g, valid, LinearSchedule())
    ref = train_linear(g, valid, LinearSchedule(steps=2000))
    assert ((fit.weight - ref.weight).norm() / ref.weight.norm()).item() < 0.01  # measured 0.0016
    agree = (fit.scores(p).argmax(-1) == ref.scores(p).argmax(-1)).float().mean().item()
    assert agree >= 0.99  # measured 1.0


def _k_gallery(x: np.ndarray, splits) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    return torch.from_numpy(x[splits.gallery]), torch.ones(splits.gallery.shape, dtype=torch.bool)


def test_one_image_enrolment_through_the_k_image_path_equals_todays_fit() -> None:
    labels, x = clustered(noise=0.8)
    splits = sample_splits(labels, repeats=3, seed=0)
    g, v = _k_gallery(x, splits)
    probes = torch.from_numpy(x[splits.probe])
    for name in ("nearest", "linear"):
        today = build_classifier(name).fit(g, v).scores(probes)
        as_k = build_classifier(name).fit(g[:, :, None], v[:, :, None]).scores(probes)
        torch.testing.assert_close(as_k, today, rtol=1e-5, atol=1e-5)


def test_k_image_enrolment_nearest_uses_the_mean_and_linear_trains_on_every_image() -> None:
    labels, x = clustered(noise=1.2, seed=4)
    splits = sample_splits(labels, repeats=3, seed=0, gallery_images=2)
    g, v = _k_gallery(x, splits)
    v[0, 0, 0] = False  # identity 0's first image of repeat 0 has no face
    fit = build_classifier("nearest").fit(g, v)
    expected = l2_normalize(l2_normalize(g[0, 0, 1]))
    torch.testing.assert_close(fit.templates[0, 0], expected)  # type: ignore[attr-defined]
    lin = build_classifier("linear").fit(g, v)
    assert lin.valid.shape == (3, IDS) and bool(lin.valid.all())  # type: ignore[attr-defined]
    assert min(lin.train_accuracy) > 0.9  # type: ignore[attr-defined]
    # four enrolled images beat one on noisy clusters (more evidence per identity)
    rng = np.random.default_rng(0)
    many = np.repeat(np.arange(IDS), 6)
    y = rng.normal(size=(IDS, DIM))[many] + 1.5 * rng.normal(size=(many.size, DIM))
    feats = features((y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32))
    for name in ("nearest", "linear"):
        acc = {k: identify(build_classifier(name), feats, feats,
                           sample_splits(many, repeats=10, seed=0, gallery_images=k)).accuracies.mean()
               for k in (1, 4)}
        assert acc[4] > acc[1] + 0.15, (name, acc)

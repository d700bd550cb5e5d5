"""Nearest-neighbour and softmax linear classifiers, and the identification protocol on arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.privacy import (
    FeatureSet,
    LinearConfig,
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


def _objective(x: torch.Tensor, valid: torch.Tensor, w: torch.Tensor, b: torch.Tensor, decay: float) -> torch.Tensor:
    """The documented objective of one repeat, by autograd: summed CE over samples with a face + decay/2 |W|^2."""
    logits = (x @ w.T + b).masked_fill(~valid, float("-inf"))
    ce = torch.logsumexp(logits, -1) - logits.diagonal()
    return torch.where(valid, ce, torch.zeros_like(ce)).sum() + 0.5 * decay * (w**2).sum()


def _noisy_gallery(repeats: int = 2, ids: int = IDS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Anisotropic clusters with a shared mean direction (like face embeddings); gallery and probes."""
    gen = torch.Generator().manual_seed(seed)
    common, centres = torch.randn(DIM, generator=gen), torch.randn(ids, DIM, generator=gen)
    g, p = (l2_normalize(1.2 * common + centres + 1.3 * torch.randn(repeats, ids, DIM, generator=gen)) for _ in range(2))
    return g, p


def test_linear_fit_reaches_its_gradient_tolerance_and_records_it() -> None:
    g, _ = _noisy_gallery()
    valid = torch.ones(2, IDS, dtype=torch.bool)
    valid[1, 3] = False  # identity 3 of repeat 1 has no face
    config = LinearConfig(tol=1e-3)
    fit = train_linear(g, valid, config)
    assert fit.converged == [True, True] and all(0 < i < config.max_iter for i in fit.iterations)
    for r in range(2):  # the autograd gradient of the documented objective at the returned weights
        w, b = fit.weight[r].clone().requires_grad_(True), fit.bias[r].clone().requires_grad_(True)
        _objective(l2_normalize(g[r]), valid[r], w, b, config.weight_decay).backward()
        assert max(w.grad.abs().max().item(), b.grad.abs().max().item()) <= config.tol  # type: ignore[union-attr]
        assert fit.grad_max[r] <= config.tol
    assert fit.weight[1, 3].abs().max() == 0  # no template: only the penalty acts, the weights stay 0
    capped = train_linear(g, valid, LinearConfig(tol=1e-6, max_iter=2))
    assert capped.iterations == [2, 2] and capped.converged == [False, False]  # the cap is recorded


def test_k_image_fit_converges_on_the_weighted_objective() -> None:
    """K images share one unit of loss weight; images without a face do not train; an identity with
    no face at all has no template and is never predicted."""
    g, p = _noisy_gallery(repeats=1, ids=2 * IDS)
    g = g.reshape(1, IDS, 2, DIM)
    valid = torch.ones(1, IDS, 2, dtype=torch.bool)
    valid[0, 0, 1] = False  # identity 0: one of its two images has no face
    valid[0, 5] = False  # identity 5: no face at all
    config = LinearConfig()
    fit = train_linear(g, valid, config)
    assert fit.converged == [True]
    x = l2_normalize(g[0].reshape(2 * IDS, DIM))
    s = (valid[0].reshape(-1).double() / 2).float()
    labels = torch.arange(IDS).repeat_interleave(2)
    w, b = fit.weight[0].clone().requires_grad_(True), fit.bias[0].clone().requires_grad_(True)
    has = valid[0].any(-1)
    logits = (x @ w.T + b).masked_fill(~has, float("-inf"))
    ce = torch.logsumexp(logits, -1) - logits[torch.arange(2 * IDS), labels]
    (torch.where(s > 0, s * ce, torch.zeros_like(ce)).sum() + 0.5 * config.weight_decay * (w**2).sum()).backward()
    assert max(w.grad.abs().max().item(), b.grad.abs().max().item()) <= config.tol  # type: ignore[union-attr]
    assert not bool(fit.valid[0, 5]) and (fit.scores(p[:, :IDS]).argmax(-1) != 5).all()
    assert torch.isinf(fit.scores(p[:, :IDS])[0, :, 5]).all()


def test_linear_solution_does_not_depend_on_the_warm_start() -> None:
    g, p = _noisy_gallery()
    valid = torch.ones(2, IDS, dtype=torch.bool)
    means = train_linear(g.double(), valid, LinearConfig(tol=1e-7, max_iter=2000))  # float64: a tight tolerance
    zeros = train_linear(g.double(), valid, LinearConfig(tol=1e-7, max_iter=2000, warm_start="zeros"))
    assert means.converged == zeros.converged == [True, True]
    assert means.iterations != zeros.iterations  # two different paths ...
    assert (means.weight - zeros.weight).abs().max().item() < 1e-4  # ... to one minimiser (weights up to ~4.5)
    assert (means.bias - zeros.bias).abs().max().item() < 1e-4
    agree = (means.scores(p).argmax(-1) == zeros.scores(p).argmax(-1)).all()
    assert agree
    fast = train_linear(g, valid, LinearConfig())  # float32 at the default tolerance: the same predictions
    assert (fast.scores(p.float()).argmax(-1) == means.scores(p).argmax(-1)).float().mean().item() >= 0.99


def test_linear_config_is_typed_recorded_and_keyed() -> None:
    assert LinearConfig() == LinearConfig(solver="lbfgs", weight_decay=0.01, tol=1e-3, max_iter=500,
                                          warm_start="class-means")
    config = build_classifier("linear").config()
    assert (config["solver"], config["tol"], config["max_iter"], config["warm_start"]) == (
        "lbfgs", 1e-3, 500, "class-means")
    old = build_classifier("linear", {"solver": "sgd-100"}).config()
    assert (old["steps"], old["lr"], old["momentum"], old["init"]) == (100, 1.0, 0.9, "zeros")
    with pytest.raises(CamproError, match="unknown linear-classifier key .steps.; known keys: max_iter, solver, tol"):
        build_classifier("linear", {"steps": 100})
    with pytest.raises(CamproError, match="linear-classifier key 'solver'"):
        build_classifier("linear", {"solver": "adam"})
    with pytest.raises(CamproError, match="linear-classifier key 'tol'"):
        build_classifier("linear", {"tol": 0.0})
    with pytest.raises(CamproError, match="linear-classifier key 'weight_decay'"):
        LinearConfig(weight_decay=0.0)  # no minimum without a penalty on separable data
    with pytest.raises(UnknownNameError, match="known identification classifiers: linear, nearest"):
        build_classifier("svm")


def test_linear_fit_is_deterministic_and_separable_data_is_fitted_exactly() -> None:
    labels, x = clustered(noise=0.6)
    splits = sample_splits(labels, repeats=2, seed=0)
    g = torch.from_numpy(x[splits.gallery])
    valid = torch.ones(2, IDS, dtype=torch.bool)
    for solver in ("lbfgs", "sgd-100"):
        a = train_linear(g, valid, LinearConfig(solver=solver))
        b = train_linear(g, valid, LinearConfig(solver=solver))
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
        assert a.train_accuracy == [1.0, 1.0]  # distinct unit vectors are always linearly separable
    assert max(a.train_loss) < 0.5


def test_sgd_100_step_matches_autograd() -> None:
    """The former schedule's hand-written gradient equals autograd's on the documented objective."""
    torch.manual_seed(0)
    x = l2_normalize(torch.randn(2, 7, 5))
    valid = torch.tensor([[True] * 7, [True, True, False, True, True, True, True]])
    from campro_bench.privacy import classifiers

    steps = dict(classifiers.SGD_100)
    classifiers.SGD_100.update(steps=1, lr=0.5, momentum=0.0)
    try:
        fit = train_linear(x, valid, LinearConfig(solver="sgd-100", weight_decay=0.1))
    finally:
        classifiers.SGD_100.update(steps)
    for r in range(2):
        w = torch.zeros(7, 5, requires_grad=True)
        b = torch.zeros(7, requires_grad=True)
        _objective(x[r], valid[r], w, b, 0.1).backward()
        torch.testing.assert_close(fit.weight[r], -0.5 * w.grad)
        torch.testing.assert_close(fit.bias[r], -0.5 * b.grad)


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
    classifier = build_classifier("linear", {"max_iter": 20})
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
    for options in ({"max_iter": 21}, {"solver": "sgd-100"}, {"tol": 1e-2}):
        other = identify_many(build_classifier("linear", options), features(x), probes, splits, cache=cache)
        assert not any(r.cached for r in other.values()), options  # the solver and its settings key the cache
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


def test_former_schedule_is_near_the_converged_solution() -> None:
    """On clustered data with a shared mean direction the former 100 steps land near the minimum
    that the solver reaches (so the re-pinned tables move little), but they are not at it."""
    g, p = _noisy_gallery(ids=120)
    valid = torch.ones(2, 120, dtype=torch.bool)
    old = train_linear(g, valid, LinearConfig(solver="sgd-100"))
    new = train_linear(g, valid, LinearConfig())
    assert new.converged == [True, True] and max(old.grad_max) > LinearConfig().tol
    assert old.converged == [] and old.iterations == [100, 100]  # a schedule: convergence does not apply
    assert ((old.weight - new.weight).norm() / new.weight.norm()).item() < 0.01
    assert (old.scores(p).argmax(-1) == new.scores(p).argmax(-1)).float().mean().item() >= 0.99


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

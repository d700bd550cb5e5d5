"""Face-identification classifiers: fitted on the gallery only, then scoring probes.

A classifier is registered in :data:`CLASSIFIERS` by a factory that takes its options (a dict from
the protocol, e.g. the ``[linear]`` table) and returns an object with
``fit(gallery, valid) -> FittedClassifier``. Fitting receives the gallery features and nothing else;
probes only ever meet :meth:`FittedClassifier.scores`. This separation (pycocotools-style: ground
truth, model, evaluation) is what makes "no model selection on the test set" checkable.

Shapes are batched over repeats: ``gallery`` is ``[R, C, D]`` (repeat, identity slot, feature),
``valid`` is ``[R, C]`` (False where the gallery image had no face: that identity has no template and
can never be predicted), probes are ``[R, P, D]``, scores ``[R, P, C]``. A k-image enrolment passes
``gallery [R, C, K, D]`` and ``valid [R, C, K]``: ``nearest`` enrols the identity's mean unit
embedding (over its images with a face), ``linear`` trains on all K images, each identity's images
sharing one unit of loss weight; an identity without any face has no template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from ..config import option, parse_config, validate_config
from ..registries import IDENTIFICATION_CLASSIFIERS


class FittedClassifier(Protocol):
    def scores(self, probes: torch.Tensor) -> torch.Tensor:
        """``[R, P, C]`` scores; classes without a template score ``-inf``."""
        ...


class IdentificationClassifier(Protocol):
    name: str

    def fit(self, gallery: torch.Tensor, valid: torch.Tensor) -> FittedClassifier: ...

    def config(self) -> dict[str, Any]:
        """Everything that determines the fitted classifier (recorded; part of cache keys)."""
        ...


CLASSIFIERS = IDENTIFICATION_CLASSIFIERS


def build_classifier(name: str, options: dict[str, Any] | None = None) -> IdentificationClassifier:
    """Build a registered classifier from its name and its options table."""
    return CLASSIFIERS.build({"name": name, **(options or {})})


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit rows; all-zero rows (no face) stay zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _mask_missing(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(~valid[:, None, :], float("-inf"))


# nearest neighbour -----------------------------------------------------------------------
@dataclass
class _FittedNearest:
    templates: torch.Tensor  # [R, C, D] unit rows
    valid: torch.Tensor

    def scores(self, probes: torch.Tensor) -> torch.Tensor:
        return _mask_missing(l2_normalize(probes) @ self.templates.transpose(1, 2), self.valid)


class NearestNeighbour:
    """Cosine similarity to each identity's single gallery template; top-1 is the most similar."""

    name = "nearest"

    def fit(self, gallery: torch.Tensor, valid: torch.Tensor) -> FittedClassifier:
        if gallery.dim() == 4:  # k images per identity: the unit mean of their unit embeddings
            valid = valid.bool()
            mean = (l2_normalize(gallery) * valid[..., None]).sum(dim=2)
            return _FittedNearest(l2_normalize(mean), valid.any(dim=-1))
        return _FittedNearest(l2_normalize(gallery), valid.bool())

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "similarity": "cosine"}


CLASSIFIERS.add("nearest", NearestNeighbour, origin=f"{__name__}:NearestNeighbour",
                description="cosine nearest neighbour to the gallery (paper: Nearest)")


# softmax linear classifier ----------------------------------------------------------------
SGD_100 = {"steps": 100, "lr": 1.0, "momentum": 0.9}
"""The former fixed schedule, kept as ``solver = "sgd-100"`` so that older tables can be reproduced."""


@dataclass(frozen=True)
class LinearConfig:
    """The linear classifier: L2-regularised softmax regression on the gallery features only.

    The fitted ``(W, b)`` minimise, per repeat, ``F(W, b) = sum_i s_i CE(W x_i + b, y_i) +
    (weight_decay / 2) ||W||^2`` over the L2-normalised gallery features ``x_i`` (the bias is not
    penalised; ``s_i`` is 1, or 1/K for each of an identity's K images, and 0 for an image without a
    face). The objective is strictly convex in ``W``, so the minimiser is a property of the gallery,
    not of the solver; ``lbfgs`` finds it to the stated tolerance. ``sgd-100`` is the former fixed
    schedule (100 full-batch heavy-ball steps, lr 1.0, momentum 0.9, from zero) on the same
    objective, which stops before the minimum; it is kept for reproducing older tables.
    """

    solver: Literal["lbfgs", "sgd-100"] = option(
        "lbfgs", help="lbfgs: solved to the gradient tolerance; sgd-100: the former fixed 100-step schedule")
    weight_decay: float = option(1e-2, gt=0.0, le=10.0, help="L2 penalty (weight_decay/2)||W||^2 on the weights")
    tol: float = option(1e-3, gt=0.0, le=1.0,
                        help="lbfgs stops when no component of the gradient of F exceeds tol in absolute value")
    max_iter: int = option(500, ge=1, le=100_000, help="lbfgs iteration cap (a fit that reaches it is not converged)")
    warm_start: Literal["class-means", "zeros"] = option(
        "class-means", help="lbfgs start: W = alpha x unit class means (alpha optimal on that ray), b = 0; or zeros")

    def __post_init__(self) -> None:
        validate_config(self, "linear-classifier")


@dataclass
class LinearFit:
    """Trained weights plus what training reported about itself (train set = gallery only)."""

    weight: torch.Tensor  # [R, C, D]
    bias: torch.Tensor  # [R, C]
    valid: torch.Tensor
    train_loss: list[float]  # per repeat: mean cross-entropy over the gallery images with a face
    train_accuracy: list[float]
    converged: list[bool] = field(default_factory=list)  # per repeat: max |grad F| <= tol (lbfgs; sgd-100: empty)
    iterations: list[int] = field(default_factory=list)  # per repeat: L-BFGS iterations (sgd-100: steps)
    grad_max: list[float] = field(default_factory=list)  # per repeat: max |grad F| at the returned (W, b)

    def scores(self, probes: torch.Tensor) -> torch.Tensor:
        logits = l2_normalize(probes.to(self.weight.dtype)) @ self.weight.transpose(1, 2) + self.bias[:, None, :]
        return _mask_missing(logits, self.valid)


@dataclass
class _Problem:
    """One gallery as training samples: unit features, labels, sample weights, classes with a template."""

    x: torch.Tensor  # [R, N, D]
    labels: torch.Tensor | None  # [N]; None: sample c is class c
    weight: torch.Tensor  # [R, N]: 1 (or 1/K) per sample with a face, 0 without
    valid: torch.Tensor  # [R, C]

    @classmethod
    def of(cls, gallery: torch.Tensor, valid: torch.Tensor) -> _Problem:
        x = l2_normalize(gallery if gallery.dtype == torch.float64 else gallery.float())  # float64 stays
        samples = valid.bool()
        if x.dim() == 4:  # [R, C, K, D]: K images per identity, labels c..c (K times), weight 1/K each
            reps, classes, k, dim = x.shape
            labels = torch.arange(classes, device=x.device).repeat_interleave(k)
            weight = samples.reshape(reps, classes * k).to(x.dtype) / k
            return cls(x.reshape(reps, classes * k, dim), labels, weight, samples.any(dim=-1))
        return cls(x, None, samples.to(x.dtype), samples)

    def truth(self) -> torch.Tensor:
        return self.labels if self.labels is not None else torch.arange(self.x.shape[1], device=self.x.device)


def _loss_and_grad(x: torch.Tensor, truth: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, w: torch.Tensor,
                   b: torch.Tensor, decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``F`` (with the penalty) and its gradients in ``W`` and ``b``, for one repeat.

    Written out by hand (``dF/dlogits = s (softmax - onehot)``): no autograd graph, one ``[N, C]``
    buffer worked in place (this is the solver's inner loop). Needs at least one class with a template.
    """
    rows = torch.arange(x.shape[0], device=x.device)
    probs = torch.addmm(b, x, w.T)  # logits
    if not bool(valid.all()):
        probs.masked_fill_(~valid, float("-inf"))
    own = probs[rows, truth]
    top = probs.amax(dim=-1)
    probs.sub_(top[:, None]).exp_()
    total = probs.sum(dim=-1)
    loss = torch.dot(s, torch.where(s > 0, total.log() + top - own, torch.zeros_like(own)))
    loss = loss + 0.5 * decay * torch.dot(w.flatten(), w.flatten())
    probs.mul_((s / total)[:, None])
    probs[rows, truth] -= s  # samples without a face (s = 0) train nothing
    return loss, torch.addmm(w, probs.T, x, beta=decay), probs.sum(dim=0)


def _ray_scale(x: torch.Tensor, truth: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, means: torch.Tensor,
               decay: float, steps: int = 60) -> float:
    """The ``alpha >= 0`` minimising ``F(alpha M, 0)`` (M: unit class means): a convex function of one
    variable, solved by Newton's method kept inside a bracket (bisection when a step leaves it)."""
    sim = (x @ means.T).masked_fill_(~valid, float("-inf"))
    rows = torch.arange(x.shape[0], device=x.device)
    own, msq = torch.where(s > 0, sim[rows, truth], torch.zeros_like(s)), float(means.pow(2).sum())
    finite = torch.where(torch.isfinite(sim), sim, torch.zeros_like(sim))

    def derivatives(alpha: float) -> tuple[float, float]:
        p = torch.softmax(alpha * sim, dim=-1).nan_to_num_(0.0)
        mean = (p * finite).sum(-1)
        var = (p * finite * finite).sum(-1) - mean * mean
        return float((s * (mean - own)).sum()) + decay * alpha * msq, float((s * var).sum()) + decay * msq

    low, high, alpha = 0.0, 1.0, 1.0
    while derivatives(high)[0] < 0 and high < 1e6:
        low, high = high, 2 * high
    for _ in range(steps):
        grad, curv = derivatives(alpha)
        if abs(grad) <= 1e-6 * max(1.0, float(s.sum())):
            break
        low, high = (alpha, high) if grad < 0 else (low, alpha)
        step = alpha - grad / curv
        alpha = step if low < step < high else 0.5 * (low + high)
    return alpha


def _fit_lbfgs(x: torch.Tensor, truth: torch.Tensor, s: torch.Tensor, valid: torch.Tensor,
               config: LinearConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise ``F`` for one repeat with full-batch L-BFGS (strong-Wolfe line search); returns
    ``(W, b, iterations)``.

    The solve runs on centred features ``x - mu`` (``mu``: the weighted mean of the samples) with the
    bias ``b' = b + W mu``: the same logits, so the same objective and minimiser, but without the
    shared direction that face embeddings have (a mean cosine of 0.9 between identities is common),
    which would otherwise dominate every logit and leave float32 short of the tolerance. Since
    ``grad_W F = grad_W G + grad_b' G mu^T`` and ``|mu| <= 1``, stopping ``G`` at ``tol / 2`` puts
    ``F``'s gradient within ``tol``.
    """
    classes, dim = valid.shape[0], x.shape[1]
    w, b = x.new_zeros(classes, dim), x.new_zeros(classes)
    if not bool(valid.any()):
        return w, b, 0
    mu = (s[:, None] * x).sum(dim=0) / s.sum().clamp_min(1e-12)
    centred = x - mu
    if config.warm_start == "class-means":
        means = l2_normalize(torch.zeros_like(w).index_add_(0, truth, x * s[:, None]))
        means = (means - means[valid].mean(dim=0)) * valid[:, None]  # a shared component moves no softmax
        w.copy_(_ray_scale(centred, truth, s, valid, means, config.weight_decay) * means)
    iterations = _lbfgs(centred, truth, s, valid, w, b, config, config.max_iter)
    if (x.dtype != torch.float64 and iterations < config.max_iter
            and _grad_max(centred, truth, s, valid, w, b, config) > config.tol / 2):
        # float32 stalled above the tolerance (the line search sees no decrease): finish in float64
        w64, b64 = w.double(), b.double()
        iterations += _lbfgs(centred.double(), truth, s.double(), valid, w64, b64, config, config.max_iter - iterations)
        w, b = w64.to(x.dtype), b64.to(x.dtype)
    return w, b - w @ mu, iterations


def _grad_max(x: torch.Tensor, truth: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, w: torch.Tensor,
              b: torch.Tensor, config: LinearConfig) -> float:
    _, gw, gb = _loss_and_grad(x, truth, s, valid, w, b, config.weight_decay)
    return float(torch.maximum(gw.abs().max(), gb.abs().max()))


def _lbfgs(x: torch.Tensor, truth: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, w: torch.Tensor,
           b: torch.Tensor, config: LinearConfig, max_iter: int) -> int:
    """torch's L-BFGS on ``(w, b)`` in place until the largest gradient component is at most
    ``tol / 2``, ``max_iter`` iterations, or a step that changes nothing at this precision; returns
    the iterations it took."""
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=25 * max_iter,
                                  tolerance_grad=config.tol / 2, tolerance_change=torch.finfo(x.dtype).eps / 100,
                                  history_size=10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        loss, w.grad, b.grad = _loss_and_grad(x, truth, s, valid, w, b, config.weight_decay)
        return loss

    optimizer.step(closure)
    return int(optimizer.state[w].get("n_iter", 0))


def train_linear(gallery: torch.Tensor, valid: torch.Tensor, config: LinearConfig | None = None) -> LinearFit:
    """Fit one softmax linear classifier per repeat on its gallery (sample ``c`` has class ``c``;
    with a ``[R, C, K, D]`` gallery, the K samples of slot ``c`` have class ``c`` and weight 1/K)."""
    config = config or LinearConfig()
    problem = _Problem.of(gallery, valid)
    if config.solver == "sgd-100":
        weight, bias = _fit_sgd_100(gallery, valid, config.weight_decay)
        iterations = [SGD_100["steps"]] * weight.shape[0]
    else:
        truth = problem.truth()
        fits = [_fit_lbfgs(problem.x[r], truth, problem.weight[r], problem.valid[r], config)
                for r in range(problem.x.shape[0])]
        weight, bias = torch.stack([f[0] for f in fits]), torch.stack([f[1] for f in fits])
        iterations = [f[2] for f in fits]
    return _report(problem, weight, bias, iterations, config)


def _report(problem: _Problem, weight: torch.Tensor, bias: torch.Tensor, iterations: list[int],
            config: LinearConfig) -> LinearFit:
    """Train loss, accuracy and the gradient at the returned weights, per repeat."""
    truth = problem.truth()
    losses, accuracies, grads = [], [], []
    for r in range(weight.shape[0]):
        s = problem.weight[r]
        if not bool(problem.valid[r].any()):  # no identity has a template: nothing was trained
            losses.append(0.0), accuracies.append(0.0), grads.append(0.0)
            continue
        _, gw, gb = _loss_and_grad(problem.x[r], truth, s, problem.valid[r], weight[r], bias[r], config.weight_decay)
        logits = _mask_missing((problem.x[r] @ weight[r].T + bias[r])[None], problem.valid[r][None])[0]
        faces = s > 0
        n = max(int(faces.sum()), 1)
        own = logits[torch.arange(len(truth), device=logits.device), truth]
        ce = torch.where(faces, torch.logsumexp(logits, dim=-1) - own, torch.zeros_like(own))
        losses.append(float(ce.sum()) / n)
        accuracies.append(float(((logits.argmax(dim=-1) == truth) & faces).sum()) / n)
        grads.append(float(torch.maximum(gw.abs().max(), gb.abs().max())))
    converged = [g <= config.tol for g in grads] if config.solver == "lbfgs" else []  # a schedule: n/a
    return LinearFit(weight, bias, problem.valid, losses, accuracies, converged, iterations, grads)


def _fit_sgd_100(gallery: torch.Tensor, valid: torch.Tensor, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The former schedule, unchanged: 100 full-batch heavy-ball steps on ``F`` from zero, all
    repeats as one batched tensor (hand-written gradient, a few ``[R, N, C]`` buffers)."""
    x = l2_normalize(gallery.float())
    samples = valid.bool()
    labels: torch.Tensor | None = None  # None: sample c is class c (one image per identity)
    if x.dim() == 4:  # [R, C, K, D]: K images per identity, labels c..c (K times)
        reps, classes, k, dim = x.shape
        x, samples = x.reshape(reps, classes * k, dim), samples.reshape(reps, classes * k)
        labels = torch.arange(classes, device=x.device).repeat_interleave(k)
        valid = valid.bool().any(dim=-1)  # an identity with any face has a template
    valid = valid.bool()
    reps, n_samples, dim = x.shape
    classes = valid.shape[1]
    weight = x.new_zeros(reps, classes, dim)
    bias = x.new_zeros(reps, classes)
    v_weight = torch.zeros_like(weight)
    v_bias = torch.zeros_like(bias)
    grad_weight = torch.empty_like(weight)
    probs = x.new_empty(reps, n_samples, classes)  # logits, then softmax - onehot, in place
    complete = bool(samples.all())
    sample_mask = samples.to(x.dtype)[:, :, None]  # samples without a face do not train
    if labels is not None:  # each identity's K images share one unit of loss weight
        sample_mask = sample_mask / k
    rows = torch.arange(n_samples, device=x.device)
    for _ in range(SGD_100["steps"]):
        torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2), out=probs)
        if not complete:
            probs.masked_fill_(~valid[:, None, :], float("-inf"))
        probs.sub_(probs.amax(dim=-1, keepdim=True)).exp_()
        probs.div_(probs.sum(dim=-1, keepdim=True))
        if labels is None:
            probs.diagonal(dim1=1, dim2=2).sub_(1.0)
        else:
            probs[:, rows, labels] -= 1.0
        if not complete or labels is not None:
            probs.nan_to_num_(0.0).mul_(sample_mask)  # NaN rows: a repeat without any template
        torch.baddbmm(weight, probs.transpose(1, 2), x, beta=decay, out=grad_weight)
        v_weight.mul_(SGD_100["momentum"]).add_(grad_weight)
        v_bias.mul_(SGD_100["momentum"]).add_(probs.sum(dim=1))
        weight.sub_(SGD_100["lr"] * v_weight)
        bias.sub_(SGD_100["lr"] * v_bias)
    return weight, bias


class SoftmaxLinear:
    """Softmax linear classifier trained on the gallery features only (paper: Linear)."""

    name = "linear"

    def __init__(self, **options: Any) -> None:
        self.settings = parse_config(LinearConfig, options, "linear-classifier")

    def fit(self, gallery: torch.Tensor, valid: torch.Tensor) -> FittedClassifier:
        return train_linear(gallery, valid, self.settings)

    def config(self) -> dict[str, Any]:
        common = {"name": self.name, "features": "l2-normalised",
                  "objective": "summed softmax cross-entropy + weight_decay/2 ||W||^2 (bias not penalised)",
                  "solver": self.settings.solver, "weight_decay": self.settings.weight_decay}
        if self.settings.solver == "sgd-100":
            return {**common, "init": "zeros", "optimizer": "full-batch SGD, heavy-ball momentum", **SGD_100}
        return {**common, "optimizer": "full-batch L-BFGS, strong-Wolfe line search, history 10, on centred "
                "features (the same minimiser); float32, finished in float64 where float32 stalls",
                "tol": self.settings.tol, "stop": "max |grad F| <= tol", "max_iter": self.settings.max_iter,
                "warm_start": self.settings.warm_start}


CLASSIFIERS.add("linear", SoftmaxLinear, origin=f"{__name__}:SoftmaxLinear",
                description="softmax linear classifier trained on the gallery (paper: Linear)")

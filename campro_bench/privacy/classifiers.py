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

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from ..config import option, parse_config
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
@dataclass(frozen=True)
class LinearSchedule:
    """The fixed training schedule of the linear classifier (no early stopping, no probe access).

    Full-batch gradient descent with heavy-ball momentum on the *summed* softmax cross-entropy of
    the L2-normalised gallery features (one sample per identity), with L2 weight decay on the
    weights (not the bias). Weights and bias start at zero: the loss is convex, so no random
    initialisation (and no init seed) is needed and the result is a deterministic function of the
    gallery. Summing (not averaging) the loss keeps the step size independent of the gallery size.
    """

    steps: int = option(100, ge=1, le=1_000_000, help="full-batch gradient steps")
    lr: float = option(1.0, gt=0.0, le=1e3, help="learning rate")
    momentum: float = option(0.9, ge=0.0, lt=1.0, help="heavy-ball momentum")
    weight_decay: float = option(1e-2, ge=0.0, le=10.0, help="L2 weight decay on the weights")


@dataclass
class LinearFit:
    """Trained weights plus what training reported about itself (train set = gallery only)."""

    weight: torch.Tensor  # [R, C, D]
    bias: torch.Tensor  # [R, C]
    valid: torch.Tensor
    train_loss: list[float]  # summed CE per repeat at the last step, divided by valid samples
    train_accuracy: list[float]

    def scores(self, probes: torch.Tensor) -> torch.Tensor:
        logits = l2_normalize(probes) @ self.weight.transpose(1, 2) + self.bias[:, None, :]
        return _mask_missing(logits, self.valid)


def train_linear(gallery: torch.Tensor, valid: torch.Tensor, schedule: LinearSchedule) -> LinearFit:
    """Fit one softmax linear classifier per repeat on its gallery (sample ``c`` has class ``c``;
    with a ``[R, C, K, D]`` gallery, the K samples of slot ``c`` have class ``c`` and weight 1/K).

    Gradients are written out by hand (``dL/dlogits = softmax - onehot``), which avoids autograd
    graphs and keeps memory at a few ``[R, C, C]`` buffers.
    """
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
    for _ in range(schedule.steps):
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
        torch.baddbmm(weight, probs.transpose(1, 2), x, beta=schedule.weight_decay, out=grad_weight)
        v_weight.mul_(schedule.momentum).add_(grad_weight)
        v_bias.mul_(schedule.momentum).add_(probs.sum(dim=1))
        weight.sub_(schedule.lr * v_weight)
        bias.sub_(schedule.lr * v_bias)
    del probs
    logits = _mask_missing(x @ weight.transpose(1, 2) + bias[:, None, :], valid)
    truth = rows if labels is None else labels
    own = logits.diagonal(dim1=1, dim2=2) if labels is None else logits[:, rows, labels]
    n_valid = samples.sum(dim=1).clamp_min(1)
    per_sample = torch.where(samples, torch.logsumexp(logits, dim=-1) - own, torch.zeros_like(own))
    loss = per_sample.sum(dim=1) / n_valid
    hits = ((logits.argmax(dim=-1) == truth) & samples).sum(dim=1)
    return LinearFit(weight, bias, valid, loss.tolist(), (hits / n_valid).tolist())


class SoftmaxLinear:
    """Softmax linear classifier trained on the gallery features only (paper: Linear)."""

    name = "linear"

    def __init__(self, **options: Any) -> None:
        self.schedule = parse_config(LinearSchedule, options, "linear-classifier")

    def fit(self, gallery: torch.Tensor, valid: torch.Tensor) -> FittedClassifier:
        return train_linear(gallery, valid, self.schedule)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "features": "l2-normalised", "init": "zeros",
                "optimizer": "full-batch SGD, heavy-ball momentum, summed CE",
                **asdict(self.schedule)}


CLASSIFIERS.add("linear", SoftmaxLinear, origin=f"{__name__}:SoftmaxLinear",
                description="softmax linear classifier trained on the gallery (paper: Linear)")

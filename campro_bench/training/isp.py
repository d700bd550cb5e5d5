"""Adversarial training of the CamPro ISP parameters (paper Sec. V-C, Eq. 3-6, Algorithm 1).

Three players:

* **C**, the camera: :class:`~campro_bench.protectors.isp.CamproISP` (3x3 CCM + 32-point gamma LUT,
  41 parameters), Adam (paper: lr 1e-3), projected back into range after every step (LUT in
  [0, 1], every CCM entry in ``[-ccm_bound, ccm_bound]``);
* **F**, the attacker: any differentiable registered face recogniser (``facenet-casia`` by
  default) plus a proxy classification head **H** over the training identities; or an *ensemble*
  of several (``attacker = "facenet-casia,mobilefacenet"``), each with its own head and its own
  aligned crops of the same images (see "Ensembles" below);
* **P**, the person detector (``ssdlite-mobilenetv2-coco``; the paper: YOLOv5m), trained jointly
  with C on the detection loss (paper: SGD lr 1e-4).

Algorithm 1, as implemented:

1. *Warm-up* (lines 1-10). Line 1, initialise H: a linear probe on F's embeddings of the raw
   training crops (F fixed, ``head_init_epochs`` epochs; ``0`` leaves H at zero). Lines 2-10: F
   and H are trained together with cross-entropy on **raw** training crops, epoch after epoch
   (at least one), until the epoch's running training accuracy (predictions made before each
   update) reaches ``warmup_threshold`` or ``warmup_max_epochs`` is used up. (Without the probe,
   a zero head's gradients disturb the pretrained F: measured on celeba-subset, 2 epochs reached
   only 66% running accuracy.)
   The result is cached (keyed by everything that determines it) so that a second run with the
   same attacker, data, seed and warm-up settings (e.g. the protector-only ablation) reuses it.
2. *Adversarial iterations* (lines 11-32), each:

   * ``m`` attacker steps: cross-entropy ``L_ce = -log p_y`` on protected crops ``C(x)``
     (C fixed), SGD on F and H; skipped with ``protector_only`` (the Table II ablation: F and H
     stay exactly as the warm-up left them);
   * ``n`` protector steps: ``L_ns = -log(1 - p_y)`` on a protected face batch (F, H fixed) and
     ``L_det = L_cls + L_box`` on a protected person batch; C moves along
     ``grad(L_ns + omega * L_det)`` and P along ``grad(L_det)`` (Eq. 6; the two gradients are
     taken separately, so P's step does not depend on omega).

F is kept in eval mode throughout: dropout off, batch-norm statistics frozen (facenet-casia's
convolutions have batch-norm folded in; its final embedding batch-norm keeps its statistics).
P trains with frozen batch-norm statistics (its ``train()``). Face batches and person batches come
from independent seeded samplers (:class:`~campro_bench.training.data.EpochSampler`), the
attacker and protector steps from different streams, so a protector-only run sees the same
protector batches as the full run.

Ensembles: with K attackers every loss is the **mean over the K models** of that model's loss
(``L_ce`` in the attacker steps, ``L_ns`` in the protector steps); each F_k and H_k sees the same
images, aligned for its own contract (the ISP is per-pixel, so protecting each model's crop equals
cropping the protected image up to interpolation). The mean rather than the worst model per step:
``L_ns = -log(1 - p_y)`` grows without bound as a model recognises a face, so the mean already
weights the model that resists the protector most, while keeping a gradient from every model at
every step (a max passes gradient to one model per step and switches between them, which makes the
41-parameter ISP oscillate); averaging losses is also a standard way of attacking an ensemble
(Dong et al., CVPR 2018). Logged accuracies and losses are means over the models, and validation
also logs each model's accuracy. One attacker gives exactly the single-model algorithm.

Restoration adversary (``restorer = "unet"``, beyond the paper): a U-Net R trained in the loop to
invert the current ISP, and a protector term ``L_rs`` (``L_ns`` of frozen warmed-up copies of F and H
on R's restored faces, weight ``restoration_weight``); see :mod:`~campro_bench.training.isp_restoration`.

Held-out honesty: validation images are other images of the training identities (split by image,
:func:`~campro_bench.training.data.split_by_image`); the attacker's accuracy on them (8-bit
protected and raw) is logged every ``val_every`` iterations and never used to choose anything.
**The parameters reported are the last iterate.** Evaluation on unseen identities is E1/E2 on LFW.

Resuming: a checkpoint (``checkpoint.pt``, atomic) every ``checkpoint_every`` iterations and at
the end holds C, F, H, P, every optimiser and sampler state, the RNG states, the counters and the
logs; a resumed run continues bit-identically to an uninterrupted one (same device and threads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import option, parse_config, validate_config
from ..errors import CamproError, MissingFileError
from ..io import tensor_to_uint8
from ..io.atomic import atomic_write_json
from ..io.hashing import sha256_json
from ..io.sealed import discard, verify_sealed
from ..protectors.isp import CamproISP, ISPParams, load_preset
from .checkpoint import (
    config_mismatch,
    load_module_state,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from .data import EpochSampler, FaceTrainingData, PersonTrainingData
from .isp_restoration import RESTORERS, RestorationAdversary, restoration_privacy_loss, restored_accuracy
from .losses import frozen, non_saturating_loss, quantize8
from .report import Panel, moving_average, plot_panels, save_image_grid, training_manifest, write_csv

TRAINER = "isp"
WARMUP_VERSION = 2
CHECKPOINT_NAME = "checkpoint.pt"
RESUME_MAY_CHANGE = ("iterations", "checkpoint_every", "val_every", "log_every")
"""Configuration keys a resumed run may change; any other difference refuses to resume."""

ProgressCallback = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``"head-init"`` (crops embedded), ``"warmup"`` (steps, out of
the most the warm-up may take) or ``"train"`` (iterations)."""


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------
@dataclass
class ISPTrainConfig:
    """Everything that determines a training run (recorded in the manifest and the checkpoint).

    Learning rates: ``lr_isp`` (Adam, paper 1e-3) and ``lr_detector`` (SGD, paper 1e-4) are the
    paper's; ``lr_attacker`` (SGD on F, paper 1e-1) defaults lower because 1e-1 diverges for the
    pretrained facenet-casia, and 1e-3 still degrades its features during the warm-up (measured;
    see docs/training.md); ``lr_head`` is H's own SGD rate.
    """

    attacker: str = option("facenet-casia", help="white-box attacker F: a differentiable face recogniser")
    face_dataset: str = option("celeba-subset", help="face identity dataset D_F (proxy identities)")
    person_dataset: str = option("coco128", help="person-detection dataset D_P (its 'train' split)")
    person_detector: str = option("ssdlite-mobilenetv2-coco", help="differentiable person detector P")
    face_detector: str = option("mtcnn", help="face detector of the crops")
    init: str = option("standard", help="starting ISP: preset name or parameter JSON file")
    omega: float = option(0.2, ge=0.0, le=1e3, help="weight of the utility loss L_det (Eq. 6)")
    m: int = option(1, ge=1, le=1000, help="attacker steps per iteration")
    n: int = option(1, ge=1, le=1000, help="protector steps per iteration")
    iterations: int = option(300, ge=0, le=10_000_000, help="adversarial iterations after the warm-up")
    batch_size: int = option(16, ge=1, le=4096, help="face crops per step")
    person_batch_size: int = option(4, ge=1, le=4096, help="person images per protector step")
    protector_only: bool = option(False, help="no attacker steps (Table II ablation)")
    seed: int = option(0, ge=0, help="seed of the split, batch order and flips")
    lr_isp: float = option(1e-3, gt=0.0, le=10.0, help="Adam learning rate of the ISP parameters")
    lr_attacker: float = option(1e-4, gt=0.0, le=10.0, help="SGD learning rate of F")
    lr_head: float = option(1e-1, gt=0.0, le=100.0, help="SGD learning rate of the proxy head H")
    momentum: float = option(0.9, ge=0.0, lt=1.0, help="SGD momentum of F and H")
    lr_detector: float = option(1e-4, gt=0.0, le=10.0, help="SGD learning rate of P")
    detector_momentum: float = option(0.0, ge=0.0, lt=1.0, help="SGD momentum of P")
    head_scale: float = option(16.0, gt=0.0, le=1e3, help="scale s of the proxy head's logits")
    head_init_epochs: int = option(20, ge=0, le=10_000, help="epochs of the linear probe that initialises H")
    ccm_bound: float = option(8.0, gt=0.0, le=1e3, help="every CCM entry is kept within [-bound, bound]")
    warmup_threshold: float = option(0.9, gt=0.0, le=1.0, help="warm-up ends at this running training accuracy")
    warmup_max_epochs: int = option(6, ge=0, le=10_000, help="warm-up epochs at most")
    val_per_identity: int = option(1, ge=1, le=1000, help="held-out images per identity")
    max_identities: int = option(0, ge=0, help="> 0: first N identities of the face dataset")
    max_person_images: int = option(0, ge=0, help="> 0: seeded subset of the person images")
    hflip: bool = option(True, help="random horizontal flips")
    checkpoint_every: int = option(50, ge=1, help="iterations between checkpoints")
    val_every: int = option(50, ge=0, help="iterations between validations (0: start and end only)")
    log_every: int = option(10, ge=1, help="iterations between log rows")
    # the restoration adversary (beyond the paper; training/isp_restoration.py)
    restorer: str = option("none", help="restoration adversary R in the loop: none (the paper) or unet")
    restoration_weight: float = option(1.0, ge=0.0, le=1e3, help="weight lambda_R of L_rs, L_ns on restored faces")
    restorer_steps: int = option(1, ge=1, le=1000, help="R steps per iteration")
    restorer_warmup_steps: int = option(200, ge=0, le=1_000_000, help="R steps on the initial ISP before iteration 1")
    lr_restorer: float = option(1e-3, gt=0.0, le=10.0, help="Adam learning rate of R")
    restorer_channels: int = option(12, ge=1, le=256, help="U-Net base channels of R")
    restorer_depth: int = option(4, ge=2, le=8, help="U-Net levels of R")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ISPTrainConfig":
        return parse_config(cls, data, "train isp")

    def check(self) -> None:
        """One-line :class:`CamproError` for the first invalid value (types and ranges of the fields,
        then the attacker list)."""
        validate_config(self, "train isp")
        names = self.attackers()
        if not names or not all(names):
            raise CamproError(f"attacker must name one or more models, got {self.attacker!r}")
        if len(set(names)) != len(names):
            raise CamproError(f"attacker names a model twice: {self.attacker!r}")
        if self.restorer not in RESTORERS:
            raise CamproError(f"restorer must be one of {', '.join(RESTORERS)}, got {self.restorer!r}")

    def attackers(self) -> list[str]:
        """The attacker names (``attacker`` is one name or several separated by commas)."""
        return [name.strip() for name in self.attacker.split(",")]


def initial_params(init: str) -> ISPParams:
    """The starting ISP: a preset name (``standard``, ``identity``, a shipped preset) or a JSON file."""
    if init.endswith(".json") or "/" in init:
        return ISPParams.load(init)
    return load_preset(init)


# ----------------------------------------------------------------------------------------
# pieces of the objective
# ----------------------------------------------------------------------------------------
class ProxyHead(nn.Module):
    """H: a linear classifier over the proxy identities, ``logits = W (s * e) + b``.

    Face recognisers return unit-length embeddings ``e``; the fixed scale ``s`` lets softmax
    probabilities approach 1 without huge weights (as cosine-softmax heads do). W and b start at
    zero (uniform prediction), so the head needs no random initialisation.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise CamproError(f"the proxy head needs at least 2 identities, got {num_classes}")
        self.scale = float(scale)
        self.linear = nn.Linear(embedding_size, num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(embeddings * self.scale)


def _accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Top-1 accuracy, averaged over the models of an ensemble."""
    return float(np.mean([float((z.argmax(1) == labels).float().mean()) for z in logits]))


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


# ----------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------
class ISPTrainer:
    """Algorithm 1 on given data and models (see the module docstring).

    Build it with prepared data and models (tests use tiny ones), then :meth:`run`. ``out``
    receives ``checkpoint.pt``, the logs and, from :meth:`finish`, the parameters and reports.
    """

    def __init__(
        self,
        config: ISPTrainConfig,
        face_data: FaceTrainingData,
        person_data: PersonTrainingData,
        attacker: nn.Module | Sequence[nn.Module],  # FaceRecognizer(s)
        detector: nn.Module,  # PersonDetector
        out: Path,
        device: torch.device | str = "cpu",
        init_params: ISPParams | None = None,
        warmup_cache: Path | None = None,
    ) -> None:
        config.check()
        attackers = [attacker] if isinstance(attacker, nn.Module) else list(attacker)
        face_sets = [face_data] * len(attackers) if isinstance(face_data, FaceTrainingData) else list(face_data)
        if len(face_sets) != len(attackers):
            raise CamproError(f"{len(attackers)} attackers but {len(face_sets)} face data sets")
        for model, data in zip(attackers, face_sets):
            if not getattr(model, "differentiable", False):
                raise CamproError(f"attacker '{getattr(model, 'name', '?')}' is not differentiable; "
                                  "choose a torch face recogniser such as facenet-casia")
            size = tuple(model.contract.input_size)
            if data.crop_size != size:
                raise CamproError(f"face crops are {data.crop_size[0]}x{data.crop_size[1]} but attacker "
                                  f"'{model.name}' takes {size[0]}x{size[1]} ({model.contract.alignment})")
            if not (np.array_equal(data.train_labels, face_sets[0].train_labels)
                    and np.array_equal(data.val_labels, face_sets[0].val_labels)):
                raise CamproError(f"attacker '{model.name}': its face crops are not of the same images as the "
                                  f"first attacker's (an ensemble needs one image list in every alignment)")
        if not getattr(detector, "differentiable", False):
            raise CamproError(f"person detector '{getattr(detector, 'name', '?')}' is not differentiable; "
                              "choose a torch detector such as ssdlite-mobilenetv2-coco")
        self.config, self.out, self.device = config, Path(out), torch.device(device)
        self.face_data, self.person_data, self.warmup_cache = face_sets[0], person_data, warmup_cache
        self.face_sets = face_sets
        self.init_params = init_params if init_params is not None else initial_params(config.init)
        self.isp = CamproISP(isp=self.init_params).to(self.device)
        self.attackers = [model.to(self.device).eval() for model in attackers]
        self.heads = [ProxyHead(model.contract.embedding_size, self.face_data.num_classes, config.head_scale).to(self.device)
                      for model in self.attackers]
        # one attacker: the modules themselves (checkpoints and warm-up caches as before); several: lists
        self.attacker: nn.Module = self.attackers[0] if len(attackers) == 1 else nn.ModuleList(self.attackers)
        self.head: nn.Module = self.heads[0] if len(attackers) == 1 else nn.ModuleList(self.heads)
        self.detector = detector.to(self.device).train()
        self.det_params = [p for p in self.detector.parameters() if p.requires_grad]
        c = config
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "isp": torch.optim.Adam(self.isp.parameters(), lr=c.lr_isp),
            "attacker": torch.optim.SGD(self.attacker.parameters(), lr=c.lr_attacker, momentum=c.momentum),
            "head": torch.optim.SGD(self.head.parameters(), lr=c.lr_head, momentum=c.momentum),
            "detector": torch.optim.SGD(self.det_params, lr=c.lr_detector, momentum=c.detector_momentum),
        }
        n_train = len(self.face_data.train_labels)
        self.samplers = {
            "warmup": EpochSampler(n_train, c.batch_size, c.seed, 0, c.hflip),
            "attack": EpochSampler(n_train, c.batch_size, c.seed, 1, c.hflip),
            "protect": EpochSampler(n_train, c.batch_size, c.seed, 2, c.hflip),
            "person": EpochSampler(len(person_data), c.person_batch_size, c.seed, 3, c.hflip),
        }
        self.restoration = (RestorationAdversary(c.restorer_channels, c.restorer_depth, c.lr_restorer, n_train,
                                                 c.batch_size, c.seed, c.hflip, self.device)
                            if c.restorer == "unet" else None)
        self.phase = "warmup" if c.warmup_max_epochs > 0 else "adversarial"
        self.iteration = 0
        self.rows: list[dict[str, Any]] = []
        self.val_rows: list[dict[str, Any]] = []
        self.warmup_rows: list[dict[str, Any]] = []
        self.warmup_source = "trained" if self.phase == "warmup" else "skipped"
        self.head_init: dict[str, Any] = {}
        self.elapsed = 0.0
        self._started = time.perf_counter()

    # steps ------------------------------------------------------------------------------
    def _faces(self, indices: np.ndarray, flips: np.ndarray | None = None,
               split: str = "train") -> tuple[list[torch.Tensor], torch.Tensor]:
        """The batch's crops for every attacker (one tensor per distinct alignment) and the labels."""
        made: dict[int, torch.Tensor] = {}
        y = torch.empty(0)
        for data in self.face_sets:
            if id(data) not in made:
                made[id(data)], y = data.batch(indices, flips, split=split, device=self.device)
        return [made[id(data)] for data in self.face_sets], y

    def _protect(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """C applied to each attacker's crops (once per distinct crop tensor)."""
        made: dict[int, torch.Tensor] = {}
        for x in crops:
            if id(x) not in made:
                made[id(x)] = self.isp(x)
        return [made[id(x)] for x in crops]

    def _logits(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each attacker's proxy-head logits on its own crops."""
        return [head(model(x)) for model, head, x in zip(self.attackers, self.heads, images)]

    def attacker_step(self, protected: bool = True) -> dict[str, float]:
        """One SGD step of F and H on a face batch (protected by the current, fixed C, or raw);
        with an ensemble, on the mean of the models' cross-entropies."""
        sampler = self.samplers["attack" if protected else "warmup"]
        xs, y = self._faces(*sampler.next())
        if protected:
            with torch.no_grad():
                xs = [self.isp(x) for x in xs]
        logits = self._logits(xs)
        loss = torch.stack([F.cross_entropy(z, y) for z in logits]).mean()
        for name in ("attacker", "head"):
            self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["attacker"].step()
        self.optimizers["head"].step()
        return {"ce": float(loss.detach()), "acc": _accuracy(logits, y)}

    def protector_step(self) -> dict[str, float]:
        """One step of C (on L_ns + omega L_det) and P (on L_det), F and H fixed; with an
        ensemble, L_ns is the mean of the models' L_ns."""
        c = self.config
        xs, y = self._faces(*self.samplers["protect"].next())
        captured = self._protect(xs)
        with frozen(self.attacker, self.head):
            logits = self._logits(captured)
        l_ns = torch.stack([non_saturating_loss(z, y).mean() for z in logits]).mean()
        restored: dict[str, float] = {}
        g_rs: Sequence[torch.Tensor | None] = (None, None)
        isp_params = [self.isp.ccm, self.isp.lut]
        if self.restoration is not None:
            l_rs, judged = restoration_privacy_loss(self.restoration, captured, y)
            g_rs = torch.autograd.grad(l_rs, isp_params, retain_graph=True)
            restored = {"l_rs": float(l_rs.detach()), "acc_restored": _accuracy(judged, y)}
        images, boxes = self.person_data.batch(*self.samplers["person"].next(), device=self.device)
        from ..detection import person_targets

        det = self.detector.loss_components(self.isp(images), person_targets(boxes))
        g_ns = torch.autograd.grad(l_ns, isp_params)
        g_det = torch.autograd.grad(det["total"], isp_params + self.det_params, allow_unused=True)
        for p, a, r, b in zip(isp_params, g_ns, g_rs, g_det[:2]):
            p.grad = a + c.omega * b if r is None else a + c.restoration_weight * r + c.omega * b
        for p, g in zip(self.det_params, g_det[2:]):
            p.grad = torch.zeros_like(p) if g is None else g
        self.optimizers["isp"].step()
        self.isp.project_(c.ccm_bound)
        self.optimizers["detector"].step()
        with torch.no_grad():
            ce = float(np.mean([float(F.cross_entropy(z, y)) for z in logits]))
            p_y = float(np.mean([float(torch.softmax(z, 1).gather(1, y[:, None]).mean()) for z in logits]))
        return {
            "l_ns": float(l_ns.detach()), "ce_protected": ce, "p_y": p_y,
            "acc_protected": _accuracy(logits, y),
            "l_det": float(det["total"].detach()), "l_cls": float(det["cls"].detach()),
            "l_box": float(det["box"].detach()),
            **restored,
            "objective": (float(l_ns.detach()) + c.restoration_weight * restored.get("l_rs", 0.0)
                          + c.omega * float(det["total"].detach())),
        }

    # phases -----------------------------------------------------------------------------
    def init_head(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Line 1 of Algorithm 1: initialise H by a linear probe on F's embeddings of the raw
        training crops (F fixed, no flips; ``head_init_epochs`` seeded epochs of SGD)."""
        c, start = self.config, time.perf_counter()
        n = len(self.face_data.train_labels)
        labels = torch.from_numpy(self.face_data.train_labels).to(self.device)
        accs = []
        for k, (model, head, data) in enumerate(zip(self.attackers, self.heads, self.face_sets)):
            parts = []
            with torch.no_grad():
                for s in range(0, n, 64):
                    x, _ = data.batch(np.arange(s, min(s + 64, n)), device=self.device)
                    parts.append(model(x))
                    if progress is not None:
                        progress("head-init", k * n + min(s + 64, n), n * len(self.attackers))
            emb = torch.cat(parts)
            sampler = EpochSampler(n, c.batch_size, c.seed, 4, hflip=False)
            optimizer = torch.optim.SGD(head.parameters(), lr=c.lr_head, momentum=c.momentum)
            for _ in range(c.head_init_epochs * sampler.batches_per_epoch):
                idx, _ = sampler.next()
                loss = F.cross_entropy(head(emb[idx]), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                accs.append(float((head(emb).argmax(1) == labels).float().mean()))
        self.head_init = {"epochs": c.head_init_epochs, "train_acc": float(np.mean(accs)),
                          "seconds": time.perf_counter() - start}
        if len(accs) > 1:
            self.head_init["train_acc_per_model"] = dict(zip(self._names(), accs))
        return self.head_init

    def warmup_epoch(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """One epoch of F + H on raw training crops; ends the warm-up at the threshold."""
        start = time.perf_counter()
        per_epoch = self.samplers["warmup"].batches_per_epoch
        steps = []
        for _ in range(per_epoch):
            steps.append(self.attacker_step(protected=False))
            if progress is not None:  # in steps, against the most the warm-up may take
                progress("warmup", len(self.warmup_rows) * per_epoch + len(steps), self.config.warmup_max_epochs * per_epoch)
        row = {"epoch": len(self.warmup_rows) + 1, "train_acc": _mean(steps)["acc"],
               "train_ce": _mean(steps)["ce"], "seconds": time.perf_counter() - start}
        self.warmup_rows.append(row)
        c = self.config
        if row["train_acc"] >= c.warmup_threshold or row["epoch"] >= c.warmup_max_epochs:
            self.phase = "adversarial"
        return row

    def iterate(self) -> dict[str, Any]:
        """One adversarial iteration: m attacker steps (unless protector-only), n protector steps."""
        start = time.perf_counter()
        row: dict[str, Any] = {"iteration": self.iteration + 1}
        if not self.config.protector_only:
            attack = _mean([self.attacker_step() for _ in range(self.config.m)])
            row.update(attacker_ce=attack["ce"], attacker_acc=attack["acc"])
        if self.restoration is not None:
            row.update(_mean([self.restoration.restorer_step(self.isp, self._restorer_batch(self.restoration.sampler))
                              for _ in range(self.config.restorer_steps)]))
        row.update(_mean([self.protector_step() for _ in range(self.config.n)]))
        row["seconds"] = time.perf_counter() - start
        self.iteration += 1
        self.rows.append(row)
        return row

    @torch.inference_mode()
    def validate(self) -> dict[str, Any]:
        """Attacker (F + H) top-1 accuracy and CE on held-out faces (8-bit protected and raw), and
        the detection loss of the current P on all person images, 8-bit protected."""
        from ..detection import person_targets

        data, result = self.face_data, {"iteration": self.iteration}
        persons, total = self.person_data, 0.0
        self.detector.eval()
        for s in range(0, len(persons), 8):
            images, boxes = persons.batch(np.arange(s, min(s + 8, len(persons))), device=self.device)
            total += float(self.detector.loss(quantize8(self.isp(images)), person_targets(boxes))) * len(boxes)
        self.detector.train()
        result["person_l_det"] = total / len(persons)
        names, count = self._names(), len(data.val_labels)
        if self.restoration is not None and self.restoration.ready and count:
            correct_r = np.zeros(len(names))
            for s in range(0, count, 64):
                xs, y = self._faces(np.arange(s, min(s + 64, count)), split="val")
                correct_r += restored_accuracy(self.restoration, self._protect(xs), y)
            result["val_acc_restored"] = float(correct_r.mean()) / count
            if len(names) > 1:
                result.update({f"val_acc_restored[{model}]": float(v) / count for model, v in zip(names, correct_r)})
        for name, protect in (("protected", True), ("raw", False)):
            if count == 0:
                break
            correct, ce = np.zeros(len(names)), np.zeros(len(names))
            for s in range(0, count, 64):
                xs, y = self._faces(np.arange(s, min(s + 64, count)), split="val")
                logits = self._logits([quantize8(self.isp(x)) if protect else x for x in xs])
                correct += [int((z.argmax(1) == y).sum()) for z in logits]
                ce += [float(F.cross_entropy(z, y, reduction="sum")) for z in logits]
            result[f"val_acc_{name}"] = float(correct.mean()) / count
            result[f"val_ce_{name}"] = float(ce.mean()) / count
            if len(names) > 1:  # each model of the ensemble
                result.update({f"val_acc_{name}[{model}]": float(v) / count for model, v in zip(names, correct)})
        self.val_rows.append(result)
        return result

    # warm-up cache ----------------------------------------------------------------------
    def warmup_key(self) -> dict[str, Any]:
        """Everything that determines the warm-up's result."""
        c = self.config
        return {
            "version": WARMUP_VERSION, **self._identity(),
            "classes": self.face_data.num_classes, "device": self.device.type,
            "torch": str(torch.__version__), "threads": torch.get_num_threads(),
            **{k: getattr(c, k) for k in ("seed", "batch_size", "hflip", "lr_attacker", "lr_head", "momentum",
                                          "head_scale", "head_init_epochs", "warmup_threshold",
                                          "warmup_max_epochs")},
        }

    def _names(self) -> list[str]:
        return [getattr(model, "name", "?") for model in self.attackers]

    def _identity(self) -> dict[str, Any]:
        """The attacker(s) and their crops: one model as before, an ensemble as lists."""
        weights = [getattr(model, "weights_hash", "?") for model in self.attackers]
        if len(self.attackers) == 1:
            return {"attacker": self._names()[0], "weights": weights[0], "faces": self.face_data.info}
        return {"attacker": self._names(), "weights": weights, "faces": [d.info for d in self.face_sets]}

    def _warmup_file(self) -> Path | None:
        if self.warmup_cache is None:
            return None
        digest = sha256_json(self.warmup_key())[:24]
        return self.warmup_cache / f"{digest}.pt"

    def _warmup_state(self) -> dict[str, Any]:
        return {"attacker": self.attacker.state_dict(), "head": self.head.state_dict(),
                "optimizers": {k: self.optimizers[k].state_dict() for k in ("attacker", "head")},
                "sampler": self.samplers["warmup"].state_dict(), "rows": self.warmup_rows,
                "head_init": self.head_init}

    def _load_warmup(self, state: dict[str, Any], source: str) -> None:
        load_module_state(self.attacker, state["attacker"], source)
        load_module_state(self.head, state["head"], source)
        for k in ("attacker", "head"):
            self.optimizers[k].load_state_dict(state["optimizers"][k])
        self.samplers["warmup"].load_state_dict(state["sampler"])
        self.warmup_rows, self.head_init = list(state["rows"]), dict(state["head_init"])

    def run_warmup(self, progress: ProgressCallback | None = None) -> None:
        """Lines 1-10 of Algorithm 1, or load their cached result."""
        if self.phase != "warmup":
            return
        cached = self._warmup_file()
        if cached is not None and verify_sealed(cached):
            _, state = load_training_checkpoint(cached, "isp-warmup")
            self._load_warmup(state, str(cached))
            self.phase, self.warmup_source = "adversarial", f"cache {cached.name}"
            return
        if not self.warmup_rows and not self.head_init and self.config.head_init_epochs > 0:
            self.init_head(progress)
        while self.phase == "warmup":
            self.warmup_epoch(progress)
            self.save_checkpoint()
        if cached is not None:
            discard(cached)  # absent, or altered since it was written
            save_training_checkpoint(cached, "isp-warmup", self.warmup_key(), self._warmup_state(), sealed=True)

    def _restorer_batch(self, sampler: EpochSampler) -> list[torch.Tensor]:
        """R's next batch of raw training crops (one tensor per attacker; shared alignments shared)."""
        xs, _ = self._faces(*sampler.next())
        return xs

    def start_restorer(self, progress: ProgressCallback | None = None) -> None:
        """Freeze the warmed-up attackers as R's judges and train R on the initial ISP (once)."""
        adversary = self.restoration
        if adversary is None or self.iteration > 0:
            return
        if not adversary.ready:
            adversary.take_judges(self.attackers, self.heads)
        steps = self.config.restorer_warmup_steps
        while len(adversary.warmup_rows) < steps:
            adversary.warmup(self.isp, self._restorer_batch, min(steps, len(adversary.warmup_rows) + 50))
            if progress is not None:
                progress("restorer-warmup", len(adversary.warmup_rows), steps)
        if adversary.warmup_rows:
            write_csv(self.out / "restorer_warmup.csv", adversary.warmup_rows)

    # checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        state = {
            "phase": self.phase, "iteration": self.iteration, "warmup_source": self.warmup_source,
            "isp": self.isp.state_dict(), "attacker": self.attacker.state_dict(), "head": self.head.state_dict(),
            "detector": self.detector.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
            "restoration": self.restoration.state_dict() if self.restoration is not None else None,
            "rng": rng_state(), "rows": self.rows, "val_rows": self.val_rows, "warmup_rows": self.warmup_rows,
            "head_init": self.head_init,
            "elapsed": self.elapsed + time.perf_counter() - self._started,
        }
        save_training_checkpoint(self.checkpoint_path, TRAINER, self.config.to_dict(), state)
        self.write_logs()

    def resume(self) -> None:
        """Continue from ``out/checkpoint.pt`` (its configuration must match, see RESUME_MAY_CHANGE)."""
        path = self.checkpoint_path
        saved, state = load_training_checkpoint(path, TRAINER)
        diff = config_mismatch(saved, self.config.to_dict(), RESUME_MAY_CHANGE)
        if diff:
            raise CamproError(f"cannot resume {path}: configuration differs ({'; '.join(diff)})")
        for name, module in (("isp", self.isp), ("attacker", self.attacker), ("head", self.head),
                             ("detector", self.detector)):
            load_module_state(module, state[name], f"{path} ({name})")
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for k, sampler in self.samplers.items():
            sampler.load_state_dict(state["samplers"][k])
        if self.restoration is not None:
            self.restoration.load_state_dict(state["restoration"], self.attackers, self.heads, str(path))
        set_rng_state(state["rng"])
        self.phase, self.iteration = state["phase"], int(state["iteration"])
        self.rows = list(state["rows"])
        # the end-of-run validation of a stopped run is off the schedule: drop it, as a run that
        # had not stopped there would not have it (it is made again when this run ends)
        every = self.config.val_every
        self.val_rows = [r for r in state["val_rows"] if r["iteration"] == 0 or (every and r["iteration"] % every == 0)]
        self.warmup_rows, self.warmup_source = list(state["warmup_rows"]), state["warmup_source"]
        self.head_init = dict(state["head_init"])
        self.elapsed, self._started = float(state["elapsed"]), time.perf_counter()

    def write_logs(self) -> None:
        if self.rows:
            write_csv(self.out / "log.csv", self.rows)
        if self.val_rows:
            write_csv(self.out / "val.csv", self.val_rows)
        if self.warmup_rows:
            write_csv(self.out / "warmup.csv", self.warmup_rows)

    # the whole run ----------------------------------------------------------------------
    def run(self, progress: ProgressCallback | None = None) -> None:
        """Warm-up (unless done), then iterations up to ``config.iterations``, checkpointing."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_warmup(progress)
        self.start_restorer(progress)
        if self.iteration == 0 and not any(r["iteration"] == 0 for r in self.val_rows):
            self.validate()  # the starting point: warmed-up attacker, initial ISP
        while self.iteration < c.iterations:
            self.iterate()
            i = self.iteration
            if c.val_every and i % c.val_every == 0:
                self.validate()
            if i % c.checkpoint_every == 0 and i < c.iterations:
                self.save_checkpoint()
            elif i % c.log_every == 0:
                self.write_logs()
            if progress is not None:
                progress("train", i, c.iterations)
        if not self.val_rows or self.val_rows[-1]["iteration"] != self.iteration:
            self.validate()  # always end with a validation of the final parameters
        self.save_checkpoint()

    # outputs ----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Final metrics: last validation, means over the last 10% of iterations, warm-up."""
        tail = self.rows[-max(1, len(self.rows) // 10):] if self.rows else []
        keys = ("acc_protected", "attacker_acc", "l_ns", "ce_protected", "l_det", "l_cls", "l_box",
                "acc_restored", "l_rs", "r_l1")
        last = {f"train_last10pct_{k}": float(np.mean([r[k] for r in tail])) for k in keys if tail and k in tail[0]}
        first_det = float(np.mean([r["l_det"] for r in self.rows[:max(1, len(self.rows) // 10)]])) if self.rows else None
        val = self.val_rows[-1] if self.val_rows else {}
        initial = next((r for r in self.val_rows if r["iteration"] == 0), {})
        return {
            "iterations": self.iteration,
            "final_val": val, "initial_val": initial,
            **last, "train_first10pct_l_det": first_det,
            "head_init": self.head_init,
            "warmup_epochs": len(self.warmup_rows),
            "warmup_final_train_acc": self.warmup_rows[-1]["train_acc"] if self.warmup_rows else None,
            "warmup_reached_threshold": bool(self.warmup_rows and self.warmup_rows[-1]["train_acc"] >= self.config.warmup_threshold),
            "warmup_source": self.warmup_source,
            "wall_seconds": self.elapsed + time.perf_counter() - self._started,
            "seconds_per_iteration": float(np.mean([r["seconds"] for r in self.rows])) if self.rows else None,
            **(self.restoration.summary() if self.restoration is not None else {}),
        }

    def params(self) -> ISPParams:
        """The learned parameters (last iterate) with how they were made in the metadata."""
        c = self.config
        meta = {
            "trainer": "campro-bench train isp (Algorithm 1)", "attacker": c.attacker,
            "scheme": "protector-only" if c.protector_only else "protector+attacker",
            "omega": c.omega, "m": c.m, "n": c.n, "iterations": self.iteration, "seed": c.seed,
            "face_dataset": c.face_dataset, "person_dataset": c.person_dataset,
            "person_detector": c.person_detector, "init": c.init, "ccm_bound": c.ccm_bound,
            "selection": "last iterate",
        }
        if c.restorer != "none":
            meta.update(restorer=c.restorer, restoration_weight=c.restoration_weight)
        return ISPParams.from_tensors(self.isp.ccm, self.isp.lut, self.isp.degamma_exponent, **meta)

    def finish(self, data_info: dict[str, Any] | None = None, models: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``isp.json``, ``detector.pt``, ``report.json/png``, ``samples.png`` and ``manifest.json``."""
        from ..detection.checkpoint import save_checkpoint as save_detector

        out = self.out
        params = self.params()
        params.save(out / "isp.json")
        self.detector.eval()
        det_sha = save_detector(self.detector, out / "detector.pt", {"trained_with": "campro-bench train isp",
                                                                     "isp_digest": params.digest()})
        self.detector.train()
        summary = self.summary()
        self.write_logs()
        report = {"config": self.config.to_dict(), "summary": summary, "head_init": self.head_init,
                  "warmup": self.warmup_rows,
                  "validation": self.val_rows, "isp": params.to_dict()}
        atomic_write_json(out / "report.json", report)
        self.plot(out / "report.png")
        self.samples(out / "samples.png")
        c = self.config
        manifest = training_manifest(
            "isp", config=c.to_dict(),
            seeds={"seed": c.seed, "split_seed": c.seed, "samplers": "numpy default_rng([seed, stream, epoch]); "
                   "streams: 0 warm-up, 1 attacker, 2 protector faces, 3 persons"},
            data=data_info or {"faces": self.face_data.info, "persons": self.person_data.info},
            models=models or {"attacker": ",".join(self._names()), "detector": getattr(self.detector, "name", "?")},
            timings={"wall": summary["wall_seconds"],
                     "warmup": sum(r["seconds"] for r in self.warmup_rows),
                     "iterations": sum(r["seconds"] for r in self.rows)},
            metrics=summary,
            outputs={"isp": "isp.json", "isp_digest": params.digest(), "detector": "detector.pt",
                     "detector_sha256": det_sha, "log": "log.csv", "validation": "val.csv", "report": "report.json"},
            notes=["Parameters are the last iterate; validation accuracy is logged only, never used for selection.",
                   "Validation images are held-out images of the training identities (split by image)."],
        )
        atomic_write_json(out / "manifest.json", manifest)
        return manifest

    def plot(self, path: Path) -> None:
        rows, val = self.rows, self.val_rows
        it = [r["iteration"] for r in rows]
        window = max(1, len(rows) // 20)
        acc = Panel("attacker accuracy (train batches, moving average; validation)", ylabel="top-1", ylim=(0, 1))
        acc.series["protected, protector-step batches"] = (it, moving_average([r["acc_protected"] for r in rows], window))
        if rows and "attacker_acc" in rows[0]:
            acc.series["protected, attacker-step batches"] = (it, moving_average([r["attacker_acc"] for r in rows], window))
        if rows and "acc_restored" in rows[0]:
            acc.series["restored (judges), protector-step batches"] = (
                it, moving_average([r["acc_restored"] for r in rows], window))
        for name in ("protected", "raw", "restored"):
            if val and f"val_acc_{name}" in val[-1]:
                acc.series[f"validation, {name}"] = ([v["iteration"] for v in val], [v[f"val_acc_{name}"] for v in val])
        loss = Panel("privacy losses (moving average)", ylabel="loss", logy=True)
        loss.series["L_ns = -log(1 - p_y)"] = (it, moving_average([r["l_ns"] for r in rows], window))
        loss.series["L_ce on protected"] = (it, moving_average([r["ce_protected"] for r in rows], window))
        if rows and "l_rs" in rows[0]:
            loss.series["L_rs = L_ns on restored faces"] = (it, moving_average([r["l_rs"] for r in rows], window))
            loss.series["R's L1 to the raw crop"] = (it, moving_average([r["r_l1"] for r in rows], window))
        det = Panel("person detection loss L_det (moving average)", ylabel="loss")
        for key in ("l_det", "l_cls", "l_box"):
            det.series[f"{key} (train batches)"] = (it, moving_average([r[key] for r in rows], window))
        if val and "person_l_det" in val[0]:
            det.series["l_det, all person images (validation)"] = ([v["iteration"] for v in val],
                                                                   [v["person_l_det"] for v in val])
        xs = np.linspace(0, 1, self.isp.lut_points).tolist()
        lut = Panel("gamma LUT", xlabel="input (after CCM)", ylabel="output", ylim=(0, 1))
        lut.series["initial"] = (xs, self.init_params.lut)
        lut.series["learned"] = (xs, self.isp.lut.detach().cpu().tolist())
        c = self.config
        title = (f"train isp: {c.attacker}, omega {c.omega}, m {c.m}, n {c.n}, "
                 f"{'protector-only' if c.protector_only else 'protector+attacker'}, {self.iteration} iterations")
        plot_panels(path, [acc, loss, det, lut], title=title)

    @torch.inference_mode()
    def samples(self, path: Path, faces: int = 8, persons: int = 3) -> None:
        """Raw vs protected (8-bit) validation faces and person images, one PNG."""
        data = self.face_data
        split = "val" if len(data.val_labels) else "train"
        count = min(faces, len(data.val_labels) if split == "val" else len(data.train_labels))
        x, _ = data.batch(np.arange(count), split=split, device=self.device)
        people = self.person_data.images[: min(persons, len(self.person_data))].to(self.device)
        save_image_grid(path, [
            ("raw faces", list(tensor_to_uint8(x))),
            ("protected", list(tensor_to_uint8(self.isp(x)))),
            ("raw persons", list(tensor_to_uint8(people))),
            ("protected", list(tensor_to_uint8(self.isp(people)))),
        ])


# ----------------------------------------------------------------------------------------
# from names: what `campro-bench train isp` runs
# ----------------------------------------------------------------------------------------
def train_isp(
    config: ISPTrainConfig,
    out: Path,
    *,
    resume: bool = False,
    data_root: str | None = None,
    cache_dir: str | None = None,
    models_dir: str | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressCallback | None = None,
    crop_progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Build the attacker, detector and data by name, train (or resume) and write the outputs.

    Returns the manifest. Refuses (one line) to overwrite a run in ``out`` without ``resume``.
    """
    from .. import paths
    from ..detection import create_person_detector
    from ..recognizers import create_face_recognizer
    from .data import load_face_training_data, load_person_training_data

    config.check()
    out = Path(out)
    checkpoint = out / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():
        raise MissingFileError(f"--resume: no checkpoint {checkpoint}; start without --resume")
    if not resume and checkpoint.exists():
        raise CamproError(f"{out} already holds a training run ({CHECKPOINT_NAME}); pass --resume to continue it "
                          "or choose another --out")
    init = initial_params(config.init)
    attackers = [create_face_recognizer(name, models_dir, cache_dir, device) for name in config.attackers()]
    for name, attacker in zip(config.attackers(), attackers):
        if not attacker.differentiable:
            raise CamproError(f"attacker '{name}' is not differentiable; choose a torch face recogniser "
                              "such as facenet-casia, facenet-msceleb or mobilefacenet")
    detector = create_person_detector(config.person_detector, models_dir, cache_dir, device)
    if not detector.differentiable:
        raise CamproError(f"person detector '{config.person_detector}' is not differentiable; choose a torch "
                          "detector such as ssdlite-mobilenetv2-coco")
    by_alignment = {}  # one set of crops per alignment, shared by the attackers that use it
    for attacker in attackers:
        alignment = attacker.contract.alignment
        if alignment not in by_alignment:
            by_alignment[alignment] = load_face_training_data(
                config.face_dataset, alignment, val_per_identity=config.val_per_identity,
                seed=config.seed, max_identities=config.max_identities, detector=config.face_detector,
                data_root=data_root, cache_dir=cache_dir, progress=crop_progress, device=device,
            )
    faces = [by_alignment[a.contract.alignment] for a in attackers]
    persons = load_person_training_data(config.person_dataset, detector, data_root, "train",
                                        config.max_person_images, config.seed)
    trainer = ISPTrainer(config, faces, persons, attackers, detector, out, device, init,
                         warmup_cache=paths.cache_dir(cache_dir) / "training" / "isp-warmup")
    if resume:
        trainer.resume()
    trainer.run(progress)
    described = [{"name": name, "weights": a.weights_hash, "contract": a.contract.to_dict()}
                 for name, a in zip(config.attackers(), attackers)]
    models: dict[str, Any] = {
        "attacker": described[0] if len(described) == 1 else {
            "ensemble": described, "aggregation": "mean of the models' losses (L_ce and L_ns) at every step"},
        "person_detector": {"name": config.person_detector, "weights": detector.weights_hash},
    }
    face_info = faces[0].info if len(by_alignment) == 1 else {a: d.info for a, d in by_alignment.items()}
    return trainer.finish({"faces": face_info, "persons": persons.info}, models)

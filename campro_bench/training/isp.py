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

Where the code lives: this module holds the configuration, the proxy head, :class:`ISPTrainer` (the
state of a run: players, optimisers, samplers, counters, logs; :meth:`ISPTrainer.run`) and
:func:`train_isp`. The trainer's methods delegate to one module per responsibility, each a set of
functions of the trainer: :mod:`~campro_bench.training.isp_steps` (attacker step, protector step,
iteration, validation), :mod:`~campro_bench.training.isp_warmup` (head probe, warm-up epochs, the
sealed warm-up cache, the restorer's warm-up), :mod:`~campro_bench.training.isp_checkpoint`
(checkpoint, resume, CSV logs) and :mod:`~campro_bench.training.isp_report` (summary, parameters,
report, plots, manifest).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import option, parse_config, validate_config
from ..errors import CamproError, MissingFileError
from ..io.outfolder import check_new_run, check_output_location
from ..protectors.isp import CCM_LIMIT, CamproISP, ISPParams, load_preset
from . import isp_checkpoint, isp_levers, isp_report, isp_steps, isp_warmup
from .conditions import TrainingConditions, without_empty
from .data import EpochSampler, FaceTrainingData, PersonTrainingData
from .isp_checkpoint import CHECKPOINT_NAME
from .isp_restoration import RESTORERS, RestorationAdversary
from .losses import non_saturating_loss  # noqa: F401  (re-exported: part of this module's interface)
from .losses import per_distinct

ProgressCallback = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``"head-init"`` (crops embedded), ``"warmup"`` (steps, out of
the most the warm-up may take), ``"restorer-warmup"`` (R's steps on the initial ISP, with ``--restorer``)
or ``"train"`` (iterations)."""


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
    person_dataset: str = option("coco128", help="person-detection dataset D_P (its 'train' split; "
                                 "coco-person-val: its fine-tune images, never the test images)")
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
    ccm_bound: float = option(8.0, gt=0.0, le=CCM_LIMIT, help="every CCM entry is kept within [-bound, bound]")
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
    # levers beyond the paper, all off by default (training/isp_levers.py)
    restorer_reinit_every: int = option(0, ge=0, le=10_000_000, help="K > 0: R gets fresh seeded weights, a fresh "
                                        "optimiser and its warm-up steps on the current ISP after every K-th iteration")
    restorer_steps_final: int = option(0, ge=0, le=1000, help="R1 > 0: R's steps per iteration grow linearly from "
                                       "restorer_steps to R1 (rounded half up); 0: constant restorer_steps")
    restorer_steps_ramp: int = option(0, ge=0, le=10_000_000, help="iterations of the R-step ramp (0: the whole run)")
    lut_max_slope: float = option(0.0, ge=0.0, le=31.0, help="s > 0: the LUT's slope is kept within [-s, s] "
                                  "(a flatter tone curve; its outputs span at most s); 0: unbounded")
    # capture conditions in the loop (training/conditions.py)
    conditions: dict[str, float] = option(dict, help="capture conditions drawn per batch, with their probabilities "
                                          "(e.g. {grey = 0.5}); the rest of the batches are unconditioned")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, without an empty ``conditions`` table and without levers
        that are off (a run without them records, and resumes, exactly as before they existed)."""
        return {k: v for k, v in without_empty(asdict(self)).items()
                if not (k in isp_levers.LEVER_DEFAULTS and v == isp_levers.LEVER_DEFAULTS[k])}

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
        TrainingConditions.parse(self.conditions, self.seed, "train isp key 'conditions'")
        isp_levers.check_levers(self)

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


# ----------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------
class ISPTrainer:
    """Algorithm 1 on given data and models (see the module docstring).

    Build it with prepared data and models (tests use tiny ones), then :meth:`run`. ``out``
    receives ``checkpoint.pt``, the logs and, from :meth:`finish`, the parameters and reports.
    The object holds the run's state and the batch helpers; the steps, warm-ups, checkpoints and
    reports are functions of it in ``isp_steps``, ``isp_warmup``, ``isp_checkpoint`` and
    ``isp_report``, which its methods of the same names call.
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
        isp_levers.limit_lut_slope_(self.isp.lut, config.lut_max_slope)  # the start meets the LUT's bound too
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
        self.conditions = TrainingConditions.parse(c.conditions, c.seed)
        self.draws: dict[str, list[str]] = {}  # this iteration's condition per batch, by role (logged)
        self.phase = "warmup" if c.warmup_max_epochs > 0 else "adversarial"
        self.iteration = 0
        self.rows: list[dict[str, Any]] = []
        self.val_rows: list[dict[str, Any]] = []
        self.warmup_rows: list[dict[str, Any]] = []
        self.warmup_source = "trained" if self.phase == "warmup" else "skipped"
        self.head_init: dict[str, Any] = {}
        self.elapsed = 0.0
        self._started = time.perf_counter()

    # batches of the players ---------------------------------------------------------------
    def _faces(self, indices: np.ndarray, flips: np.ndarray | None = None,
               split: str = "train") -> tuple[list[torch.Tensor], torch.Tensor]:
        """The batch's crops for every attacker (one tensor per distinct alignment) and the labels."""
        batches = per_distinct(lambda data: data.batch(indices, flips, split=split, device=self.device),
                               self.face_sets)
        return [x for x, _ in batches], batches[-1][1]  # every set has the same labels (checked at start)

    def _protect(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """C applied to each attacker's crops (once per distinct crop tensor)."""
        return per_distinct(self.isp, crops)

    def _logits(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each attacker's proxy-head logits on its own crops."""
        return [head(model(x)) for model, head, x in zip(self.attackers, self.heads, images)]

    def _sensor(self, images: list[torch.Tensor], role: str, t: int | None = None) -> list[torch.Tensor]:
        """The batch as the camera's sensor records it: one condition drawn for the batch (every
        attacker's crops alike; training/conditions.py), recorded in ``draws``. ``t`` defaults to the
        current iteration; the batch's step is its position among this iteration's batches of ``role``."""
        done = self.draws.setdefault(role, [])
        condition = self.conditions.draw(role, self.iteration if t is None else t, len(done))
        done.append(self.conditions.name(condition))
        return per_distinct(lambda x: self.conditions.apply(condition, x), images)

    def _restorer_batch(self, sampler: EpochSampler, role: str = "restore") -> list[torch.Tensor]:
        """R's next batch of training crops as the sensor records them (one tensor per attacker;
        shared alignments shared); ``role`` ``restore-warmup`` for R's warm-up on the initial ISP."""
        xs, _ = self._faces(*sampler.next())
        return self._sensor(xs, role)

    def _names(self) -> list[str]:
        return [getattr(model, "name", "?") for model in self.attackers]

    def _identity(self) -> dict[str, Any]:
        """The attacker(s) and their crops: one model as before, an ensemble as lists."""
        weights = [getattr(model, "weights_hash", "?") for model in self.attackers]
        if len(self.attackers) == 1:
            return {"attacker": self._names()[0], "weights": weights[0], "faces": self.face_data.info}
        return {"attacker": self._names(), "weights": weights, "faces": [d.info for d in self.face_sets]}

    # steps (training/isp_steps.py) --------------------------------------------------------
    def attacker_step(self, protected: bool = True) -> dict[str, float]:
        """One SGD step of F and H (see :func:`~campro_bench.training.isp_steps.attacker_step`)."""
        return isp_steps.attacker_step(self, protected)

    def protector_step(self) -> dict[str, float]:
        """One step of C and P, F and H fixed (see :func:`~campro_bench.training.isp_steps.protector_step`)."""
        return isp_steps.protector_step(self)

    def iterate(self) -> dict[str, Any]:
        """One adversarial iteration: m attacker steps (unless protector-only), n protector steps."""
        return isp_steps.iterate(self)

    def validate(self) -> dict[str, Any]:
        """Held-out attacker accuracy and the detection loss (see :func:`~campro_bench.training.isp_steps.validate`)."""
        return isp_steps.validate(self)

    # warm-ups (training/isp_warmup.py) ----------------------------------------------------
    def init_head(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Line 1 of Algorithm 1: H by a linear probe on F's raw embeddings."""
        return isp_warmup.init_head(self, progress)

    def warmup_epoch(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """One epoch of F + H on raw training crops; ends the warm-up at the threshold."""
        return isp_warmup.warmup_epoch(self, progress)

    def warmup_key(self) -> dict[str, Any]:
        """Everything that determines the warm-up's result (its cache key)."""
        return isp_warmup.warmup_key(self)

    def run_warmup(self, progress: ProgressCallback | None = None) -> None:
        """Lines 1-10 of Algorithm 1, or load their cached result."""
        isp_warmup.run_warmup(self, progress)

    def start_restorer(self, progress: ProgressCallback | None = None) -> None:
        """Freeze the warmed-up attackers as R's judges and train R on the initial ISP (once)."""
        isp_warmup.start_restorer(self, progress)

    # checkpoints (training/isp_checkpoint.py) ---------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        """Write ``out/checkpoint.pt`` and the logs."""
        isp_checkpoint.save_checkpoint(self)

    def resume(self) -> None:
        """Continue from ``out/checkpoint.pt`` (its configuration must match, see RESUME_MAY_CHANGE)."""
        isp_checkpoint.resume(self)

    def write_logs(self) -> None:
        """``log.csv``, ``val.csv`` and ``warmup.csv`` in ``out``."""
        isp_checkpoint.write_logs(self.out, self.rows, self.val_rows, self.warmup_rows)

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

    # outputs (training/isp_report.py) ------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Final metrics: last validation, means over the last 10% of iterations, warm-up."""
        return isp_report.summary(self)

    def params(self) -> ISPParams:
        """The learned parameters (last iterate) with how they were made in the metadata."""
        return isp_report.params(self)

    def finish(self, data_info: dict[str, Any] | None = None, models: dict[str, Any] | None = None,
               command: Sequence[str] | None = None) -> dict[str, Any]:
        """Write ``isp.json``, ``detector.pt``, ``report.json/png``, ``samples.png`` and ``manifest.json``."""
        return isp_report.finish(self, data_info, models, command)

    def plot(self, path: Path) -> None:
        """Training curves and the LUT, one PNG."""
        isp_report.plot(self, path)

    def samples(self, path: Path, faces: int = 8, persons: int = 3) -> None:
        """Raw vs protected (8-bit) validation faces and person images, one PNG."""
        isp_report.samples(self, path, faces, persons)


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
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Build the attacker, detector and data by name, train (or resume) and write the outputs.

    Returns the manifest. Refuses (one line) to overwrite a run in ``out`` without ``resume``.
    ``command``: what the manifest records as the command (default: this process's arguments).
    """
    from .. import paths
    from ..detection import create_person_detector
    from ..recognizers import create_face_recognizer
    from .data import load_face_training_data, load_person_training_data

    config.check()
    out = Path(out)
    check_output_location(out, replaces=False)
    checkpoint = out / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():
        raise MissingFileError(f"--resume: no checkpoint {checkpoint}; start without --resume")
    if resume:
        isp_checkpoint.resumable_state(checkpoint, config)  # refused before models and data load
    if not resume and checkpoint.exists():
        raise CamproError(f"{out} already holds a training run ({CHECKPOINT_NAME}); pass --resume to continue it "
                          "or choose another --out")
    if not resume:
        check_new_run(out, isp_report.OUTPUTS)
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
    return trainer.finish({"faces": face_info, "persons": persons.info}, models, command)

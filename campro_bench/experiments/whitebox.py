"""White-box re-training columns, shared by E5 (Table VII) and the audit's ``retrain`` rung.

A column trains a differentiable face extractor (:mod:`campro_bench.training.fr_retrain`) on the
aligned crops of the TRAIN identities (protected, or raw for a control) and identifies the EVAL
identities on the E1 protocol's gallery/probe draws. Its outcome (EVAL embeddings and training
history) is cached under ``<cache>/e5/``, keyed by everything that determines it, and sealed with a
content digest (:mod:`campro_bench.io.sealed`): an altered entry, or one without a digest, is trained again.
:class:`E5Config` is E5's protocol section; the audit builds one for its rung. Each (column,
train seed) is an independent executor task (:func:`column_task`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import option, option_like
from ..errors import CamproError
from ..faces.pipeline import aligned_crops
from ..io.sealed import discard, sealed_path, trusted_entry, write_sealed_json
from ..io.hashing import ids_digest, sha256_json
from ..privacy.classifiers import build_classifier
from ..privacy.identification import FeatureSet, identify_many
from ..privacy.splits import IdentificationSplits, sample_splits, select_identities
from ..training.enhancer import resolve_isp
from ..training.fr_retrain import EXTRACTORS, RetrainConfig, build_extractor, embed, retrain
from ..training.unet import UNetTrainConfig
from .base import RunContext
from .common import check_protector
from .spec import parse_protocol


@dataclass
class RetrainColumn:
    """One re-training column of Table VII."""

    label: str
    extractor: str
    config: RetrainConfig


@dataclass(frozen=True)
class RetrainSchedule:
    """The schedule keys of :class:`~campro_bench.training.fr_retrain.RetrainConfig` that a protocol
    table sets for all of its re-trainings (E5's ``[retrain]``, the audit's ``[retrain]``)."""

    epochs: int = option_like(RetrainConfig, "epochs")
    batch_size: int = option_like(RetrainConfig, "batch_size")
    momentum: float = option_like(RetrainConfig, "momentum")
    weight_decay: float = option_like(RetrainConfig, "weight_decay")
    decay_epoch: int = option_like(RetrainConfig, "decay_epoch")
    decay_factor: float = option_like(RetrainConfig, "decay_factor")
    arcface_scale: float = option_like(RetrainConfig, "arcface_scale")
    arcface_margin: float = option_like(RetrainConfig, "arcface_margin")
    hflip: bool = True
    grad_clip: float = option_like(RetrainConfig, "grad_clip")

    def schedule(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(RetrainSchedule)}


@dataclass(frozen=True)
class E5RetrainSection(RetrainSchedule):
    """E5's ``[retrain]`` table: the schedule shared by every column, and the columns.

    A column is ``{label, extractor, loss[, any schedule key]}``; its own keys override the shared
    schedule, and :class:`~campro_bench.training.fr_retrain.RetrainConfig` validates the result.
    """

    row: str = option("facenet-casia", help="the Table VII row the re-trained extractors belong to")
    train_seeds: list[int] = option(lambda: [0], help="one re-training per seed; mean and std over them")
    eval_every_epoch: bool = option(True, help="diagnostic EVAL accuracy per epoch (never used to select)")
    control_raw: bool = option(False, help="also train every column on RAW crops")
    columns: list[dict[str, Any]] = option(list, help="{label, extractor, loss[, lr, epochs, ...]} per column")

    def built_columns(self) -> list[RetrainColumn]:
        """Each column with its extractor checked and its schedule validated (shared keys, then its own)."""
        shared = self.schedule()
        columns = []
        for index, item in enumerate(self.columns):
            if not {"label", "extractor", "loss"} <= set(item):
                raise CamproError(f"bad e5 retrain.columns[{index}] {item!r}: need label, extractor and loss")
            EXTRACTORS.entry(str(item["extractor"]))
            own = {k: v for k, v in item.items() if k not in ("label", "extractor")}
            columns.append(RetrainColumn(str(item["label"]), str(item["extractor"]),
                                         RetrainConfig.from_dict({**shared, **own}, f"e5 retrain.columns[{index}]")))
        return columns


@dataclass(frozen=True)
class RestorationAttackConfig:
    """The restoration attack's U-Net training (plain L1, Eq. 7): E5's and the audit's ``[restoration]``.

    The keys and ranges of :class:`~campro_bench.training.unet.UNetTrainConfig`, with this attack's
    defaults (a short CPU schedule on 112-px face crops); ``seed`` unset = the protocol's seed.

    The budget is ``steps``, not epochs: the crops come from every evaluated model's alignment, so
    a number of passes would give a longer training to a run that lists more models (3 passes were
    173 steps for one alignment, 519 for three) and the white-box figure of a model would depend on
    which other models were listed. ``steps`` is turned into the nearest whole number of passes
    over the actual crops (at least one), so the budget holds to within half a pass.
    """

    steps: int = option(520, ge=1, le=10_000_000,
                        help="AdamW steps of the U-Net whatever the number of crops (nearest whole number of passes)")
    crop: int = option_like(UNetTrainConfig, "crop", 112)
    batch_size: int = option_like(UNetTrainConfig, "batch_size", 16)
    lr: float = option_like(UNetTrainConfig, "lr")
    weight_decay: float = option_like(UNetTrainConfig, "weight_decay")
    base_channels: int = option_like(UNetTrainConfig, "base_channels")
    depth: int = option_like(UNetTrainConfig, "depth")
    face_crop_fraction: float = option_like(UNetTrainConfig, "face_crop_fraction", 0.0)
    hflip: bool = True
    quantize: bool = True
    seed: int | None = option(None, ge=0, help="U-Net seed; unset = the protocol's seed")

    def epochs_for(self, crops: int) -> int:
        """Whole passes over ``crops`` training crops nearest to the ``steps`` budget (at least one)."""
        per_pass = crops // self.batch_size
        if per_pass < 1:
            raise CamproError(f"restoration: {crops} training crops are fewer than one batch of {self.batch_size}; "
                              "lower restoration.batch_size")
        return max(1, round(self.steps / per_pass))

    def unet(self, protocol_seed: int, crops: int) -> UNetTrainConfig:
        """The U-Net training configuration for ``crops`` training crops (no face penalty: restoration
        is plain L1)."""
        values = {f.name: getattr(self, f.name) for f in fields(RestorationAttackConfig) if f.name != "steps"}
        values["seed"] = protocol_seed if self.seed is None else self.seed
        return UNetTrainConfig.from_dict({**values, "epochs": self.epochs_for(crops), "face_penalty": False})

    def budget(self, crops: int) -> dict[str, int]:
        """The budget asked for and the one trained (for manifests)."""
        epochs = self.epochs_for(crops)
        return {"steps_asked": self.steps, "epochs": epochs, "steps": epochs * (crops // self.batch_size), "crops": crops}

    def budget_note(self, crops: int) -> str:
        """One sentence for a result's notes: steps asked, steps trained and why they differ.

        The whole-pass rounding moves the trained steps by up to half a pass: 84 asked are 84 trained
        over 450 crops (3 passes of 28 batches), 74 over 600 (2 of 37), 110 over 891 (2 of 55)."""
        b = self.budget(crops)
        per_pass = crops // self.batch_size
        how = (f"{b['epochs']} whole pass(es) of {per_pass} batches of {self.batch_size} over {crops} training crops")
        if b["steps"] == b["steps_asked"]:
            return f"Restoration U-Net: {b['steps']} AdamW steps, as asked ({how})."
        return (f"Restoration U-Net: {b['steps_asked']} AdamW steps asked, {b['steps']} trained ({how}: the budget "
                "is rounded to the nearest whole number of passes).")


@dataclass(frozen=True)
class E5RestorationSection(RestorationAttackConfig):
    """E5's ``[restoration]`` table: the attack's U-Net, the models that score it and its training data."""

    models: list[str] = option(list, help="face models that identify the restored probes ([] = no restoration)")
    data: Literal["faces", "scenes"] = option("faces", help="faces: TRAIN identities' crops; scenes: COCO images")
    sources: str = option("coco128,coco-mini", help="COCO sets (data = scenes only)")
    holdout: str = option("coco-mini:val", help="held-out COCO set (data = scenes only)")


@dataclass(frozen=True)
class E5Config:
    """The E5 protocol (``protocols/e5.toml``): EVAL/TRAIN split, draws, re-training and restoration."""

    dataset: str = option("celeba-subset", help="face dataset whose identities are split EVAL/TRAIN")
    isp: str = option("casia-adv", help="the attacked ISP: a preset name or an ISP .json file")
    protector: str = option("", help="any protector spec instead of the ISP; empty = the ISP of `isp`")
    eval_identities: int = option(100, ge=2, help="EVAL = the first N identities with >= min_images images")
    max_train_identities: int = option(100, ge=0, help="0 = every non-EVAL identity; N = the first N by name")
    min_images: int = option(2, ge=2)
    repeats: int = option(10, ge=1, le=1000)
    seed: int = option(0, ge=0)
    classifier: str = option("nearest")
    detector: str = option("mtcnn")
    batch_size: int = option(64, ge=1, le=4096, help="embedding batch size")
    retrain: E5RetrainSection = option(E5RetrainSection)
    restoration: E5RestorationSection = option(E5RestorationSection)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "E5Config":
        cfg = parse_protocol(cls, spec, "e5")
        cfg.retrain.built_columns()  # fail on a bad column before any work
        return cfg

    @property
    def columns(self) -> list[RetrainColumn]:
        return self.retrain.built_columns()


def attacked_protector(cfg: E5Config) -> Any:
    """The protector the white-box attacker attacks: ``protector`` if set, else the ISP of ``isp``."""
    return check_protector(cfg.protector) if cfg.protector else resolve_isp(cfg.isp)


@dataclass
class IdentitySplit:
    eval_ids: list[str]
    train_ids: list[str]
    eval_names: list[str]
    train_identities: int


def eval_splits(labels: np.ndarray, names: list[str], cfg: E5Config) -> IdentificationSplits:
    """The gallery/probe draws of the EVAL identities (the same as :func:`run_protocol` draws)."""
    kept = select_identities(labels, names, min_images=cfg.min_images, max_identities=cfg.eval_identities)
    return sample_splits(labels, repeats=cfg.repeats, seed=cfg.seed, identities=kept)


def _crops(cfg: E5Config, ctx: RunContext, alignment: str, protector: Any, ids: list[str]):
    return aligned_crops(cfg.dataset, alignment, pipeline="paper", protector=protector, detector=cfg.detector,
                         data_root=ctx.data_root_option, cache_dir=ctx.cache_dir, image_ids=ids,
                         progress=ctx.progress, device=ctx.device)


def _accuracies(cfg: E5Config, features: FeatureSet, splits: IdentificationSplits, ctx: RunContext) -> np.ndarray:
    clf = build_classifier(cfg.classifier)
    result = identify_many(clf, features, {"probe": features}, splits, device=ctx.device)["probe"]
    return result.accuracies


def load_outcome(cache: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A column's cached outcome (``cache.npz`` embeddings, ``cache.json`` info), or ``None`` when it is
    absent or cannot be trusted (altered, or without a digest: removed, to be trained again)."""
    entry = (cache.with_suffix(".npz"), cache.with_suffix(".json"))
    trusted = trusted_entry(*entry)
    if not trusted:
        if trusted is False:
            for path in entry:
                discard(path)
        return None
    with np.load(entry[0], allow_pickle=False) as data:
        embeddings = data["embeddings"]
    return embeddings, json.loads(entry[1].read_text(encoding="utf-8"))


def save_outcome(cache: Path, embeddings: np.ndarray, info: dict[str, Any]) -> None:
    """Write a column's outcome atomically, each file sealed with its digest."""
    with sealed_path(cache.with_suffix(".npz")) as tmp:
        np.savez(tmp, embeddings=embeddings)
    write_sealed_json(cache.with_suffix(".json"), info)


def run_column(cfg: E5Config, column: RetrainColumn, seed: int, split: IdentitySplit, isp: Any, protected: bool,
               ctx: RunContext) -> dict[str, Any]:
    """Train one column's extractor (or load its outcome from the cache) and identify EVAL faces."""
    contract = EXTRACTORS.entry(column.extractor).metadata["contract"]
    config = RetrainConfig.from_dict({**{k: v for k, v in column.config.to_dict().items() if k != "decay_after"},
                                      "seed": seed})
    protector = isp if protected else "raw"
    train = _crops(cfg, ctx, contract.alignment, protector, split.train_ids)
    evals = _crops(cfg, ctx, contract.alignment, protector, split.eval_ids)
    splits = eval_splits(evals.labels, evals.identity_names, cfg)
    weights_id = ""
    recognizer = EXTRACTORS.entry(column.extractor).metadata.get("recognizer")
    if recognizer:
        from ..faces.embeddings import weights_identity

        weights_id = weights_identity(recognizer, ctx.models_dir, ctx.cache_dir)
    key_payload = {"extractor": column.extractor, "weights": weights_id, "config": config.to_dict(),
                   "protector": isp.fingerprint() if protected else "raw", "train": ids_digest(split.train_ids),
                   "eval": ids_digest(split.eval_ids), "crops": {k: train.provenance.get(k) for k in
                                                                 ("dataset_fingerprint", "detector", "alignment")},
                   "eval_every_epoch": cfg.retrain.eval_every_epoch, "classifier": cfg.classifier,
                   "splits": [cfg.seed, cfg.repeats], "version": 1}
    key = sha256_json(key_payload)[:16]
    cache = ctx.cache_dir / "e5" / f"retrain-{column.extractor}-{key}"
    outcome = load_outcome(cache)
    if outcome is not None:
        embeddings, info = outcome
        cached = True
    else:
        def diagnostic(epoch: int, extractor: Any) -> dict[str, float]:
            feats = FeatureSet(embed(extractor, evals.crops, cfg.batch_size, ctx.device), evals.found)
            return {"eval_accuracy_diagnostic": float(_accuracies(cfg, feats, splits, ctx).mean())}

        extractor = build_extractor(column.extractor, ctx.cache_dir, seed)
        steps = config.epochs * (len(train.crops) // config.batch_size)
        what = f"re-train {column.label} ({'protected' if protected else 'raw control'}, seed {seed})"
        with ctx.manifest.timer(f"retrain {column.label}"), ctx.progress(what, steps) as advance:
            result = retrain(extractor, train.crops[train.found], train.labels[train.found], config, device=ctx.device,
                             on_step=advance, on_epoch=diagnostic if cfg.retrain.eval_every_epoch else None, log=ctx.log)
        embeddings = embed(extractor, evals.crops, cfg.batch_size, ctx.device)
        info = {"history": result.history, "diverged": result.diverged, "seconds": result.seconds, "key": key_payload,
                "train_images": int(train.found.sum()), "train_identities": int(len(np.unique(train.labels)))}
        save_outcome(cache, embeddings, info)
        cached = False
    accuracies = _accuracies(cfg, FeatureSet(embeddings, evals.found), splits, ctx)
    return {"accuracies": accuracies, "info": info, "cached": cached, "chance": splits.chance,
            "identities": splits.n_identities, "config": config.to_dict(), "splits": splits}


def column_task(ctx: RunContext, cfg: E5Config, column: RetrainColumn, seed: int, split: IdentitySplit,
                protected: bool) -> dict[str, Any]:
    """One executor task: :func:`run_column` against :func:`attacked_protector` (built in the task)."""
    return run_column(cfg, column, seed, split, attacked_protector(cfg), protected, ctx)

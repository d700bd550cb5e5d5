"""White-box re-training columns, shared by E5 (Table VII) and the audit's ``retrain`` rung.

A column trains a differentiable face extractor (:mod:`campro_bench.training.fr_retrain`) on the
aligned crops of the TRAIN identities (protected, or raw for a control) and identifies the EVAL
identities on the E1 protocol's gallery/probe draws. Its outcome (EVAL embeddings and training
history) is cached under ``<cache>/e5/``, keyed by everything that determines it.
:class:`E5Config` is E5's protocol section; the audit builds one for its rung.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CamproError
from ..faces.pipeline import aligned_crops
from ..io import atomic_write_json
from ..io.hashing import ids_digest, sha256_json
from ..privacy.classifiers import build_classifier
from ..privacy.identification import FeatureSet, identify_many
from ..privacy.splits import IdentificationSplits, sample_splits, select_identities
from ..training.fr_retrain import EXTRACTORS, RetrainConfig, build_extractor, embed, retrain
from ..training.restoration import DATA_KINDS
from .base import RunContext


@dataclass
class RetrainColumn:
    """One re-training column of Table VII."""

    label: str
    extractor: str
    config: RetrainConfig


@dataclass
class E5Config:
    dataset: str
    isp: str
    eval_identities: int
    max_train_identities: int
    min_images: int
    repeats: int
    seed: int
    classifier: str
    detector: str
    batch_size: int
    retrain_row: str
    columns: list[RetrainColumn]
    train_seeds: list[int]
    eval_every_epoch: bool
    control_raw: bool
    restoration: dict[str, Any]
    restoration_models: list[str]
    restoration_data: str = "faces"
    restoration_sources: str = "coco128,coco-mini"
    restoration_holdout: str = "coco-mini:val"
    protector: str = ""  # any protector spec; empty = the CamPro ISP of `isp`

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "E5Config":
        retrain_spec = dict(spec.get("retrain", {}))
        shared = {k: retrain_spec[k] for k in ("epochs", "batch_size", "momentum", "weight_decay", "decay_epoch",
                                               "decay_factor", "arcface_scale", "arcface_margin", "hflip", "grad_clip")
                  if k in retrain_spec}
        columns = []
        for item in retrain_spec.get("columns", []):
            if not isinstance(item, dict) or not {"label", "extractor", "loss"} <= set(item):
                raise CamproError(f"bad e5 retrain column {item!r}: need label, extractor and loss")
            EXTRACTORS.entry(str(item["extractor"]))
            own = {k: v for k, v in item.items() if k not in ("label", "extractor")}
            columns.append(RetrainColumn(str(item["label"]), str(item["extractor"]),
                                         RetrainConfig.from_dict({**shared, **own})))
        restoration = dict(spec.get("restoration", {}))
        if restoration.get("data", "faces") not in DATA_KINDS:
            raise CamproError(f"e5 restoration.data must be one of {', '.join(DATA_KINDS)}")
        eval_identities = int(spec.get("eval_identities", 100))
        if eval_identities < 2:
            raise CamproError("e5 eval_identities must be >= 2")
        return cls(
            dataset=str(spec.get("dataset", "celeba-subset")),
            isp=str(spec.get("isp", "casia-adv")),
            eval_identities=eval_identities,
            max_train_identities=int(spec.get("max_train_identities", 0)),
            min_images=int(spec.get("min_images", 2)),
            repeats=int(spec.get("repeats", 10)),
            seed=int(spec.get("seed", 0)),
            classifier=str(spec.get("classifier", "nearest")),
            detector=str(spec.get("detector", "mtcnn")),
            batch_size=int(spec.get("batch_size", 64)),
            retrain_row=str(retrain_spec.get("row", "facenet-casia")),
            columns=columns,
            train_seeds=[int(s) for s in retrain_spec.get("train_seeds", [0])],
            eval_every_epoch=bool(retrain_spec.get("eval_every_epoch", False)),
            control_raw=bool(retrain_spec.get("control_raw", False)),
            restoration={k: v for k, v in restoration.items() if k not in ("models", "data", "sources", "holdout")},
            restoration_models=list(restoration.get("models", [])),
            restoration_data=str(restoration.get("data", "faces")),
            restoration_sources=str(restoration.get("sources", "coco128,coco-mini")),
            restoration_holdout=str(restoration.get("holdout", "coco-mini:val")),
            protector=str(spec.get("protector", "") or ""),
        )


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
                   "eval_every_epoch": cfg.eval_every_epoch, "classifier": cfg.classifier,
                   "splits": [cfg.seed, cfg.repeats], "version": 1}
    key = sha256_json(key_payload)[:16]
    cache = ctx.cache_dir / "e5" / f"retrain-{column.extractor}-{key}"
    if cache.with_suffix(".npz").is_file() and cache.with_suffix(".json").is_file():
        embeddings = np.load(cache.with_suffix(".npz"))["embeddings"]
        info = json.loads(cache.with_suffix(".json").read_text())
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
                             on_step=advance, on_epoch=diagnostic if cfg.eval_every_epoch else None, log=ctx.log)
        embeddings = embed(extractor, evals.crops, cfg.batch_size, ctx.device)
        info = {"history": result.history, "diverged": result.diverged, "seconds": result.seconds, "key": key_payload,
                "train_images": int(train.found.sum()), "train_identities": int(len(np.unique(train.labels)))}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache.with_suffix(".npz"), embeddings=embeddings)
        atomic_write_json(cache.with_suffix(".json"), info)
        cached = False
    accuracies = _accuracies(cfg, FeatureSet(embeddings, evals.found), splits, ctx)
    return {"accuracies": accuracies, "info": info, "cached": cached, "chance": splits.chance,
            "identities": splits.n_identities, "config": config.to_dict(), "splits": splits}

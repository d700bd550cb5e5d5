"""Worst-case privacy audit: an attacker ladder against any protector (``campro-bench audit``).

For each protector spec (built-ins and plugins alike) the audit runs five rungs on the same
identity-disjoint data, and reports every (rung, attack, model, classifier, gallery) as top-1
mean, std and t-interval over the seeded gallery/probe draws, with the multiple of chance:

1. ``black-box``: raw gallery, protected probes (the E1 protocol, :func:`run_protocol`);
2. ``gray-box``: gallery re-enrolled with protected images (E1's ``protected`` gallery);
3. ``cheap``: blind transforms of the protected probes (:mod:`campro_bench.attacks.cheap`) and
   the protector's registered analytic inverses (:mod:`campro_bench.attacks.inverses`), raw gallery;
4. ``restoration``: E5's restoration U-Net trained on (protect(x), x) of TRAIN faces; restored
   probes against a raw and against a restored gallery;
5. ``retrain``: E5's re-training of a differentiable extractor on protected TRAIN faces
   (:func:`campro_bench.experiments.whitebox.run_column`), protected gallery and probes.

Identities are split by name: EVAL = the first ``eval_identities`` identities with >=
``min_images`` images (E1's subset rule), TRAIN = the next ``train_identities`` others. Every
attacker-side choice (inverse branches, restoration and re-training data) uses TRAIN only;
:func:`check_disjoint` asserts it before anything is trained.

The verdict per protector is the worst case: the highest mean accuracy over every reported row of
rungs 1-5 (a maximum over evaluated attacks, hence an upper bound for the attacker: no row itself
is selected on EVAL identities), with its interval and the rung that reached it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pathlib import Path

import numpy as np
import pandas as pd

from ..attacks.base import Attacked, ImageAttack, build_attack, save_protector_config
from ..attacks.cheap import default_sweep
from ..attacks.inverses import build_inverses
from ..conditions import Captured, check_conditions
from ..conditions import axis as condition_axis
from ..config import option, option_like
from ..errors import CamproError, UnknownNameError
from ..io.hashing import ids_digest
from ..privacy.cache import OutcomeCache
from ..privacy.classifiers import build_classifier
from ..privacy.evaluate import (
    ProtocolConfig,
    dataset_index,
    load_embeddings,
    run_protocol,
    subset_image_ids,
)
from ..privacy.identification import FeatureSet, IdentificationResult, identify_many
from ..privacy.splits import IdentificationSplits
from ..privacy.stats import summarize
from ..privacy.threat_models import OPEN_SET_STREAM, THREAT_MODELS
from ..privacy.threats import check_threat_models, drawn_images, leakage_summary, raw_leakage_point
from ..protectors.base import Protector, build_protector
from ..registries import EXPERIMENTS
from ..training.fr_retrain import RetrainConfig
from . import audit_budget, audit_pairs, audit_report, audit_select, audit_tasks, audit_threats
from .audit_select import IdentityLeakError
from .base import ExperimentResult, RunContext
from .common import check_protector, find_protector_row
from .spec import parse_protocol
from .whitebox import E5Config, IdentitySplit, RestorationAttackConfig, RetrainSchedule, column_task

RUNGS = ("black-box", "gray-box", "cheap", "restoration", "retrain")
REFERENCE = "reference"


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheapSection:
    """``[cheap]``: the blind transforms and analytic inverses of rung 3."""

    gammas: list[float] = option(lambda: [0.5, 2.0], help="the gamma sweep of the default blind list")
    attacks: list[str] = option(list, help="[] = the default blind list; a list of attack specs replaces it")
    inverses: bool = option(True, help="apply every analytic inverse registered for the protector's name")
    models: list[str] = option(list, help="blind attacks only on these models ([] = every model)")


@dataclass(frozen=True)
class AuditRetrainSection(RetrainSchedule):
    """``[retrain]``: rung 5, E5's re-training of one differentiable extractor (a short schedule);
    ``seed`` unset = the protocol's seed."""

    epochs: int = option_like(RetrainConfig, "epochs", 2)
    extractor: str = option("facenet-casia", help="a differentiable, re-trainable extractor")
    loss: str = option_like(RetrainConfig, "loss")
    lr: float = option_like(RetrainConfig, "lr", 0.01)
    seed: int | None = option(None, ge=0, help="re-training seed; unset = the protocol's seed")
    budgets: list[float] = option(lambda: [1.0, 2.0], help="multiples of epochs, strictly increasing: one re-training "
                                  "per budget, the accuracy-versus-budget curve and convergence flags (docs/audit.md)")

    def column(self) -> dict[str, Any]:
        """E5's column for this extractor: its schedule, loss and learning rate."""
        return {"label": f"retrain {self.extractor}", "extractor": self.extractor, "loss": self.loss, "lr": self.lr,
                **self.schedule()}


@dataclass(frozen=True)
class UtilitySection:
    """``[utility]``: where person AP (E3) and PSNR (E4) are read from (relative paths: under the checkout,
    the results root, then the working folder; :func:`~.common.resolve_table_path`)."""

    e3: list[str] = option(list, help="E3 table3.csv files")
    e4: list[str] = option(list, help="E4 table4_values.csv files")
    psnr_images: int = option(20, ge=0, le=100_000, help="PSNR not in those tables: E4 on the first N images (0 = skip)")
    psnr_folder: str = option("coco-mini/val2017", help="image folder of that E4 run, under the data root")


@dataclass(frozen=True)
class AuditRestorationConfig(RestorationAttackConfig):
    """The restoration rung: E5's U-Net and optimiser; a base of 84 AdamW steps (rounded to whole passes over
    the TRAIN crops, see :meth:`RestorationAttackConfig.budget_note`) trained at 1x, 3x and 7x by default, so
    that the last budget (588 steps) is at least E5's 520."""

    steps: int = option_like(RestorationAttackConfig, "steps", 84)
    budgets: list[float] = option(lambda: [1.0, 3.0, 7.0], help="multiples of steps, strictly increasing: one "
                                  "training per budget, the accuracy-versus-budget curve and convergence flags "
                                  "(docs/audit.md)")


@dataclass(frozen=True)
class PairsSection:
    """``[pairs]``: how many leaked (scene, capture) pairs break the camera? A restoration U-Net (and, for a
    lensless camera, mask estimation) from N TRAIN images, for each N (docs/audit.md)."""

    counts: list[int] = option(list, help="numbers of leaked pairs N, strictly increasing ([] = no curve)")
    budget: float = option(1.0, gt=0.0, le=1000.0, help="the decoder's steps: this multiple of restoration.steps")


@dataclass(frozen=True)
class AuditConfig:
    """The audit protocol (``protocols/audit.toml``): data, models, the ladder's rungs and their settings."""

    protectors: list[str] = option(list, help="protector specs (the command line's SPEC arguments)")
    dataset: str = option("celeba-subset")
    models: list[str] = option(lambda: ["facenet-casia", "dlib-resnet", "sface"])
    classifiers: list[str] = option(lambda: ["nearest", "linear"])
    rungs: list[str] = option(lambda: list(RUNGS), help=f"a subset of {', '.join(RUNGS)}")
    eval_identities: int = option(40, ge=2)
    train_identities: int = option(60, ge=1)
    conditions: list[str] = option(lambda: ["colour"], help="capture conditions every protector is audited under "
                                   "(docs/conditions.md); each becomes its own PROTECTOR@CONDITION row")
    select_identities: int = option(40, ge=0, help="SELECT identities (neither EVAL nor TRAIN) on which the attack "
                                    "is chosen for the unbiased verdict; 0 = only the max-over-rows upper bound")
    threat_models: list[str] = option(lambda: list(THREAT_MODELS), help="closed-set (the headline), rank-k, "
                                      "verification, open-set: every attack row scored by each (docs/audit.md)")
    threats: audit_threats.AuditThreatConfig = option(audit_threats.AuditThreatConfig,
                                                      help="operating points of the threat models")
    min_images: int = option(2, ge=2)
    max_images_per_identity: int = option(5, ge=2)
    repeats: int = option(10, ge=1, le=1000)
    seed: int = option(0, ge=0)
    confidence: float = option(0.95, gt=0.0, lt=1.0)
    detector: str = option("mtcnn")
    batch_size: int = option(64, ge=1, le=4096)
    grid_faces: int = option(4, ge=0, le=64, help="faces in the run folder's image grid (0 = no grid)")
    linear: dict[str, Any] = option(dict, help="E1's linear classifier schedule")
    cheap: CheapSection = option(CheapSection)
    restoration: AuditRestorationConfig = option(AuditRestorationConfig)
    retrain: AuditRetrainSection = option(AuditRetrainSection)
    pairs: PairsSection = option(PairsSection)
    utility: UtilitySection = option(UtilitySection)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "AuditConfig":
        given = dict(spec)
        if isinstance(given.get("protectors"), str):
            given["protectors"] = [given["protectors"]]
        cfg = parse_protocol(cls, given, "audit")
        if not cfg.protectors:
            raise CamproError("the audit needs at least one protector spec (campro-bench audit SPEC ...)")
        bad = [r for r in cfg.rungs if r not in RUNGS]
        if bad or not cfg.rungs:
            raise UnknownNameError(f"unknown audit rung(s) {', '.join(bad)}; known rungs: {', '.join(RUNGS)}")
        check_conditions(cfg.conditions)
        check_threat_models(cfg.threat_models)
        if "closed-set" not in cfg.threat_models:
            raise CamproError("the audit's threat_models must include closed-set (its headline verdict)")
        audit_budget.check_budgets(cfg.restoration.budgets)
        audit_budget.check_budgets(cfg.retrain.budgets, "retrain.budgets")
        audit_pairs.check_counts(cfg.pairs.counts)
        unknown_models = sorted(set(cfg.cheap.models) - set(cfg.models))
        if unknown_models:
            raise CamproError(f"cheap.models {unknown_models} are not among the audit's models {cfg.models}")
        return cfg

    @property
    def cheap_attacks(self) -> list[str]:
        """The blind attack specs: the given list, or the default sweep over ``cheap.gammas``."""
        return [str(a) for a in self.cheap.attacks or default_sweep([float(g) for g in self.cheap.gammas])]

    @property
    def classifier_options(self) -> dict[str, dict[str, Any]]:
        return {"linear": dict(self.linear)} if self.linear else {}


def check_retrain(cfg: AuditConfig) -> None:
    """The re-training rung needs a differentiable (re-trainable) extractor; fail before any work."""
    if "retrain" not in cfg.rungs:
        return
    from ..training.fr_retrain import EXTRACTORS

    name = cfg.retrain.extractor
    if not name:
        raise CamproError("the retrain rung needs a differentiable face extractor: set retrain.extractor to one of "
                          f"{', '.join(EXTRACTORS.names())} (or drop 'retrain' from rungs)")
    if name not in EXTRACTORS:
        raise CamproError(f"the retrain rung needs a differentiable face extractor; '{name}' is not one "
                          f"(re-trainable extractors: {', '.join(EXTRACTORS.names())})")


# ----------------------------------------------------------------------------------------
# identity-disjoint split
# ----------------------------------------------------------------------------------------
@dataclass
class AuditSplit:
    eval_ids: list[str]
    train_ids: list[str]
    eval_names: list[str]
    train_names: list[str]


def check_disjoint(index: list[tuple[str, str]], eval_ids: list[str], train_ids: list[str]) -> None:
    """Raise :class:`IdentityLeakError` if any TRAIN image belongs to an EVAL identity."""
    name_of = dict(index)
    leaked = sorted({name_of[i] for i in eval_ids} & {name_of[i] for i in train_ids})
    if leaked:
        raise IdentityLeakError(f"attacker data holds {len(leaked)} evaluated identit(ies), e.g. {leaked[:3]}: "
                                "the audit's TRAIN and EVAL identities must be disjoint")


def split_identities(cfg: AuditConfig, index: list[tuple[str, str]]) -> AuditSplit:
    """EVAL: E1's subset (first ``eval_identities`` by name, capped images); TRAIN: the next
    ``train_identities`` other identities by name, capped the same way."""
    eval_ids = subset_image_ids(index, cfg.min_images, cfg.eval_identities, cfg.max_images_per_identity, cfg.seed)
    chosen = set(eval_ids)
    eval_names = sorted({n for i, n in index if i in chosen})
    others = [(i, n) for i, n in index if n not in set(eval_names)]
    train_ids = subset_image_ids(others, cfg.min_images, cfg.train_identities, cfg.max_images_per_identity, cfg.seed)
    if not train_ids:
        raise CamproError(f"no TRAIN identities left in {cfg.dataset} after {cfg.eval_identities} EVAL identities")
    kept = set(train_ids)
    check_disjoint(index, eval_ids, train_ids)
    return AuditSplit(eval_ids, train_ids, eval_names, sorted({n for i, n in index if i in kept}))


# ----------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------
def _row(cfg: AuditConfig, protector: str, rung: str, attack: str, model: str, classifier: str, gallery: str,
         res: IdentificationResult | np.ndarray, chance: float | None = None, detect: float = float("nan")) -> dict[str, Any]:
    accuracies = res.accuracies if isinstance(res, IdentificationResult) else np.asarray(res)
    chance = res.chance if isinstance(res, IdentificationResult) else float(chance or np.nan)
    if isinstance(res, IdentificationResult):
        detect = float(res.probe_detected.mean())
    s = summarize(accuracies, cfg.confidence)
    return {"protector": protector, "rung": rung, "attack": attack, "model": model, "classifier": classifier,
            "gallery": gallery, "accuracy_mean": s.mean, "accuracy_std": s.std, "ci_low": s.ci_low,
            "ci_high": s.ci_high, "repeats": s.repeats, "chance": chance, "x_chance": s.mean / chance if chance else np.nan,
            "probe_detect_rate": detect}


@dataclass
class Evaluator:
    """Embeds probe variants of the EVAL images and scores them on E1's draws."""

    cfg: AuditConfig
    ctx: RunContext
    splits: IdentificationSplits
    cache: OutcomeCache

    def features(self, model: str, protector: str | Protector) -> FeatureSet:
        emb = load_embeddings(self.cfg.dataset, model, protector, pipeline="paper", detector=self.cfg.detector,
                              data_root=self.ctx.data_root_option, cache_dir=self.ctx.cache_dir,
                              models_dir=self.ctx.models_dir, device=str(self.ctx.device),
                              min_images_per_identity=self.cfg.min_images, batch_size=self.cfg.batch_size,
                              progress=self.ctx.progress, image_ids=self.split_ids)
        return FeatureSet(np.asarray(emb.embeddings, np.float32), np.asarray(emb.detected, bool))

    split_ids: list[str] = field(default_factory=list)
    scorer: audit_threats.ThreatScorer = field(init=False)

    def __post_init__(self) -> None:
        self.scorer = audit_threats.ThreatScorer(self.cfg.threat_models, self.cfg.threats, self.cfg.classifiers,
                                                 self.cfg.classifier_options, self.splits, self.cfg.seed,
                                                 self.cfg.confidence, self.ctx.device)

    def threat(self, spec: str, rung: str, attack: str, model: str, gallery_label: str, gallery: FeatureSet,
               probes: FeatureSet) -> None:
        """Score ``probes`` by the threat models beyond closed-set top-1 (rows in ``scorer.rows``)."""
        if self.scorer.active:
            self.scorer.score(spec, rung, attack, model, gallery_label, gallery, probes, self.features(model, "raw"))

    def identify(self, classifier: str, gallery: FeatureSet, probes: dict[str, FeatureSet]) -> dict[str, IdentificationResult]:
        clf = build_classifier(classifier, self.cfg.classifier_options.get(classifier))
        return identify_many(clf, gallery, probes, self.splits, device=self.ctx.device, cache=self.cache)


def black_and_gray_rows(cfg: AuditConfig, spec: str, ctx: RunContext) -> tuple[list[dict[str, Any]], IdentificationSplits]:
    """Rungs 1-2 (and the raw reference): the E1 protocol itself."""
    galleries = ["raw", "protected"] if "gray-box" in cfg.rungs else ["raw"]  # raw: always (the reference row)
    pcfg = ProtocolConfig(datasets=[cfg.dataset], models=cfg.models, protectors=["raw", spec],
                          classifiers=cfg.classifiers, galleries=galleries, repeats=cfg.repeats, seed=cfg.seed,
                          pipeline="paper", detector=cfg.detector, min_images=cfg.min_images,
                          max_identities=cfg.eval_identities, max_images_per_identity=cfg.max_images_per_identity,
                          batch_size=cfg.batch_size, confidence=cfg.confidence,
                          classifier_options=cfg.classifier_options)
    outcome = run_protocol(pcfg, ctx)
    rows = []
    for (_, image_type, clf, gallery, model), res in outcome.results.items():
        if image_type == "raw":
            rows.append(_row(cfg, spec, REFERENCE, "raw probes (no protector)", model, clf, "raw", res))
        elif gallery == "raw" and "black-box" in cfg.rungs:
            rows.append(_row(cfg, spec, "black-box", "protected probes", model, clf, "raw", res))
        elif gallery == "protected" and "gray-box" in cfg.rungs:
            rows.append(_row(cfg, spec, "gray-box", "protected probes", model, clf, "protected", res))
    return rows, outcome.splits[cfg.dataset]


def base_threats(cfg: AuditConfig, spec: str, ev: Evaluator) -> None:
    """The threat-model rows of the raw reference and of rungs 1-2 (their features, on ``ev``'s draws)."""
    if not ev.scorer.active:
        return
    for model in cfg.models:
        raw, prot = ev.features(model, "raw"), ev.features(model, spec)
        ev.threat(spec, REFERENCE, "raw probes (no protector)", model, "raw", raw, raw)
        if "black-box" in cfg.rungs:
            ev.threat(spec, "black-box", "protected probes", model, "raw", raw, prot)
        if "gray-box" in cfg.rungs:
            ev.threat(spec, "gray-box", "protected probes", model, "protected", prot, prot)


def train_crops(cfg: AuditConfig, split: AuditSplit, alignment: str, ctx: RunContext) -> np.ndarray:
    """Raw aligned crops of the TRAIN identities (the attacker's own faces)."""
    from ..training.restoration import face_crop_images

    data = face_crop_images(cfg.dataset, split.train_ids, [alignment], detector=cfg.detector,
                            data_root=ctx.data_root_option, cache_dir=ctx.cache_dir, device=str(ctx.device),
                            progress=ctx.progress)
    return np.stack(data.images)


def cheap_attacks(cfg: AuditConfig, protector: Protector, fit_crops: np.ndarray | None) -> tuple[list[ImageAttack], list[ImageAttack]]:
    """The blind attacks and the protector's analytic inverses (fitted on TRAIN crops). Under a capture
    condition, the inverses of the bare protector (the attacker knows its parameters, and a condition
    before it leaves its output as invertible as ever)."""
    inverted = protector.base if isinstance(protector, Captured) else protector
    return [build_attack(a) for a in cfg.cheap_attacks], build_inverses(inverted, fit_crops) if cfg.cheap.inverses else []


def cheap_rows(cfg: AuditConfig, spec: str, protector: Protector, blind: list[ImageAttack],
               inverses: list[ImageAttack], ev: Evaluator, ctx: RunContext) -> list[dict[str, Any]]:
    """Rung 3: blind attacks on ``cheap.models`` (default all), analytic inverses on every model."""
    rows = []
    for model in cfg.models:
        raw = ev.features(model, "raw")
        attacks = (blind if not cfg.cheap.models or model in cfg.cheap.models else []) + inverses
        if not attacks:
            continue
        with ctx.manifest.timer("rung/cheap"):
            probes = {a.spec(): ev.features(model, Attacked(protector, a, a.spec())) for a in attacks}
            for name, features in probes.items():
                ev.threat(spec, "cheap", name, model, "raw", raw, features)
            for clf in cfg.classifiers:
                for name, res in ev.identify(clf, raw, probes).items():
                    rows.append(_row(cfg, spec, "cheap", name, model, clf, "raw", res))
    return rows


def restoration_task(ctx: RunContext, cfg: AuditConfig, spec: str, split: AuditSplit,
                     budget: float = 1.0) -> dict[str, Any]:
    """Rung 4's training at one budget, one executor task: E5's restoration network for the protector
    ``spec`` (built in the task), trained on TRAIN faces only. The weights path is relative to the cache.
    A budget continues the cached training of the schedule's longest smaller budget when there is one
    (same weights as from scratch; the local executor runs the budgets in increasing order)."""
    from ..recognizers.base import contract_of
    from ..training.restoration import face_crop_images, restoration_network

    base, cfg = cfg, audit_budget.budget_config(cfg, budget)
    alignments = list(dict.fromkeys(contract_of(m).alignment for m in cfg.models))
    data = face_crop_images(cfg.dataset, split.train_ids, alignments, detector=cfg.detector,
                            data_root=ctx.data_root_option, cache_dir=ctx.cache_dir, device=str(ctx.device),
                            progress=ctx.progress)
    key = {"kind": "faces", "dataset": cfg.dataset, "train": ids_digest(split.train_ids), "alignments": alignments,
           "detector": cfg.detector}
    config = cfg.restoration.unet(cfg.seed, len(data))
    shorter = [audit_budget.budget_config(base, b).restoration.epochs_for(len(data))
               for b in base.restoration.budgets if b < budget]
    with ctx.manifest.timer("rung/restoration/train"):
        weights, report = restoration_network(data, check_protector(spec), config, ctx.cache_dir, key,
                                              device=str(ctx.device), progress=ctx.progress, log=ctx.log,
                                              shorter_epochs=shorter)
    info = {"weights_digest": report.get("weights_digest"), "cached": report.get("cached"),
            "resumed_from": report.get("resumed_from"),
            "history": report.get("history"), "config": config.to_dict(), "budget": cfg.restoration.budget(len(data)),
            "train_crops": len(data)}
    return {"weights": str(weights.relative_to(ctx.cache_dir)), "info": info}


def restoration_rows(cfg: AuditConfig, spec: str, protector: Protector, trained: list[tuple[float, dict[str, Any]]],
                     ev: Evaluator, ctx: RunContext) -> tuple[list[dict[str, Any]], Protector | None, dict[str, Any]]:
    """Rung 4: probes restored by the network of :func:`restoration_task` for every budget (in the
    cache shared with the tasks), against a raw and against a restored gallery. A training whose loss
    did not fall is not scored (:func:`audit_budget.training_status`); the info's ``curve`` holds one
    entry per (budget, model, classifier, gallery) for :func:`audit_budget.curve`, its ``leakage``
    the identity leakage of the protected and the restored faces (cosine to the raw embedding, share
    above the raw verification threshold at FAR 1e-3)."""
    base = save_protector_config(protector, ctx.cache_dir / "e5")
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    restored = None
    info: dict[str, Any] = {}
    per_budget: dict[str, dict[str, Any]] = {}
    threats = cfg.threats
    points, leaks = {}, []
    for model in cfg.models:
        raw = ev.features(model, "raw")
        points[model] = raw_leakage_point(raw, ev.splits, threats.leakage_far, threats.min_false_accepts)
        leaks.append({"protector": spec, "model": model, "faces": "protected",
                      **leakage_summary(raw, ev.features(model, spec), drawn_images(ev.splits), points[model],
                                        threats.leakage_far)})
    for budget, outcome in trained:
        steps = audit_budget.steps_for(cfg.restoration.steps, budget)
        status = audit_budget.training_status(outcome["info"].get("history") or [])
        info = {**outcome["info"], "status": status}
        per_budget[f"{budget:g}x"] = training_record(outcome["info"], status)
        label = "restored probes" if len(trained) == 1 else f"restored probes ({budget:g}x, {steps} steps)"
        history = outcome["info"].get("history") or [{}]
        trained_steps = (outcome["info"].get("budget") or {}).get("steps", steps)  # whole passes: may differ
        common = {"protector": spec, "rung": "restoration", "attack": label, "budget": budget, "steps": trained_steps,
                  "steps_asked": steps, "unit": "AdamW steps", "status": status,
                  "final_loss": history[-1].get("loss", float("nan"))}
        if status == audit_budget.FAILED:
            ctx.log(f"[yellow]{spec}: restoration at {budget:g}x ({steps} steps) failed: its loss did not fall; "
                    "not scored[/]")
            curve += [{**common, "model": m, "series": m, "classifier": c, "gallery": g, "accuracy_mean": float("nan"),
                       "ci_low": float("nan"), "ci_high": float("nan")}
                      for m in cfg.models for c in cfg.classifiers for g in ("raw", "restored")]
            continue
        restored = build_protector(f"restored:base={base},weights={ctx.cache_dir / outcome['weights']}")
        faces = "restored" if len(trained) == 1 else f"restored ({budget:g}x)"
        with ctx.manifest.timer("rung/restoration/identify"):
            for model in cfg.models:
                raw, rest = ev.features(model, "raw"), ev.features(model, restored)
                leaks.append({"protector": spec, "model": model, "faces": faces,
                              **leakage_summary(raw, rest, drawn_images(ev.splits), points[model],
                                                threats.leakage_far)})
                for gallery, reference in (("raw", raw), ("restored", rest)):
                    ev.threat(spec, "restoration", label, model, gallery, reference, rest)
                    for clf in cfg.classifiers:
                        row = _row(cfg, spec, "restoration", label, model, clf, gallery,
                                   ev.identify(clf, reference, {"r": rest})["r"])
                        rows.append(row)
                        curve.append({**common, "model": model, "series": model, "classifier": clf, "gallery": gallery,
                                      **{k: row[k] for k in ("accuracy_mean", "ci_low", "ci_high")}})
    return rows, restored, {**info, "budgets": per_budget, "curve": curve, "leakage": leaks}


def select_rows(cfg: AuditConfig, spec: str, protector: Protector, select: audit_select.SelectSplit,
                split: AuditSplit, blind: list[ImageAttack], inverses: list[ImageAttack], trained: dict[tuple[str, str], Any],
                ctx: RunContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every attack row of rungs 1-5 again, scored on SELECT identities (to choose the attack on), and
    their threat-model rows. The trained rungs reuse their TRAIN-only training (re-training is re-run
    with the same data and seed, as E5 embeds its evaluation identities inside the training task)."""
    scfg = dataclasses.replace(cfg, eval_identities=len(select.names))
    ev = Evaluator(scfg, ctx, select.splits, OutcomeCache(ctx.cache_dir / "identification"), select.ids)
    base_threats(cfg, spec, ev)
    rows = []
    for model in cfg.models:
        raw, prot = ev.features(model, "raw"), ev.features(model, spec)
        for clf in cfg.classifiers:
            rows.append(_row(cfg, spec, REFERENCE, "raw probes (no protector)", model, clf, "raw",
                             ev.identify(clf, raw, {"r": raw})["r"]))
            if "black-box" in cfg.rungs:
                rows.append(_row(cfg, spec, "black-box", "protected probes", model, clf, "raw",
                                 ev.identify(clf, raw, {"p": prot})["p"]))
            if "gray-box" in cfg.rungs:
                rows.append(_row(cfg, spec, "gray-box", "protected probes", model, clf, "protected",
                                 ev.identify(clf, prot, {"p": prot})["p"]))
    if "cheap" in cfg.rungs:
        rows += cheap_rows(cfg, spec, protector, blind, inverses, ev, ctx)
    if "restoration" in cfg.rungs:
        rows += restoration_rows(cfg, spec, protector, trained[(spec, "restoration")], ev, ctx)[0]
    if "retrain" in cfg.rungs:
        on_select = AuditSplit(select.ids, split.train_ids, select.names, split.train_names)
        again = [(budget, retrain_task(ctx, scfg, spec, on_select, budget)) for budget in cfg.retrain.budgets]
        rows += retrain_rows(scfg, spec, again, on_select, ctx)[0]
    return rows, ev.scorer.rows


def retrain_config(cfg: AuditConfig, spec: str, split: AuditSplit) -> tuple[E5Config, int, IdentitySplit]:
    """Rung 5 as E5 sees it: its configuration (attacking ``spec``), train seed and identity split."""
    seed = cfg.seed if cfg.retrain.seed is None else cfg.retrain.seed
    e5 = E5Config.from_spec({"dataset": cfg.dataset, "protector": spec, "eval_identities": cfg.eval_identities,
                             "min_images": cfg.min_images, "repeats": cfg.repeats, "seed": cfg.seed,
                             "classifier": "nearest", "detector": cfg.detector, "batch_size": cfg.batch_size,
                             "retrain": {"columns": [cfg.retrain.column()], "train_seeds": [seed]}})
    return e5, seed, IdentitySplit(split.eval_ids, split.train_ids, split.eval_names, len(split.train_names))


def retrain_task(ctx: RunContext, cfg: AuditConfig, spec: str, split: AuditSplit, budget: float = 1.0) -> dict[str, Any]:
    """Rung 5's training at one budget, one executor task: E5's re-training column against ``spec``."""
    e5, seed, e5split = retrain_config(audit_budget.budget_config(cfg, budget, "retrain"), spec, split)
    with ctx.manifest.timer("rung/retrain"):
        return column_task(ctx, e5, e5.columns[0], seed, e5split, True)


TRAINING_TASKS = {"restoration": restoration_task, "retrain": retrain_task, "pairs": audit_pairs.decoder_task}
"""The trainings of the audit, and their executor task ``(ctx, cfg, spec, split, amount)``: the
restoration and re-training rungs at one budget, the decoder from N leaked pairs."""


def training_task(ctx: RunContext, rung: str, cfg: AuditConfig, spec: str, split: AuditSplit,
                  amount: float = 1.0) -> dict[str, Any]:
    return TRAINING_TASKS[rung](ctx, cfg, spec, split, amount)


def training_jobs(cfg: AuditConfig, specs: list[str]) -> list[tuple[str, str, float]]:
    """``(spec, training, amount)`` of every training: each budget of each trained rung, each N of the
    leaked-pairs curve."""
    amounts = {"restoration": cfg.restoration.budgets if "restoration" in cfg.rungs else [],
               "retrain": cfg.retrain.budgets if "retrain" in cfg.rungs else [],
               "pairs": [float(n) for n in cfg.pairs.counts]}
    return [(spec, rung, amount) for spec in specs for rung in TRAINING_TASKS for amount in amounts[rung]]


def trainings(cfg: AuditConfig, specs: list[str], split: AuditSplit, select: audit_select.SelectSplit | None,
              ctx: RunContext) -> dict[tuple[str, str], Any]:
    """The expensive, independent part of rungs 4-5 (and the leaked-pairs decoders) for every
    protector, as tasks of the run's executor beside the reference embeddings
    (:func:`audit_tasks.prepare`): {(spec, training): [(amount, outcome), ...]}. The rows are built
    afterwards, protector by protector."""
    jobs = training_jobs(cfg, specs)
    done = audit_tasks.prepare(cfg, jobs, training_task, split, select, ctx)
    out: dict[tuple[str, str], Any] = {}
    for (spec, rung, amount), result in zip(jobs, done):
        out.setdefault((spec, rung), []).append((amount, result))
    return out


def retrain_rows(cfg: AuditConfig, spec: str, trained: list[tuple[float, dict[str, Any]]], split: AuditSplit,
                 ctx: RunContext | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rung 5: one row per budget of the re-training outcomes of :func:`retrain_task`; a training whose
    loss did not fall is not scored (:func:`audit_budget.training_status`). The info's ``curve`` holds
    one entry per budget for :func:`audit_budget.curve`."""
    rows, curve, info, per_budget = [], [], {}, {}
    for budget, out in trained:
        e5 = retrain_config(audit_budget.budget_config(cfg, budget, "retrain"), spec, split)[0]
        column = e5.columns[0].config
        history = out["info"].get("history") or []
        ran = out["info"].get("train_images", column.batch_size) // column.batch_size  # whole batches per epoch
        status = audit_budget.training_status(history, "train_loss") if ran >= 1 else audit_budget.FAILED
        label = f"{cfg.retrain.extractor} re-trained ({column.loss}, {column.epochs} ep)"
        entry = {"protector": spec, "rung": "retrain", "attack": "protected probes", "model": label,
                 "series": cfg.retrain.extractor, "classifier": "nearest", "gallery": "protected", "budget": budget,
                 "steps": column.epochs, "unit": "epochs", "status": status,
                 "final_loss": (history or [{}])[-1].get("train_loss", float("nan"))}
        info = {"config": out["config"], "cached": out["cached"], "history": history, "status": status}
        per_budget[f"{budget:g}x"] = training_record(out["info"], status)
        if status == audit_budget.FAILED:
            if ctx is not None:
                ctx.log(f"[yellow]{spec}: re-training at {budget:g}x ({column.epochs} epochs) failed: its loss did not "
                        "fall; not scored[/]")
            curve.append({**entry, "accuracy_mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")})
            continue
        row = _row(cfg, spec, "retrain", "protected probes", label, "nearest", "protected", out["accuracies"],
                   out["chance"])
        rows.append(row)
        curve.append({**entry, **{k: row[k] for k in ("accuracy_mean", "ci_low", "ci_high")}})
    return rows, {**info, "budgets": per_budget, "curve": curve}


def training_record(info: dict[str, Any], status: str) -> dict[str, Any]:
    """What the manifest keeps of one budget's training: its status and loss history (the top-level
    ``history`` of a rung's notes is its last budget's; this keeps every budget's, so a failed or
    flat curve can be read afterwards, e.g. by ``scripts/audit_training_history.py``)."""
    return {"status": status, "history": info.get("history") or []}


@dataclass
class ProtectorAudit:
    """What the audit of one protector (x condition) gives the run: its rows, SELECT rows, budget
    curve, leaked-pairs rows, threat-model rows (EVAL and SELECT) and calibration, manifest notes
    and image grid (plain data: it may come back from another process)."""

    rows: list[dict[str, Any]]
    chosen_on: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    threat_eval: list[dict[str, Any]]
    threat_select: list[dict[str, Any]]
    calibration: dict[str, Any]
    info: dict[str, Any]
    grid: bytes


def audit_protector(ctx: RunContext, cfg: AuditConfig, spec_text: str, split: AuditSplit,
                    select: audit_select.SelectSplit | None, fit_crops: np.ndarray | None,
                    trained: dict[tuple[str, str], Any]) -> ProtectorAudit:
    """Rungs 1-5 (and SELECT's rows) of one protector spec, its trainings ``trained`` done."""
    protector = check_protector(spec_text)
    ctx.log(f"[bold]audit {spec_text}[/]")
    info: dict[str, Any] = {"fingerprint": protector.fingerprint()}
    chosen_on: list[dict[str, Any]] = []
    threat_select: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    with ctx.manifest.timer("rung/black-gray-box"):
        mine, splits = black_and_gray_rows(cfg, spec_text, ctx)
    ev = Evaluator(cfg, ctx, splits, OutcomeCache(ctx.cache_dir / "identification"), split.eval_ids)
    base_threats(cfg, spec_text, ev)
    restored = None
    attacks: list[ImageAttack] = []
    blind, inverses = [], []
    if "cheap" in cfg.rungs:
        blind, inverses = cheap_attacks(cfg, protector, fit_crops)
        attacks = blind + inverses
        info["inverses"] = {a.spec(): getattr(a, "selection", {}) for a in inverses}
        mine += cheap_rows(cfg, spec_text, protector, blind, inverses, ev, ctx)
    if "restoration" in cfg.rungs:
        more, restored, info["restoration"] = restoration_rows(cfg, spec_text, protector,
                                                               trained[(spec_text, "restoration")], ev, ctx)
        curve += info["restoration"].pop("curve")
        mine += more
    if "retrain" in cfg.rungs:
        more, info["retrain"] = retrain_rows(cfg, spec_text, trained[(spec_text, "retrain")], split, ctx)
        curve += info["retrain"].pop("curve")
        mine += more
    if cfg.pairs.counts:
        pairs += audit_pairs.pair_rows(cfg, spec_text, protector, trained.get((spec_text, "pairs"), []), split, ev, ctx)
    if select is not None:
        with ctx.manifest.timer("select"):
            more, more_threats = select_rows(cfg, spec_text, protector, select, split, blind, inverses, trained, ctx)
            chosen_on += more
            threat_select += more_threats
    grid = audit_report.image_grid(cfg, split, protector, restored, attacks, pd.DataFrame(mine), ctx,
                                   audit_report.rung_warnings(info))
    return ProtectorAudit(mine, chosen_on, curve, pairs, ev.scorer.rows, threat_select, ev.scorer.manifest(), info, grid)


# ----------------------------------------------------------------------------------------
# verdict and utility
# ----------------------------------------------------------------------------------------
def verdict(long: pd.DataFrame) -> pd.DataFrame:
    """Per protector: the worst case (highest mean over rungs 1-5) with its interval and rung."""
    out = []
    for protector, rows in long.groupby("protector", sort=False):
        attacks = rows[rows["rung"] != REFERENCE]
        ref = rows[rows["rung"] == REFERENCE]
        best = attacks.loc[attacks["accuracy_mean"].idxmax()]
        blackbox = attacks[attacks["rung"] == "black-box"]["accuracy_mean"]
        out.append({
            "protector": protector, "worst_case_top1": best["accuracy_mean"], "ci_low": best["ci_low"],
            "ci_high": best["ci_high"], "x_chance": best["x_chance"], "rung": best["rung"], "attack": best["attack"],
            "model": best["model"], "classifier": best["classifier"], "gallery": best["gallery"],
            "black_box_best": float(blackbox.max()) if len(blackbox) else np.nan,
            "raw_best": float(ref["accuracy_mean"].max()) if len(ref) else np.nan,
            "chance": best["chance"],
        })
    return pd.DataFrame(out)


def _lookup(paths: list[str], spec: str, column: str, reference_raw: bool,
            results_root: Path | None = None) -> tuple[float, str]:
    row, source = find_protector_row(paths, spec, [column], reference_raw, results_root)
    return (float("nan"), "") if row is None else (float(row[column]), source)


def utility(cfg: AuditConfig, specs: list[str], ctx: RunContext) -> pd.DataFrame:
    """Person AP (E3) and PSNR (E4) kept by each protector: read from earlier E3/E4 tables
    (``utility.e3`` / ``utility.e4`` paths); a PSNR not found there is computed with E4 on
    ``utility.psnr_images`` images; an AP not found stays empty (E3 fine-tunes a detector)."""
    run_e4 = EXPERIMENTS.get("e4")  # the E4 experiment itself, through the registry
    e3, e4 = cfg.utility.e3, cfg.utility.e4
    rows = []
    for spec in specs:
        ap, ap_source = _lookup(e3, spec, "AP", False, ctx.results_root)
        psnr, psnr_source = _lookup(e4, spec, "psnr_mean", True, ctx.results_root)
        if np.isnan(psnr) and cfg.utility.psnr_images > 0:
            limit = cfg.utility.psnr_images
            result = run_e4({"images": cfg.utility.psnr_folder, "limit": limit,
                             "rows": [{"protector": spec}]}, ctx)
            psnr = float(result.tables["table4_values"]["psnr_mean"].iloc[0])
            psnr_source = f"computed now (E4, first {limit} images)"
        rows.append({"protector": spec, "person_AP": ap, "AP_source": ap_source or "not found (run e3)",
                     "PSNR_dB": psnr, "PSNR_source": psnr_source or "not found"})
    return pd.DataFrame(rows)


def refresh_utility(summary: pd.DataFrame, e3: list[str], e4: list[str]) -> pd.DataFrame:
    """``summary`` with person AP and PSNR read again from the E3/E4 tables ``e3``/``e4`` (paths relative
    to the working folder), as :func:`utility` reads them: for a summary written before a table was
    rerun or added. A PSNR the audit computed itself (its source says so) keeps its value and source."""
    out = summary.copy()
    for n, spec in enumerate(out["protector"]):
        ap, ap_source = _lookup(e3, spec, "AP", False)
        out.loc[n, ["person_AP", "AP_source"]] = [ap, ap_source or "not found (run e3)"]
        if str(out.loc[n, "PSNR_source"]).startswith("computed now"):
            continue
        psnr, psnr_source = _lookup(e4, spec, "psnr_mean", True)
        out.loc[n, ["PSNR_dB", "PSNR_source"]] = [psnr, psnr_source or "not found"]
    return out


# ----------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------
@EXPERIMENTS.register("audit", protocol="audit", description="worst-case privacy audit: attacker ladder per protector",
                      extra_keys=("restoration.seed", "retrain.seed"))
def run_audit(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    cfg = AuditConfig.from_spec(spec)
    conditions = condition_axis.expand(cfg.protectors, check_conditions(cfg.conditions))
    cfg = dataclasses.replace(cfg, protectors=conditions.specs)  # default ["colour"]: unchanged
    if conditions.labelled:
        ctx.manifest.notes["conditions"] = conditions.manifest()
    protectors = {s: check_protector(s) for s in cfg.protectors}  # bad input fails before any work
    for name in cfg.classifiers:
        build_classifier(name, cfg.classifier_options.get(name))
    for a in cfg.cheap_attacks:
        build_attack(a)
    check_retrain(cfg)
    index = dataset_index(cfg.dataset, ctx.data_root_option)
    split = split_identities(cfg, index)
    ctx.manifest.data["identity_split"] = {
        "rule": (f"EVAL = first {cfg.eval_identities} identities by name with >= {cfg.min_images} images; TRAIN = the "
                 f"next {cfg.train_identities} other identities; <= {cfg.max_images_per_identity} images each"),
        "eval_images": len(split.eval_ids), "eval_identities": len(split.eval_names),
        "eval_ids_sha": ids_digest(split.eval_ids), "train_images": len(split.train_ids),
        "train_identities": len(split.train_names), "train_ids_sha": ids_digest(split.train_ids),
        "disjoint": True}
    select = None
    if cfg.select_identities:  # before anything is trained: SELECT, TRAIN and EVAL share no identity
        select = audit_select.select_split(index, split.eval_names + split.train_names, cfg.select_identities,
                                           cfg.min_images, cfg.max_images_per_identity, cfg.repeats, cfg.seed)
        audit_select.check_disjoint_sets(index, {"EVAL": split.eval_ids, "TRAIN": split.train_ids,
                                                 "SELECT": select.ids})
        ctx.manifest.data["identity_split"].update({"rule_select": (
            f"SELECT = the first {cfg.select_identities} identities by name with >= {cfg.min_images} images that are "
            "neither EVAL nor TRAIN"), **select.manifest()})
    ctx.manifest.seeds.update({"splits": list(range(cfg.seed, cfg.seed + cfg.repeats))})
    if cfg.pairs.counts:  # the leaked pairs: the first N TRAIN images of numpy.random.default_rng(these words)
        ctx.manifest.seeds["pairs_order"] = [cfg.seed, audit_pairs.PAIRS_STREAM]
    if "open-set" in cfg.threat_models:  # watch-list of draw r: numpy.random.default_rng([seed + r, stream])
        ctx.manifest.seeds["open_set_watch_lists"] = {"seeds": list(range(cfg.seed, cfg.seed + cfg.repeats)),
                                                      "stream": OPEN_SET_STREAM}
    from ..recognizers.base import contract_of

    fit_crops = None
    if "cheap" in cfg.rungs and cfg.cheap.inverses:
        fit_crops = train_crops(cfg, split, contract_of(cfg.models[0]).alignment, ctx)
    trained = trainings(cfg, list(protectors), split, select, ctx)  # rungs 4-5's trainings, all protectors at once
    rows: list[dict[str, Any]] = []
    chosen_on: list[dict[str, Any]] = []
    threat_eval: list[dict[str, Any]] = []
    threat_select: list[dict[str, Any]] = []
    calibration: dict[str, Any] = {}
    pairs: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    grids: dict[str, bytes] = {}
    for spec_text, one in audit_tasks.audit_protectors(audit_protector, cfg, list(protectors), split, select, fit_crops,
                                                       trained, ctx):  # one task per protector x condition
        rows += one.rows
        chosen_on += one.chosen_on
        curve += one.curve
        pairs += one.pairs
        threat_eval += one.threat_eval
        threat_select += one.threat_select
        calibration[spec_text] = one.calibration
        notes[spec_text] = one.info
        grids[spec_text] = one.grid
    ctx.manifest.notes["audit"] = notes
    if any(calibration.values()):
        ctx.manifest.notes["threat_calibration"] = calibration
    long = pd.DataFrame(rows)
    summary = verdict(long)
    tables = {"audit": long}
    if select is not None:
        tables["select"] = pd.DataFrame(chosen_on)
        summary = audit_select.unbiased_verdict(long, tables["select"]).merge(summary, on="protector", how="left")
    if curve:
        tables["budget"] = audit_budget.curve(curve, tables.get("select"))
    if pairs:
        tables["pairs"] = pd.DataFrame(pairs)
    threat_verdict = None
    if threat_eval:  # the verdict per threat model, closed-set top-1 first
        tables["threats"] = pd.DataFrame(threat_eval)
        if threat_select:
            tables["select_threats"] = pd.DataFrame(threat_select)
        on_select = (pd.concat([audit_threats.closed_set_rows(tables["select"]), tables["select_threats"]],
                               ignore_index=True) if threat_select else None)
        threat_verdict = audit_threats.threat_verdict(
            pd.concat([audit_threats.closed_set_rows(long), tables["threats"]], ignore_index=True), on_select)
        tables["threat_verdict"] = audit_threats.over_conditions(threat_verdict, conditions)
    summary = summary.merge(utility(cfg, cfg.protectors, ctx), on="protector", how="left")
    tables["summary"] = audit_select.over_conditions(summary, conditions)
    leakage = [r for n in notes.values() for r in n.get("restoration", {}).get("leakage", [])]
    if leakage:
        tables["leakage"] = pd.DataFrame(leakage)
    figures, files = audit_report.reports(cfg, long, summary, grids, split, notes, tables.get("budget"),
                                          threat_verdict, tables.get("pairs"))
    crops = {notes[s]["restoration"]["budget"]["crops"] for s in notes if "budget" in notes[s].get("restoration", {})}
    budget = [cfg.restoration.budget_note(c) for c in sorted(crops)]
    return ExperimentResult(tables=tables, figures=figures,
                            notes="\n".join([audit_report.summary_notes(cfg, split, notes), *(f"- {b}" for b in budget)]),
                            extra_files=files)


"""E5 (paper Table VII): white-box adaptive attacks on CamPro — model re-training and image restoration.

The attacker knows the ISP parameters (spec key ``isp``). The face dataset's identities are split
by name: the first ``eval_identities`` identities (sorted by name, with >= ``min_images`` images)
are EVAL identities, every other identity is a TRAIN identity. Nothing of an EVAL identity is ever
trained on.

* Re-training (columns such as Finetune-Softmax ... Scratch-ArcFace): a face extractor
  (:mod:`campro_bench.training.fr_retrain`) is trained on the *protected* aligned crops of the
  TRAIN identities ("CelebA-P"), then closed-set identification runs on the EVAL identities with
  gallery and probes both protected (the attacker enrols protected images). The accuracy reported
  is the one after the last epoch. With ``eval_every_epoch`` the EVAL accuracy after each epoch is
  also recorded, in a separate diagnostic table (``e5_epochs``), never used to pick a model.
* Restoration: a U-Net trained with the plain L1 of Eq. 7 to invert the ISP
  (:mod:`campro_bench.training.restoration`); restored EVAL probes are matched against a raw
  gallery by every offline recogniser. The same :func:`~campro_bench.privacy.evaluate.run_protocol`
  call gives the context columns: raw accuracy, captured probes against a raw gallery (Table I) and
  against a protected gallery (re-enrolment, Sec. VII-B).

Splits, classifiers and summaries are the E1 protocol's (:mod:`campro_bench.privacy`): the same
``repeats`` gallery/probe draws (seeds ``seed .. seed + repeats - 1``) serve every column.
Trained things are cached under ``<cache>/e5/`` (EVAL embeddings + history of each re-training,
restoration weights), keyed by everything that determines them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import CamproError
from ..io.hashing import ids_digest
from ..privacy import evaluate
from ..privacy.evaluate import ProtocolConfig, run_protocol, subset_image_ids
from ..privacy.stats import summarize
from ..registries import EXPERIMENTS
from ..training.fr_retrain import EXTRACTORS
from ..training.restoration import (
    face_crop_images,
    isp_file,
    restoration_network,
    restoration_spec,
    scene_training_images,
)
from .base import ExperimentResult, RunContext
from .common import check_compare, paper_table
from .tasks import Task, run_tasks
from .whitebox import E5Config, IdentitySplit, attacked_protector, column_task

RESTORATION = "Restoration"
CONTEXT_COLUMNS = {("raw", "raw"): "Raw", ("captured", "raw"): "Captured", ("captured", "protected"): "Captured, re-enrolled"}


# ----------------------------------------------------------------------------------------
# identity split
# ----------------------------------------------------------------------------------------
def split_identities(cfg: E5Config, ctx: RunContext) -> IdentitySplit:
    """EVAL: the first ``eval_identities`` identities by name (the E1 protocol's subset rule);
    TRAIN: every other identity (the first ``max_train_identities`` of them by name, if > 0)."""
    index = evaluate.dataset_index(cfg.dataset, ctx.data_root_option)  # looked up per call (tests replace it)
    eval_ids = subset_image_ids(index, cfg.min_images, cfg.eval_identities)
    chosen = set(eval_ids)
    eval_names = sorted({name for image_id, name in index if image_id in chosen})
    train_names = sorted({name for _, name in index} - set(eval_names))
    if cfg.max_train_identities > 0:
        train_names = train_names[: cfg.max_train_identities]
    kept = set(train_names)
    train_ids = [image_id for image_id, name in index if name in kept]
    if not train_ids:
        raise CamproError(f"no TRAIN identities left in {cfg.dataset} after {cfg.eval_identities} EVAL identities")
    return IdentitySplit(eval_ids, train_ids, eval_names, len(train_names))


# ----------------------------------------------------------------------------------------
# restoration + context (one run_protocol call)
# ----------------------------------------------------------------------------------------
def restoration_task(ctx: RunContext, cfg: E5Config, split: IdentitySplit) -> dict[str, Any]:
    """The restoration U-Net, one executor task: trained (or read from the cache) on TRAIN faces or
    scenes against the attacked protector (built in the task); the weights path is relative to the cache."""
    from ..recognizers.base import contract_of

    rest = cfg.restoration
    if rest.data == "faces":
        alignments = [contract_of(m).alignment for m in rest.models]
        data = face_crop_images(cfg.dataset, split.train_ids, alignments, detector=cfg.detector,
                                data_root=ctx.data_root_option, cache_dir=ctx.cache_dir, device=str(ctx.device),
                                progress=ctx.progress)
        key = {"kind": "faces", "dataset": cfg.dataset, "train": ids_digest(split.train_ids), "alignments": alignments,
               "detector": cfg.detector}
    else:
        data = scene_training_images(ctx.data_root, rest.sources, rest.holdout)
        key = {"kind": "scenes", "sources": rest.sources, "holdout": rest.holdout,
               "images": len(data)}
    config = rest.unet(cfg.seed, len(data))
    with ctx.manifest.timer("restoration/train"):
        weights, report = restoration_network(data, attacked_protector(cfg), config, ctx.cache_dir, key,
                                              device=str(ctx.device), progress=ctx.progress, log=ctx.log)
    return {"weights": str(weights.relative_to(ctx.cache_dir)), "info": {
        "weights_digest": report.get("weights_digest"), "cached": report.get("cached"),
        "history": report.get("history"), "config": config.to_dict(), "budget": rest.budget(len(data)),
        "data": data.info}}


def restoration_rows(cfg: E5Config, isp: Any, trained: dict[str, Any], ctx: RunContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The E1 protocol for raw, captured and restored probes, with the network of :func:`restoration_task`."""
    rest = cfg.restoration
    weights = ctx.cache_dir / trained["weights"]
    if cfg.protector:  # any protector: captured = its own spec, restored = protector + U-Net
        from ..attacks.base import save_protector_config

        captured = cfg.protector
        restored = f"restored:base={save_protector_config(isp, ctx.cache_dir / 'e5')},weights={weights}"
    else:
        isp_path = isp_file(isp, ctx.cache_dir)
        captured, restored = f"campro-isp:params={isp_path}", restoration_spec(isp_path, weights)
    pcfg = ProtocolConfig(datasets=[cfg.dataset], models=rest.models, protectors=["raw", captured, restored],
                          classifiers=[cfg.classifier], galleries=["raw", "protected"], repeats=cfg.repeats,
                          seed=cfg.seed, pipeline="paper", detector=cfg.detector, min_images=cfg.min_images,
                          max_identities=cfg.eval_identities, batch_size=cfg.batch_size)
    outcome = run_protocol(pcfg, ctx)
    kinds = {"raw": "raw", captured: "captured", restored: "restored"}
    rows = []
    for (dataset, spec, _, gallery, model), res in outcome.results.items():
        label = RESTORATION if (kinds[spec], gallery) == ("restored", "raw") else CONTEXT_COLUMNS.get((kinds[spec], gallery))
        if label is None:
            label = "Restoration, restored gallery"
        rows.append(_row(model, label, res.accuracies, res.chance, int(res.correct.shape[1]),
                         {"gallery": gallery, "probe": kinds[spec]}))
    return rows, trained["info"]


# ----------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------
def _row(model: str, attack: str, accuracies: np.ndarray, chance: float, identities: int, extra: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(accuracies)
    return {"model": model, "attack": attack, "accuracy_mean": summary.mean, "accuracy_std": summary.std,
            "ci_low": summary.ci_low, "ci_high": summary.ci_high, "n": summary.repeats, "chance": chance,
            "identities": identities, **extra}


def percent(mean: float, std: float) -> str:
    return f"{100 * mean:.1f}" + ("" if np.isnan(std) else f" ± {100 * std:.1f}")


def table7_wide(long: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Models as rows, attacks as columns (mean ± std over repeats, %), plus an Average row."""
    present = [c for c in columns if c in set(long["attack"])]
    models = list(dict.fromkeys(long["model"]))
    cells: dict[str, dict[str, str]] = {m: {} for m in models}
    means: dict[str, list[float]] = {c: [] for c in present}
    for r in long.itertuples():
        if r.attack in present:
            cells[r.model][r.attack] = percent(r.accuracy_mean, r.accuracy_std)
            means[r.attack].append(r.accuracy_mean)
    rows = [{"model": m, **{c: cells[m].get(c, "—") for c in present}} for m in models]
    rows.append({"model": "Average (of the rows above)", **{c: f"{100 * np.mean(v):.1f}" if v else "—" for c, v in means.items()}})
    return pd.DataFrame(rows)


def paper_table7() -> pd.DataFrame:
    """The paper's Table VII (transcribed; its models are not ours), wide, in %."""
    table = paper_table("table7_whitebox.csv")
    wide = table.pivot_table(index="paper_label", columns="attack", values="accuracy", sort=False) * 100
    names = {"finetune-softmax": "Finetune-Softmax", "finetune-arcface": "Finetune-ArcFace",
             "scratch-softmax": "Scratch-Softmax", "scratch-arcface": "Scratch-ArcFace", "restoration": RESTORATION}
    wide = wide.rename(columns=names).reset_index().rename(columns={"paper_label": "paper model"})
    wide["source"] = "paper (Zhu et al., NDSS 2024), Table VII; CelebA-P, 10 models, 20 epochs"
    return wide


def epoch_figure(curves: dict[str, list[dict[str, float]]]) -> Any:
    """Fig. 14-style curves: training loss and the diagnostic EVAL accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, history in curves.items():
        epochs = [h["epoch"] for h in history]
        axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o", label=label)
        if history and "eval_accuracy_diagnostic" in history[0]:
            axes[1].plot(epochs, [100 * h.get("eval_accuracy_diagnostic", np.nan) for h in history], marker="o", label=label)
    axes[0].set(title="training loss (TRAIN identities)", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    axes[1].set(title="EVAL accuracy after each epoch (diagnostic only)", xlabel="epoch", ylabel="top-1 %")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@EXPERIMENTS.register("e5", protocol="e5", description="Table VII: white-box attacks (re-training, restoration)",
                      extra_keys=("restoration.seed",))
def run_e5(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    cfg = E5Config.from_spec(spec)
    isp = attacked_protector(cfg)
    split = split_identities(cfg, ctx)
    ctx.manifest.models["isp"] = {"spec": isp.spec(), "fingerprint": isp.fingerprint()}
    ctx.manifest.data["identity_split"] = {
        "rule": f"EVAL = first {cfg.eval_identities} identities by name with >= {cfg.min_images} images; TRAIN = the rest",
        "eval_images": len(split.eval_ids), "eval_ids_sha": ids_digest(split.eval_ids),
        "train_images": len(split.train_ids), "train_identities": split.train_identities,
        "train_ids_sha": ids_digest(split.train_ids)}
    ctx.manifest.seeds.update({"splits": list(range(cfg.seed, cfg.seed + cfg.repeats)), "train_seeds": cfg.retrain.train_seeds})
    rows: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    curves: dict[str, list[dict[str, float]]] = {}
    trainings: dict[str, Any] = {}
    runs = [(column, protected, label) for column in cfg.columns
            for protected, label in [(True, column.label), (False, f"{column.label} (control: raw images)")]
            if protected or cfg.retrain.control_raw]
    seeds = cfg.retrain.train_seeds
    # every (column, seed) re-training and the restoration network are independent tasks of the run's executor
    tasks = [Task(f"retrain {label} seed {s}", column_task, (cfg, column, s, split, protected), {"train": s})
             for column, protected, label in runs for s in seeds]
    if cfg.restoration.models:
        own = cfg.restoration.seed  # the U-Net's seed (RestorationAttackConfig.unet's rule)
        tasks.append(Task("restoration", restoration_task, (cfg, split), {"restoration": cfg.seed if own is None else own}))
    done = run_tasks(tasks, "re-train extractors and the restoration network", ctx)
    for n, (column, protected, label) in enumerate(runs):
        outcomes = done[n * len(seeds):(n + 1) * len(seeds)]
        accuracies = np.concatenate([o["accuracies"] for o in outcomes])
        last = [o["info"]["history"][-1] for o in outcomes]
        rows.append(_row(cfg.retrain.row, label, accuracies, outcomes[0]["chance"], outcomes[0]["identities"], {
            "gallery": "protected" if protected else "raw images, raw probes", "probe": "captured" if protected else "raw",
            "extractor": column.extractor, "loss": column.config.loss, "epochs": column.config.epochs,
            "lr": column.config.lr, "train_seeds": len(cfg.retrain.train_seeds),
            "final_train_loss": float(np.mean([h["train_loss"] for h in last])),
            "final_train_accuracy": float(np.mean([h["train_accuracy"] for h in last])),
            "diverged": int(sum(o["info"]["diverged"] for o in outcomes))}))
        for seed, o in zip(cfg.retrain.train_seeds, outcomes):
            curves[f"{label} s{seed}"] = o["info"]["history"]
            trainings[f"{label} seed {seed}"] = {"cached": o["cached"], "config": o["config"],
                                                 "train_images": o["info"]["train_images"],
                                                 "train_identities": o["info"]["train_identities"],
                                                 "seconds": o["info"]["seconds"], "diverged": o["info"]["diverged"]}
            epochs.extend({"attack": label, "train_seed": seed, **h} for h in o["info"]["history"])
    restoration_info: dict[str, Any] = {}
    if cfg.restoration.models:
        more, restoration_info = restoration_rows(cfg, isp, done[-1], ctx)
        rows.extend(more)
    if not rows:
        raise CamproError("the e5 spec has no retrain columns and no restoration models")
    ctx.manifest.notes["e5"] = {"retraining": trainings, "restoration": restoration_info}
    long = pd.DataFrame(rows)
    order = [c.label for c in cfg.columns] + [RESTORATION] + list(CONTEXT_COLUMNS.values())
    if cfg.retrain.control_raw:
        order += [f"{c.label} (control: raw images)" for c in cfg.columns]
    tables = {"e5": long, "table7": table7_wide(long, order)}
    figures = {}
    if epochs:
        tables["e5_epochs"] = pd.DataFrame(epochs)
        figures["e5_epochs"] = epoch_figure(curves)
    if ctx.compare == "paper":
        tables["table7_paper"] = paper_table7()
    notes = _notes(cfg, split, long)
    if restoration_info.get("budget"):
        notes += "\n\n" + cfg.restoration.budget_note(restoration_info["budget"]["crops"])
    return ExperimentResult(tables=tables, figures=figures, notes=notes)


def _notes(cfg: E5Config, split: IdentitySplit, long: pd.DataFrame) -> str:
    chance = float(long["chance"].iloc[0]) if len(long) else float("nan")
    lines = [
        f"White-box attacker knows {'protector' if cfg.protector else 'ISP'} '{cfg.protector or cfg.isp}'. {cfg.dataset}: EVAL = first {cfg.eval_identities} identities by "
        f"name ({len(split.eval_ids)} images), TRAIN = the other {split.train_identities} identities "
        f"({len(split.train_ids)} images); chance = {100 * chance:.1f} %.",
        f"Closed-set identification ({cfg.classifier}), {cfg.repeats} gallery/probe draws (seeds {cfg.seed}.."
        f"{cfg.seed + cfg.repeats - 1}); mean ± std over draws (and over train seeds {cfg.retrain.train_seeds}) in %.",
        "Re-training columns: gallery AND probes protected (the attacker enrols protected images); the extractor "
        "after the LAST epoch is used. e5_epochs (if present) is a diagnostic curve of EVAL accuracy per epoch: "
        "nothing is selected on it (the paper's artifact prints the best epoch; we do not).",
        f"Restoration: U-Net, plain L1 (Eq. 7), trained on {cfg.restoration.data} (faces: crops of the TRAIN identities; scenes: COCO images); restored "
        "probes vs a raw gallery. Context columns: Raw (raw probes), Captured (captured probes, raw gallery), "
        "Captured, re-enrolled (captured probes, captured gallery).",
    ]
    for column in cfg.columns:
        c = column.config
        lines.append(f"{column.label}: {column.extractor} ({EXTRACTORS.entry(column.extractor).metadata['contract'].architecture}), "
                     f"{c.loss}, {c.epochs} epochs, SGD lr {c.lr} (x{c.decay_factor} after epoch {c.decay_after}), "
                     f"momentum {c.momentum}, wd {c.weight_decay}, batch {c.batch_size}"
                     + (f", ArcFace s={c.arcface_scale} m={c.arcface_margin}" if c.loss == "arcface" else "") + ".")
    lines.append("Paper scale: 10 models x 4 re-trainings on CelebA-P (10,126 identities), 20 epochs; this run is a "
                 "toy-scale version on CPU.")
    return "\n\n".join(lines)

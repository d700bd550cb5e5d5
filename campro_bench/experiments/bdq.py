"""``campro-bench run bdq``: privacy-preserving action recognition, utility vs actor identification.

For every video protector of the protocol (raw, per-frame baselines, BDQ untrained and trained) and
every seed:

* **utility** — a fresh action classifier (:class:`~campro_bench.video.models.ClipNet`) trained on
  encoded clips of the training actors and scored on the held-out actors (seeded leave-actors-out);
* **privacy** — the actor-identification attack of :mod:`campro_bench.video.attacks`: actor
  classifiers re-trained from scratch on encoded earlier frames of every clip, scored on the later
  frames (one attacker, and the ensemble of ``ensemble`` differently initialised attackers);
* **restoration attack** (:mod:`campro_bench.video.restore`, unless ``restore = false``): a 3D U-Net
  trained on (encoded, raw) pairs of the attacker's earlier frames restores the encoded later frames,
  whose actors are then identified by a classifier trained on raw clips and by one re-trained on
  restored clips; a restorer whose loss did not fall is reported as failed (NaN accuracies).

Tables: ``bdq`` (mean and std over seeds, chance levels; the talk's format: action accuracy vs actor
accuracy per protector) and ``bdq_seeds`` (one row per protector and seed); figure ``bdq_tradeoff``
(privacy-utility plane).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import option, option_like
from ..registries import EXPERIMENTS
from ..video.restore import RestoreConfig
from ..video.training import BDQTrainConfig
from .base import ExperimentResult, RunContext
from .figures import pyplot
from .spec import parse_protocol


@dataclass(frozen=True)
class BDQProtocol:
    """The ``bdq`` protocol (protocols/bdq.toml)."""

    dataset: str = option_like(BDQTrainConfig, "dataset")
    size: int = option_like(BDQTrainConfig, "size")
    frames: int = option_like(BDQTrainConfig, "frames")
    stride: int = option_like(BDQTrainConfig, "stride")
    train_step: int = option(4, ge=1, help="frames between training window starts")
    test_step: int = option(8, ge=1, help="frames between test window starts")
    train_fraction: float = option_like(BDQTrainConfig, "train_fraction")
    test_actors: int = option_like(BDQTrainConfig, "test_actors")
    seeds: list[int] = option(lambda: [0, 1, 2], help="seeds (action split, initialisation, batches)")
    steps: int = option(100, ge=1, help="Adam steps of every classifier")
    batch_size: int = option(16, ge=1, help="clips per step")
    lr: float = option(1e-3, gt=0, help="Adam learning rate")
    width: int = option_like(BDQTrainConfig, "width")
    pool: int = option_like(BDQTrainConfig, "pool")
    ensemble: int = option(2, ge=1, help="differently initialised attackers in the ensemble")
    threads: int = option(2, ge=1, help="torch CPU threads")
    restore: bool = option(True, help="run the restoration attack (3D U-Net, then actor identification)")
    restore_only: list[str] = option(list, help="protector labels the restoration attack runs on (empty: all)")
    restore_steps: int = option_like(RestoreConfig, "steps")
    restore_batch_size: int = option_like(RestoreConfig, "batch_size")
    restore_lr: float = option_like(RestoreConfig, "lr")
    restore_width: int = option_like(RestoreConfig, "width")
    restore_depth: int = option_like(RestoreConfig, "depth")
    restore_fold: int = option_like(RestoreConfig, "fold")
    restore_min_drop: float = option_like(RestoreConfig, "min_drop")
    protectors: dict[str, str] = option(dict, help="label = video protector spec")


def _cell(cfg: BDQProtocol, label: str, protector_spec: str, seed: int, sets: dict[str, Any], n_actors: int,
          n_actions: int) -> dict[str, float]:
    from ..video.attacks import AttackConfig, actor_attack
    from ..video.models import accuracy, encode_set, predict_proba, train_classifier
    from ..video.protectors import build_video_protector
    from ..video.restore import restoration_attack

    protector = build_video_protector(protector_spec)
    start = time.perf_counter()
    a_train, a_test = encode_set(protector, sets["action_train"]), encode_set(protector, sets["action_test"])
    model = train_classifier(a_train, sets["action_train"].action, n_actions, steps=cfg.steps,
                             batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=seed, pool=cfg.pool)
    action = accuracy(predict_proba(model, a_test), sets["action_test"].action)
    p_train, p_test = encode_set(protector, sets["actor_train"]), encode_set(protector, sets["actor_test"])
    attack = actor_attack(p_train, sets["actor_train"].actor, p_test, sets["actor_test"].actor, n_actors,
                          AttackConfig(cfg.ensemble, cfg.steps, cfg.batch_size, cfg.lr, cfg.width, cfg.pool), seed)
    row: dict[str, Any] = {"action_acc": action, "actor_acc_single": attack["single"],
                           "actor_acc_ensemble": attack["ensemble"]}
    if cfg.restore and (not cfg.restore_only or label in cfg.restore_only):
        restored = restoration_attack(sets["actor_train"], sets["actor_test"], p_train, p_test, n_actors,
                                      _restore_config(cfg), seed, sets["raw_attackers"])
        row.update({"actor_acc_restored_raw": restored["restored_raw_attacker"],
                    "actor_acc_restored_retrained": restored["restored_retrained"],
                    **{k: v for k, v in restored.items() if k.startswith("restore_")}})
    row["actor_acc"] = max(v for k, v in row.items() if k.startswith("actor_acc_") and v == v)  # NaN: failed
    return {**row, "wall_s": time.perf_counter() - start}


def _restore_config(cfg: BDQProtocol) -> Any:
    return RestoreConfig(steps=cfg.restore_steps, batch_size=cfg.restore_batch_size, lr=cfg.restore_lr,
                         width=cfg.restore_width, depth=cfg.restore_depth, fold=cfg.restore_fold,
                         min_drop=cfg.restore_min_drop, classifier_steps=cfg.steps,
                         classifier_batch_size=cfg.batch_size, classifier_lr=cfg.lr, classifier_width=cfg.width,
                         pool=cfg.pool)


def _figure(table: pd.DataFrame, action_chance: float, actor_chance: float) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    markers = {"actor_acc_restored_raw": ("v", "restored, raw-clip classifier"),
               "actor_acc_restored_retrained": ("s", "restored, re-trained classifier")}
    for i, (_, row) in enumerate(table.iterrows()):
        colour = f"C{i % 10}"
        ax.errorbar(row["actor_acc_mean"], row["action_acc_mean"], xerr=row["actor_acc_std"],
                    yerr=row["action_acc_std"], fmt="o", capsize=3, color=colour, label=row["protector"])
        for key, (marker, _name) in markers.items():  # the restoration attack (absent or NaN: not drawn)
            if f"{key}_mean" in row and row[f"{key}_mean"] == row[f"{key}_mean"]:
                ax.plot(row[f"{key}_mean"], row["action_acc_mean"], marker, color=colour, mfc="none", ms=7)
    if any(f"{key}_mean" in table for key in markers):
        for marker, name in markers.values():
            ax.plot([], [], marker, color="grey", mfc="none", label=name)
    ax.axvline(actor_chance, color="grey", ls=":", lw=1)
    ax.axhline(action_chance, color="grey", ls="--", lw=1)
    ax.set_xlabel("actor identification accuracy (%) — strongest attacker; lower is more private")
    ax.set_ylabel("action accuracy (%) on held-out actors")
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 105)
    ax.set_title("Privacy vs utility (mean ± std over seeds); dotted/dashed: chance")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


RESTORED = ("actor_acc_restored_raw", "actor_acc_restored_retrained")


@EXPERIMENTS.register("bdq", protocol="bdq", free_tables=("protectors",),
                      description="Privacy-preserving action recognition: BDQ vs baselines, actor identification attack")
def run_bdq(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    """Run the BDQ benchmark from its spec; see the module docstring."""
    import torch

    from ..errors import CamproError
    from ..video.data import actor_segments, actor_split, load_video_dataset, time_split
    from ..video.models import clip_set

    cfg = parse_protocol(BDQProtocol, spec, "bdq")
    if not cfg.protectors:
        raise CamproError("bdq needs a [protectors] table: label = video protector spec, e.g. raw = \"raw\"")
    unknown = sorted(set(cfg.restore_only) - set(cfg.protectors))
    if unknown:
        raise CamproError(f"restore_only names protectors that are not in [protectors]: {', '.join(unknown)}; "
                          f"labels: {', '.join(cfg.protectors)} (restore_only=[] restores every protector)")
    torch.set_num_threads(cfg.threads)
    with ctx.manifest.timer("load"):
        root = None if Path(cfg.dataset).is_dir() else ctx.data_root
        data = load_video_dataset(cfg.dataset, root, cfg.size)
    early, late = time_split(data, cfg.train_fraction)
    actor_sets = {"actor_train": clip_set(data, early, cfg.frames, cfg.stride, cfg.train_step),
                  "actor_test": clip_set(data, late, cfg.frames, cfg.stride, cfg.test_step)}
    ctx.manifest.data.update({"dataset": cfg.dataset, **data.info(), "actor_train_windows": len(actor_sets["actor_train"]),
                              "actor_test_windows": len(actor_sets["actor_test"])})
    ctx.manifest.seeds.update({"seeds": list(cfg.seeds), "streams": "action split default_rng(seed); classifier "
                               "init torch.manual_seed(seed); attacker m init seed*100+m; batches Generator(init+1); restorer init "
                               "seed*100+50, batches Generator(init+1), probe Generator(init+2); restored-clip "
                               "classifiers seed*100+60 (raw clips) and seed*100+70 (restored clips)"})
    rows = []
    splits = {}
    total = len(cfg.seeds) * len(cfg.protectors)
    with ctx.progress("bdq cells", total) as advance:
        for seed in cfg.seeds:
            train_actors, test_actors = actor_split(data, cfg.test_actors, seed)
            splits[str(seed)] = {"train_actors": train_actors, "test_actors": test_actors}
            sets = {**actor_sets,
                    "action_train": clip_set(data, actor_segments(data, train_actors), cfg.frames, cfg.stride,
                                             cfg.train_step),
                    "action_test": clip_set(data, actor_segments(data, test_actors), cfg.frames, cfg.stride,
                                            cfg.test_step),
                    "raw_attackers": {}}  # the restoration attack's raw-clip classifiers, shared by protectors
            for label, protector in cfg.protectors.items():
                with ctx.manifest.timer(f"cell {label}"):
                    result = _cell(cfg, label, protector, seed, sets, len(data.actors), len(data.actions))
                rows.append({"protector": label, "spec": protector, "seed": seed, **result})
                ctx.log(f"{label} seed {seed}: action {result['action_acc']:.1f} %, actor {result['actor_acc']:.1f} % "
                        f"({result['wall_s']:.0f} s)")
                advance(1)
    ctx.manifest.notes["action_splits"] = splits
    per_seed = pd.DataFrame(rows)
    action_chance, actor_chance = 100.0 / len(data.actions), 100.0 / len(data.actors)
    summary = []
    for label, protector in cfg.protectors.items():
        part = per_seed[per_seed["protector"] == label]
        entry: dict[str, Any] = {"protector": label, "spec": protector}
        for key in ("action_acc", "actor_acc", "actor_acc_single", "actor_acc_ensemble", *RESTORED):
            if key in part:  # NaN (a failed restorer) is left out of the mean; restore_failed counts it
                values = part[key].dropna()
                entry[f"{key}_mean"] = float(values.mean()) if len(values) else float("nan")
                entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        attacked = part["restore_failed"].notna() if "restore_failed" in part else part["seed"] < part["seed"]
        if attacked.any():
            entry["restore_failed"] = int(part.loc[attacked, "restore_failed"].astype(bool).sum())
            entry["restore_psnr_mean"] = float(part["restore_psnr"].mean())
            entry["restore_psnr_mean_clip_mean"] = float(part["restore_psnr_mean_clip"].mean())
        entry.update({"action_chance": action_chance, "actor_chance": actor_chance, "seeds": len(part)})
        summary.append(entry)
    table = pd.DataFrame(summary).round(2)
    notes = [
        f"{cfg.dataset}: {len(data.actors)} actors, {len(data.actions)} actions, {len(data.clips)} clips at "
        f"{cfg.size}x{cfg.size}; windows of {cfg.frames} frames at stride {cfg.stride}.",
        f"Action accuracy (%): clip windows of {cfg.test_actors} held-out actors (seeded leave-actors-out split per "
        f"seed), chance {action_chance:.1f} %.",
        f"Actor accuracy (%): the strongest of one re-trained attacker and an ensemble of {cfg.ensemble}"
        f"{' (and the restoration attack below)' if cfg.restore else ''}, trained on the first "
        f"{cfg.train_fraction:.0%} of every clip, tested on the rest; chance {actor_chance:.1f} %.",
        f"Mean and sample std over seeds {list(cfg.seeds)}; every classifier: {cfg.steps} Adam steps, batch "
        f"{cfg.batch_size}, lr {cfg.lr}, ClipNet width {cfg.width} on input average-pooled by {cfg.pool}.",
    ]
    if cfg.restore:
        notes.append(
            f"Restoration attack: a 3D U-Net (width {cfg.restore_width}, depth {cfg.restore_depth}, {cfg.restore_fold}x"
            f"{cfg.restore_fold} pixels folded into channels; {cfg.restore_steps} Adam steps, batch "
            f"{cfg.restore_batch_size}, lr {cfg.restore_lr}, L1) trained on (encoded, raw) pairs of the attacker's "
            f"earlier frames restores the encoded later frames"
            f"{' (run on ' + ', '.join(cfg.restore_only) + ')' if cfg.restore_only else ''}; actor_acc_restored_raw: a classifier trained on raw "
            f"clips, actor_acc_restored_retrained: one trained on restored clips. restore_failed counts seeds whose "
            f"restorer's probe loss fell by less than {cfg.restore_min_drop:.0%} (their accuracies are left out, "
            f"not counted as privacy). restore_psnr: PSNR (dB) of the restored test clips; restore_psnr_mean_clip: "
            f"of the mean training clip.")
    return ExperimentResult(tables={"bdq": table, "bdq_seeds": per_seed.round(2)},
                            figures={"bdq_tradeoff": _figure(table, action_chance, actor_chance)},
                            notes="\n\n".join(notes))

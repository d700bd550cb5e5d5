"""``campro-bench run bdq``: privacy-preserving action recognition, utility vs actor identification.

For every video protector of the protocol (raw, per-frame baselines, BDQ untrained and trained) and
every seed:

* **utility** — a fresh action classifier (:class:`~campro_bench.video.models.ClipNet`) trained on
  encoded clips of the training actors and scored on the held-out actors (seeded leave-actors-out);
* **privacy** — the actor-identification attack of :mod:`campro_bench.video.attacks`: actor
  classifiers re-trained from scratch on encoded earlier frames of every clip, scored on the later
  frames (one attacker, and the ensemble of ``ensemble`` differently initialised attackers).

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
    protectors: dict[str, str] = option(dict, help="label = video protector spec")


def _cell(cfg: BDQProtocol, protector_spec: str, seed: int, sets: dict[str, Any], n_actors: int,
          n_actions: int) -> dict[str, float]:
    from ..video.attacks import AttackConfig, actor_attack
    from ..video.models import accuracy, encode_set, predict_proba, train_classifier
    from ..video.protectors import build_video_protector

    protector = build_video_protector(protector_spec)
    start = time.perf_counter()
    a_train, a_test = encode_set(protector, sets["action_train"]), encode_set(protector, sets["action_test"])
    model = train_classifier(a_train, sets["action_train"].action, n_actions, steps=cfg.steps,
                             batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=seed, pool=cfg.pool)
    action = accuracy(predict_proba(model, a_test), sets["action_test"].action)
    p_train, p_test = encode_set(protector, sets["actor_train"]), encode_set(protector, sets["actor_test"])
    attack = actor_attack(p_train, sets["actor_train"].actor, p_test, sets["actor_test"].actor, n_actors,
                          AttackConfig(cfg.ensemble, cfg.steps, cfg.batch_size, cfg.lr, cfg.width, cfg.pool), seed)
    return {"action_acc": action, "actor_acc_single": attack["single"], "actor_acc_ensemble": attack["ensemble"],
            "actor_acc": max(attack["single"], attack["ensemble"]), "wall_s": time.perf_counter() - start}


def _figure(table: pd.DataFrame, action_chance: float, actor_chance: float) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for _, row in table.iterrows():
        ax.errorbar(row["actor_acc_mean"], row["action_acc_mean"], xerr=row["actor_acc_std"],
                    yerr=row["action_acc_std"], fmt="o", capsize=3, label=row["protector"])
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
                               "init torch.manual_seed(seed); attacker m init seed*100+m; batches Generator(init+1)"})
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
                                            cfg.test_step)}
            for label, protector in cfg.protectors.items():
                with ctx.manifest.timer(f"cell {label}"):
                    result = _cell(cfg, protector, seed, sets, len(data.actors), len(data.actions))
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
        for key in ("action_acc", "actor_acc", "actor_acc_single", "actor_acc_ensemble"):
            entry[f"{key}_mean"] = float(part[key].mean())
            entry[f"{key}_std"] = float(part[key].std(ddof=1)) if len(part) > 1 else float("nan")
        entry.update({"action_chance": action_chance, "actor_chance": actor_chance, "seeds": len(part)})
        summary.append(entry)
    table = pd.DataFrame(summary).round(2)
    notes = [
        f"{cfg.dataset}: {len(data.actors)} actors, {len(data.actions)} actions, {len(data.clips)} clips at "
        f"{cfg.size}x{cfg.size}; windows of {cfg.frames} frames at stride {cfg.stride}.",
        f"Action accuracy (%): clip windows of {cfg.test_actors} held-out actors (seeded leave-actors-out split per "
        f"seed), chance {action_chance:.1f} %.",
        f"Actor accuracy (%): the stronger of one re-trained attacker and an ensemble of {cfg.ensemble}, trained on "
        f"the first {cfg.train_fraction:.0%} of every clip, tested on the rest; chance {actor_chance:.1f} %.",
        f"Mean and sample std over seeds {list(cfg.seeds)}; every classifier: {cfg.steps} Adam steps, batch "
        f"{cfg.batch_size}, lr {cfg.lr}, ClipNet width {cfg.width} on input average-pooled by {cfg.pool}.",
    ]
    return ExperimentResult(tables={"bdq": table, "bdq_seeds": per_seed.round(2)},
                            figures={"bdq_tradeoff": _figure(table, action_chance, actor_chance)},
                            notes="\n\n".join(notes))

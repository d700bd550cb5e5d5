"""``campro-bench train bdq``: adversarial training of the BDQ encoder (the talk's two alternating steps).

Each iteration, on a batch of training clips:

1. fix the actor model P; update the encoder E (sigma, bin centres) and the action model T with
   ``L = XE(T(E(V)), action) - alpha * Entropy(P(E(V)))`` (keep actions, make P unsure of the actor);
2. fix E and T; update P with ``XE(P(E(V)), actor)``.

The encoder runs its soft quantiser (temperature F) while training. Training clips are the earlier
frames (``train_fraction``) of the clips of the training actors of the seeded leave-actors-out split;
the held-out actors and the later frames are never seen, so ``run bdq`` can score on them. Outputs in
the run folder: ``bdq.json`` (the preset: sigma and bin centres), ``log.csv`` (every loss of every
iteration), ``checkpoint.pt`` (``--resume``; tensors and plain data only), ``manifest.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..config import option
from ..errors import CamproError, CheckpointError
from ..io.atomic import atomic_write_json
from ..training.checkpoint import (config_mismatch, load_module_state, load_training_checkpoint,
                                   save_training_checkpoint)
from ..training.report import cli_command, training_manifest, write_csv
from .data import actor_segments, actor_split, load_video_dataset, time_split
from .models import ClipNet, clip_set
from .protectors import BDQ

TRAINER = "bdq"
STATE_KEYS = ("encoder", "action", "actor", "opt_main", "opt_actor", "generator", "iteration", "rows")


@dataclass(frozen=True)
class BDQTrainConfig:
    """Everything that defines a BDQ training run (recorded in its manifest; compared on resume)."""

    dataset: str = option("weizmann-subset", help="video-clips dataset name or folder")
    size: int = option(64, ge=16, le=256, help="frame side in pixels")
    frames: int = option(8, ge=2, le=64, help="frames per clip window (T)")
    stride: int = option(2, ge=1, le=16, help="frames between sampled frames")
    step: int = option(4, ge=1, le=64, help="frames between window starts")
    test_actors: int = option(3, ge=1, help="actors held out by the leave-actors-out split (never trained on)")
    split_seed: int = option(0, help="seed of the leave-actors-out split")
    train_fraction: float = option(0.6, gt=0, lt=1, help="earlier fraction of every clip used for training")
    iterations: int = option(60, ge=1, le=100_000, help="adversarial iterations (each: step 1 then step 2)")
    batch_size: int = option(8, ge=1, le=1024, help="clips per step")
    alpha: float = option(1.0, ge=0, help="weight of the actor-entropy term in step 1")
    sigma: float = option(1.0, gt=0, help="initial blur sigma")
    levels: int = option(16, ge=2, le=256, help="quantisation levels N")
    temperature: float = option(5.0, gt=0, help="quantiser temperature F while training")
    lr_encoder: float = option(0.05, gt=0, help="Adam learning rate of sigma and the bin centres")
    lr_models: float = option(1e-3, gt=0, help="Adam learning rate of the action and actor models")
    width: int = option(8, ge=1, le=128, help="width of the 3D CNNs")
    pool: int = option(4, ge=1, le=16, help="average pooling of the 3D CNNs' input (64 -> 16 pixels)")
    seed: int = option(0, help="seed of model initialisation and batch order")
    checkpoint_every: int = option(20, ge=1, help="iterations between checkpoints")


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1).mean()


def train_bdq(config: BDQTrainConfig, out: Path, *, data_root: Path | None, resume: bool = False,
              log: Callable[[str], None] = lambda _m: None, stop_after: int | None = None,
              command: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns the manifest. ``stop_after = k`` stops after iteration ``k`` with only the
    checkpoint written (to test resuming). ``command``: what the manifest records as the command
    (default: this process's; a sweep gives each run its single ``train bdq`` command)."""
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    saved_state: dict[str, Any] | None = None
    if resume:
        saved_config, saved_state = load_training_checkpoint(checkpoint, TRAINER, STATE_KEYS)
        diff = config_mismatch(saved_config, asdict(config), ignore=("iterations", "checkpoint_every"))
        if diff:
            raise CheckpointError(f"{checkpoint} was written with another configuration ({'; '.join(diff)})")
    elif (out / "bdq.json").exists() or checkpoint.exists():
        raise CamproError(f"{out} already holds a BDQ training run; use --resume or another --out")
    start = time.perf_counter()
    data = load_video_dataset(config.dataset, data_root, config.size)
    train_actors, test_actors = actor_split(data, config.test_actors, config.split_seed)
    early, _late = time_split(data, config.train_fraction)
    mine = {c for c, _, _ in actor_segments(data, train_actors)}
    clips = clip_set(data, [s for s in early if s[0] in mine], config.frames, config.stride, config.step, train_actors)

    torch.manual_seed(config.seed)
    encoder = BDQ(sigma=config.sigma, levels=config.levels, temperature=config.temperature)
    action_model = ClipNet(len(data.actions), config.width, pool=config.pool)
    actor_model = ClipNet(len(train_actors), config.width, pool=config.pool)
    opt_main = torch.optim.Adam([{"params": encoder.parameters(), "lr": config.lr_encoder},
                                 {"params": action_model.parameters(), "lr": config.lr_models}])
    opt_actor = torch.optim.Adam(actor_model.parameters(), lr=config.lr_models)
    generator = torch.Generator().manual_seed(config.seed * 7919 + 1)
    rows: list[dict[str, Any]] = []
    first = 0
    if saved_state is not None:
        load_module_state(encoder, saved_state["encoder"], str(checkpoint))
        load_module_state(action_model, saved_state["action"], str(checkpoint))
        load_module_state(actor_model, saved_state["actor"], str(checkpoint))
        opt_main.load_state_dict(saved_state["opt_main"])
        opt_actor.load_state_dict(saved_state["opt_actor"])
        generator.set_state(saved_state["generator"])
        first, rows = int(saved_state["iteration"]), list(saved_state["rows"])
        if first > config.iterations:
            raise CheckpointError(f"{checkpoint} is at iteration {first}, past --set iterations={config.iterations}")
        log(f"resumed at iteration {first}")

    def save(iteration: int) -> None:
        save_training_checkpoint(checkpoint, TRAINER, asdict(config), {
            "encoder": encoder.state_dict(), "action": action_model.state_dict(), "actor": actor_model.state_dict(),
            "opt_main": opt_main.state_dict(), "opt_actor": opt_actor.state_dict(),
            "generator": generator.get_state(), "iteration": iteration, "rows": rows})

    encoder.train(), action_model.train(), actor_model.train()
    for iteration in range(first, config.iterations):
        index = torch.randint(len(clips), (min(config.batch_size, len(clips)),), generator=generator)
        video, action, actor = clips.batch(index), clips.action[index], clips.actor[index]
        # step 1: fix P, update E and T
        actor_model.requires_grad_(False)
        encoded = encoder(video)
        action_logits = action_model(encoded)
        loss_action = F.cross_entropy(action_logits, action)
        entropy = _entropy(actor_model(encoded))
        loss_main = loss_action - config.alpha * entropy
        opt_main.zero_grad()
        loss_main.backward()
        opt_main.step()
        with torch.no_grad():
            encoder.sigma.clamp_(min=1e-3)
        actor_model.requires_grad_(True)
        # step 2: fix E and T, update P
        with torch.no_grad():
            encoded = encoder(video)
        actor_logits = actor_model(encoded)
        loss_actor = F.cross_entropy(actor_logits, actor)
        opt_actor.zero_grad()
        loss_actor.backward()
        opt_actor.step()
        rows.append({"iteration": iteration + 1, "loss_encoder": loss_main.item(), "loss_action": loss_action.item(),
                     "actor_entropy": entropy.item(), "loss_actor": loss_actor.item(),
                     "action_batch_acc": float((action_logits.argmax(-1) == action).float().mean()),
                     "actor_batch_acc": float((actor_logits.argmax(-1) == actor).float().mean()),
                     "sigma": float(encoder.sigma.detach()), "centre_min": float(encoder.centres.detach().min()),
                     "centre_max": float(encoder.centres.detach().max())})
        done = iteration + 1
        if done % config.checkpoint_every == 0 or done == config.iterations:
            save(done)
            r = rows[-1]
            log(f"iteration {done}/{config.iterations}: action loss {r['loss_action']:.3f}, "
                f"actor loss {r['loss_actor']:.3f}, entropy {r['actor_entropy']:.3f}, sigma {r['sigma']:.3f}")
        if stop_after is not None and done >= stop_after:
            save(done)
            return {}
    preset = encoder.preset_dict()
    atomic_write_json(out / "bdq.json", preset)
    write_csv(out / "log.csv", rows)
    last = rows[-1]
    manifest = training_manifest(
        TRAINER, command=command if command is not None else cli_command(), config=asdict(config),
        seeds={"seed": config.seed, "split_seed": config.split_seed,
               "streams": "init torch.manual_seed(seed); batches torch.Generator(seed*7919+1); "
                          "actor split numpy default_rng(split_seed)"},
        data={**data.info(), "dataset": config.dataset, "train_actors": train_actors, "held_out_actors": test_actors,
              "train_windows": len(clips)},
        models={"action": f"ClipNet(width={config.width}, pool={config.pool})",
                "actor": f"ClipNet(width={config.width}, pool={config.pool})"},
        timings={"wall": time.perf_counter() - start},
        metrics={"iterations": len(rows), **{k: last[k] for k in ("loss_action", "loss_actor", "actor_entropy", "sigma")}},
        outputs={"preset": "bdq.json", "log": "log.csv", "checkpoint": "checkpoint.pt", "encoder": preset},
        notes=["Training clips: earlier frames of the training actors' clips; later frames and held-out actors unseen.",
               "Step 1 loss: XE(action) - alpha * entropy(actor model on encoded clips); step 2: XE(actor)."])
    atomic_write_json(out / "manifest.json", manifest)
    return manifest

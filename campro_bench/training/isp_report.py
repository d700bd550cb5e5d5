"""The outputs of a finished ``train isp`` run: summary, parameters, report, plots, manifest.

Split out of :mod:`~campro_bench.training.isp` so that what a run reports (and how the learned
parameters are labelled) is apart from how they are learned. :func:`finish` writes ``isp.json`` (the
last iterate, :func:`params`), ``detector.pt``, ``report.json`` (configuration, :func:`summary`,
warm-up and validation logs), ``report.png`` (:func:`plot`), ``samples.png`` (:func:`samples`) and
``manifest.json``. Validation numbers are reported, never used to choose the parameters.

The functions take the :class:`~campro_bench.training.isp.ISPTrainer` (whose methods of the same
names delegate here) and only read it, except :func:`finish`, which also writes its logs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..io import tensor_to_uint8
from ..io.atomic import atomic_write_json
from ..protectors.isp import ISPParams
from . import isp_levers
from .conditions import count_draws
from .report import Panel, moving_average, plot_panels, save_image_grid, training_manifest

if TYPE_CHECKING:
    from .isp import ISPTrainer

OUTPUTS = ("checkpoint.pt", "log.csv", "val.csv", "warmup.csv", "restorer_warmup.csv", "isp.json", "detector.pt",
           "report.json", "report.png", "samples.png", "manifest.json")
"""Every file a ``train isp`` run writes into its folder (a new run refuses a folder holding one)."""


def summary(trainer: ISPTrainer) -> dict[str, Any]:
    """Final metrics: last validation, means over the last 10% of iterations, warm-up."""
    rows, val_rows, warmup_rows = trainer.rows, trainer.val_rows, trainer.warmup_rows
    tail = rows[-max(1, len(rows) // 10):] if rows else []
    keys = ("acc_protected", "attacker_acc", "l_ns", "ce_protected", "l_det", "l_cls", "l_box",
            "acc_restored", "l_rs", "r_l1")
    last = {f"train_last10pct_{k}": float(np.mean([r[k] for r in tail])) for k in keys if tail and k in tail[0]}
    first_det = float(np.mean([r["l_det"] for r in rows[:max(1, len(rows) // 10)]])) if rows else None
    val = val_rows[-1] if val_rows else {}
    initial = next((r for r in val_rows if r["iteration"] == 0), {})
    return {
        "iterations": trainer.iteration,
        "final_val": val, "initial_val": initial,
        **last, "train_first10pct_l_det": first_det,
        "head_init": trainer.head_init,
        "warmup_epochs": len(warmup_rows),
        "warmup_final_train_acc": warmup_rows[-1]["train_acc"] if warmup_rows else None,
        "warmup_reached_threshold": bool(warmup_rows and warmup_rows[-1]["train_acc"] >= trainer.config.warmup_threshold),
        "warmup_source": trainer.warmup_source,
        "wall_seconds": trainer.elapsed + time.perf_counter() - trainer._started,
        "seconds_per_iteration": float(np.mean([r["seconds"] for r in rows])) if rows else None,
        **(trainer.restoration.summary() if trainer.restoration is not None else {}),
        "levers": isp_levers.summary(trainer.config, trainer.iteration),
    }


def params(trainer: ISPTrainer) -> ISPParams:
    """The learned parameters (last iterate) with how they were made in the metadata."""
    c, isp = trainer.config, trainer.isp
    meta = {
        "trainer": "campro-bench train isp (Algorithm 1)", "attacker": c.attacker,
        "scheme": "protector-only" if c.protector_only else "protector+attacker",
        "omega": c.omega, "m": c.m, "n": c.n, "iterations": trainer.iteration, "seed": c.seed,
        "face_dataset": c.face_dataset, "person_dataset": c.person_dataset,
        "person_detector": c.person_detector, "init": c.init, "ccm_bound": c.ccm_bound,
        "selection": "last iterate",
    }
    if c.restorer != "none":
        meta.update(restorer=c.restorer, restoration_weight=c.restoration_weight)
    meta.update({k: v for k, v in c.to_dict().items() if k in isp_levers.LEVER_DEFAULTS})  # the levers that are on
    return ISPParams.from_tensors(isp.ccm, isp.lut, isp.degamma_exponent, **meta)


def condition_counts(trainer: ISPTrainer) -> dict[str, dict[str, int]]:
    """How many batches of each role drew each condition, from the logs (``log.csv``'s ``conditions``
    and ``restorer_warmup.csv``'s ``condition``)."""
    counts: dict[str, dict[str, int]] = {}
    for row in trainer.rows:
        for part in str(row.get("conditions", "")).split():
            role, _, names = part.partition(":")
            count_draws(names.split("|"), counts.setdefault(role, {}))
    if trainer.restoration is not None:
        warm = [r["condition"] for r in trainer.restoration.warmup_rows if "condition" in r]
        if warm:
            counts["restore-warmup"] = count_draws(warm)
    return counts


def finish(trainer: ISPTrainer, data_info: dict[str, Any] | None = None,
           models: dict[str, Any] | None = None, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``isp.json``, ``detector.pt``, ``report.json/png``, ``samples.png`` and ``manifest.json``."""
    from ..detection.checkpoint import save_checkpoint as save_detector

    out, c = trainer.out, trainer.config
    learned = trainer.params()
    learned.save(out / "isp.json")
    trainer.detector.eval()
    det_sha = save_detector(trainer.detector, out / "detector.pt", {"trained_with": "campro-bench train isp",
                                                                    "isp_digest": learned.digest()})
    trainer.detector.train()
    metrics = trainer.summary()
    trainer.write_logs()
    report = {"config": c.to_dict(), "summary": metrics, "head_init": trainer.head_init,
              "warmup": trainer.warmup_rows,
              "validation": trainer.val_rows, "isp": learned.to_dict()}
    atomic_write_json(out / "report.json", report)
    trainer.plot(out / "report.png")
    trainer.samples(out / "samples.png")
    seeds: dict[str, Any] = {"seed": c.seed, "split_seed": c.seed, "samplers": "numpy default_rng([seed, stream, epoch]); "
                             "streams: 0 warm-up, 1 attacker, 2 protector faces, 3 persons"}
    if c.conditions:
        seeds["conditions"] = trainer.conditions.manifest(condition_counts(trainer))
    manifest = training_manifest(
        "isp", command=command, config=c.to_dict(), seeds=seeds,
        data=data_info or {"faces": trainer.face_data.info, "persons": trainer.person_data.info},
        models=models or {"attacker": ",".join(trainer._names()), "detector": getattr(trainer.detector, "name", "?")},
        timings={"wall": metrics["wall_seconds"],
                 "warmup": sum(r["seconds"] for r in trainer.warmup_rows),
                 "iterations": sum(r["seconds"] for r in trainer.rows)},
        metrics=metrics,
        outputs={"isp": "isp.json", "isp_digest": learned.digest(), "detector": "detector.pt",
                 "detector_sha256": det_sha, "log": "log.csv", "validation": "val.csv", "report": "report.json"},
        notes=["Parameters are the last iterate; validation accuracy is logged only, never used for selection.",
               "Validation images are held-out images of the training identities (split by image)."],
    )
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def plot(trainer: ISPTrainer, path: Path) -> None:
    """Training curves (attacker accuracy, privacy losses, detection loss) and the LUT, one PNG."""
    rows, val = trainer.rows, trainer.val_rows
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
    xs = np.linspace(0, 1, trainer.isp.lut_points).tolist()
    lut = Panel("gamma LUT", xlabel="input (after CCM)", ylabel="output", ylim=(0, 1))
    lut.series["initial"] = (xs, trainer.init_params.lut)
    lut.series["learned"] = (xs, trainer.isp.lut.detach().cpu().tolist())
    c = trainer.config
    title = (f"train isp: {c.attacker}, omega {c.omega}, m {c.m}, n {c.n}, "
             f"{'protector-only' if c.protector_only else 'protector+attacker'}, {trainer.iteration} iterations")
    plot_panels(path, [acc, loss, det, lut], title=title)


@torch.inference_mode()
def samples(trainer: ISPTrainer, path: Path, faces: int = 8, persons: int = 3) -> None:
    """Raw vs protected (8-bit) validation faces and person images, one PNG."""
    data, isp, device = trainer.face_data, trainer.isp, trainer.device
    split = "val" if len(data.val_labels) else "train"
    count = min(faces, len(data.val_labels) if split == "val" else len(data.train_labels))
    x, _ = data.batch(np.arange(count), split=split, device=device)
    people = trainer.person_data.images[: min(persons, len(trainer.person_data))].to(device)
    save_image_grid(path, [
        ("raw faces", list(tensor_to_uint8(x))),
        ("protected", list(tensor_to_uint8(isp(x)))),
        ("raw persons", list(tensor_to_uint8(people))),
        ("protected", list(tensor_to_uint8(isp(people)))),
    ])

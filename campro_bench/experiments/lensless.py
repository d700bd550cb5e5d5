"""The lensless-camera "Recognition results" table (Nguyen Canh, Ngo, Nagahara, IEEE Access 2023).

For every variant of ``protocols/lensless.toml`` (fixed masks: pinhole, fully open, random; learned
masks without and with each "human imperceptible" regulariser) the mask and the owner's ResNet are
trained by :func:`campro_bench.training.lensless.train_lensless` into ``runs_dir/<variant>`` (a
finished run whose configuration matches is reused; an unfinished one resumes). Each row reports:

* the mask: aperture ratio, and the blurriness (Crete et al.) of its captures, as the talk does;
* utility, the owner's accuracy: closed-set top-1 on held-out images of the training identities
  (the talk's table) and nearest-neighbour top-1 on identities never trained on (mean and std over
  ``heldout_repeats`` seeded gallery/probe draws);
* image quality of the capture against the scene, and of the white-box attacker's Tikhonov /
  Wiener deconvolution with the known mask against the scene (PSNR, SSIM; held-out identities).

Third-party recognisers (black box) and gray-box re-enrolment run through ``campro-bench run e1``
with ``lensless:file=<runs_dir>/<variant>/mask.json`` specs (docs/lensless.md). The talk's own
numbers appear only in the ``talk_reference`` table, labelled as theirs.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import CamproError
from ..registries import EXPERIMENTS
from .base import ExperimentResult, RunContext


def variant_configs(spec: dict[str, Any]) -> dict[str, Any]:
    """``{variant: LenslessTrainConfig}``: the shared ``[train]`` table updated by each variant's."""
    from ..config import parse_config
    from ..training.lensless import LenslessTrainConfig

    shared = dict(spec.get("train", {}))
    table = spec.get("variant", {})
    names = list(spec.get("variants", table))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise CamproError(f"lensless variants {unknown} have no [variant.NAME] table; known: {', '.join(table)}")
    return {n: parse_config(LenslessTrainConfig, {**shared, **table[n]}, f"lensless variant '{n}'") for n in names}


def train_or_reuse(name: str, config: Any, runs_dir: Path, ctx: RunContext) -> dict[str, Any]:
    """The report of ``runs_dir/name``: reused when finished with the same configuration, else
    trained (resuming an unfinished run of the same configuration)."""
    import json

    from ..training.lensless import train_lensless

    folder = runs_dir / name
    report_file = folder / "report.json"
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        if report.get("config") == asdict(config):
            ctx.log(f"{name}: reusing the finished run in {folder}")
            return report
    resume = (folder / "checkpoint.pt").is_file() and not report_file.is_file()
    ctx.log(f"{name}: {'resuming' if resume else 'training'} in {folder}")
    try:
        report = train_lensless(config, folder, resume=resume, data_root=ctx.data_root, cache_dir=ctx.cache_dir,
                                log=lambda m: ctx.log(f"{name}: {m}"))
    except CamproError:
        if not resume:
            raise
        report = train_lensless(config, folder, resume=False, data_root=ctx.data_root, cache_dir=ctx.cache_dir,
                                log=lambda m: ctx.log(f"{name}: {m}"))
    assert report is not None
    return report


def attack_quality(mask: np.ndarray, scenes: torch.Tensor, config: Any, lam: float, iters: int) -> dict[str, float]:
    """PSNR / SSIM (mean over images) of captures and of their Tikhonov deconvolution vs the scenes."""
    from ..protectors.lensless import tikhonov_deconvolve
    from ..training.lensless import capture_eval
    from ..utility.quality import psnr, ssim

    mask_t = torch.tensor(mask, dtype=torch.float32)
    captures = capture_eval(mask_t, scenes, config, stream=3)
    restored = torch.cat([tikhonov_deconvolve(captures[i:i + 64], mask_t, lam, iters) for i in range(0, len(captures), 64)])
    return {
        "capture_psnr": float(psnr(captures, scenes).mean()), "capture_ssim": float(ssim(captures, scenes).mean()),
        "wiener_psnr": float(psnr(restored, scenes).mean()), "wiener_ssim": float(ssim(restored, scenes).mean()),
    }


def restoration_quality(mask_file: Path, data: Any, config: Any, options: dict[str, Any],
                        ctx: RunContext) -> dict[str, float]:
    """The white-box restoration attack: the U-Net of :mod:`campro_bench.training.unet` (plain L1,
    Eq. 7) trained on simulated (scene, capture) pairs of the *training* identities with the known
    mask, scored (PSNR / SSIM of the restoration vs the scene) on the unseen identities."""
    from ..io import tensor_to_uint8
    from ..protectors.lensless import Lensless
    from ..training.unet import TrainingImages, UNetTrainConfig, capture, train_unet
    from ..utility.quality import psnr, ssim

    unet_config = UNetTrainConfig.from_dict({"face_penalty": False, "quantize": True, **options})
    camera = Lensless(file=mask_file, image_size=config.image_size, noise=config.noise, bits=config.bits,
                      seed=config.seed).eval()
    images = [tensor_to_uint8(x) for x in data.train]
    result = train_unet(TrainingImages(images, None, info={"kind": "lensless scenes"}), camera, unet_config,
                        trainer="restoration", log=ctx.log)
    with torch.inference_mode():
        scenes = data.heldout
        restored = torch.cat([result.model(capture(camera, scenes[i:i + 64])).clamp(0, 1)
                              for i in range(0, len(scenes), 64)])
    return {"unet_psnr": float(psnr(restored, scenes).mean()), "unet_ssim": float(ssim(restored, scenes).mean()),
            "unet_final_l1": float(result.history[-1]["loss"])}


def _regularisers(config: Any) -> str:
    active = [f"{r}={getattr(config, f'w_{r}'):g}" for r in ("sim", "tv", "inv", "rip") if getattr(config, f"w_{r}")]
    return ", ".join(active) or "-"


def mask_figure(masks: dict[str, np.ndarray], pattern_rows: pd.DataFrame) -> Any:
    """The masks of all variants side by side (mask pixels only; no dataset image), each in a frame
    (a fully open mask is white on white otherwise) with one colour bar for the transmission."""
    from .figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(masks), figsize=(1.9 * len(masks) + 1.2, 2.6), squeeze=False)
    image = None
    for ax, (name, mask) in zip(axes[0], masks.items()):
        image = ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ratio = float(pattern_rows.loc[pattern_rows["variant"] == name, "aperture_ratio"].iloc[0])
        ax.set_title(f"{name}\n(aperture {ratio:.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # the frame: the mask's extent, whatever its content
            spine.set_visible(True)
            spine.set_color("black")
            spine.set_linewidth(1.0)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0]), fraction=0.02, pad=0.02)
        bar.set_label("transmission (0 = opaque, 1 = open)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle("masks (aperture ratio), measured by campro-bench", fontsize=9)
    return fig


@EXPERIMENTS.register("lensless", protocol="lensless",
                      description="lensless camera: talk's Recognition results (masks x regularisers), attacks")
def run_lensless(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    """Run the lensless table from its spec; see the module docstring."""
    from ..protectors.lensless import Iters, Lam, load_mask_file
    from ..specs import check_number
    from ..training.lensless import load_lensless_data

    configs = variant_configs(spec)
    if not configs:
        raise CamproError("the lensless protocol lists no variants")
    runs_dir = Path(spec.get("runs_dir", "results/lensless-runs"))
    attack = dict(spec.get("attack", {}))
    lam, iters = attack.pop("wiener_lam", 1e-3), attack.pop("wiener_iters", 50)
    if attack:
        raise CamproError(f"unknown [attack] option(s) {', '.join(attack)}; known: wiener_lam, wiener_iters")
    for key, value, declared in (("wiener_lam", lam, Lam), ("wiener_iters", iters, Iters)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        problem = check_number(value, declared) if number else "must be a number"
        if problem:  # the lensless-wiener protector's declared ranges
            raise CamproError(f"[attack] {key} = {value!r} {problem}")
    lam, iters = float(lam), int(iters)
    restoration = dict(spec.get("restoration", {}))
    restore_variants = list(restoration.pop("variants", []))
    extra_seeds = [int(x) for x in spec.get("extra_seeds", [])]
    data_keys = ("dataset", "alignment", "detector", "min_images", "identities", "heldout_identities",
                 "val_per_identity", "image_size", "seed")
    data_cache: dict[tuple[Any, ...], Any] = {}
    rows, masks = [], {}
    for name, config in configs.items():
        report = train_or_reuse(name, config, runs_dir, ctx)
        mask, _ = load_mask_file(runs_dir / name / "mask.json")
        masks[name] = mask
        key = tuple(getattr(config, k) for k in data_keys)
        if key not in data_cache:
            data_cache[key] = load_lensless_data(config, ctx.data_root, ctx.cache_dir)
        quality = attack_quality(mask, data_cache[key].heldout, config, lam, iters)
        if name in restore_variants:
            ctx.log(f"{name}: training the restoration U-Net")
            quality.update(restoration_quality(runs_dir / name / "mask.json", data_cache[key], config, restoration, ctx))
        final = report["final"]
        repeats = [final]
        for seed in extra_seeds:
            seeded = replace(config, seed=seed)
            extra = train_or_reuse(f"{name}-seed{seed}", seeded, runs_dir, ctx)
            repeats.append(extra["final"])
            ctx.manifest.notes.setdefault("runs", {})[f"{name}-seed{seed}"] = {
                "folder": (runs_dir / f"{name}-seed{seed}").as_posix(), "mask_digest": extra["mask_digest"],
                "config": asdict(seeded), "data": extra["data"]}
        closed = np.array([r["val_accuracy"] for r in repeats])
        unseen = np.array([r["heldout_accuracy_mean"] for r in repeats])
        rows.append({
            "variant": name, "mask": config.mask, "regularisers": _regularisers(config),
            "image_size": config.image_size, "mask_size": config.mask_size,
            "aperture_ratio": final["aperture_ratio"], "blurriness": final["blurriness"],
            "scene_blurriness": final["scene_blurriness"],
            "owner_closed_set_top1": final["val_accuracy"],
            "owner_heldout_ids_top1_mean": final["heldout_accuracy_mean"],
            "owner_heldout_ids_top1_std": final["heldout_accuracy_std"],
            "heldout_chance": final["heldout_chance"], **quality,
            "mask_digest": report["mask_digest"], "epochs": report["epochs"],
            "seeds": " ".join(str(x) for x in [config.seed, *extra_seeds]),
            "owner_closed_set_top1_seed_mean": float(closed.mean()),
            "owner_closed_set_top1_seed_std": float(closed.std(ddof=1)) if len(closed) > 1 else float("nan"),
            "owner_heldout_ids_top1_seed_mean": float(unseen.mean()),
            "owner_heldout_ids_top1_seed_std": float(unseen.std(ddof=1)) if len(unseen) > 1 else float("nan"),
        })
        ctx.manifest.notes.setdefault("runs", {})[name] = {"folder": (runs_dir / name).as_posix(),
                                                           "mask_digest": report["mask_digest"],
                                                           "config": asdict(config), "data": report["data"]}
    table = pd.DataFrame(rows)
    recognition = pd.DataFrame({
        "variant": table["variant"], "regularisers": table["regularisers"],
        "aperture ratio": table["aperture_ratio"].round(3), "blurriness": table["blurriness"].round(3),
        "owner top-1 % (closed set)": (100 * table["owner_closed_set_top1"]).round(2),
        "owner top-1 % (unseen ids)": [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in
                                       zip(table["owner_heldout_ids_top1_mean"], table["owner_heldout_ids_top1_std"])],
        "capture PSNR/SSIM": [f"{p:.1f} / {s:.3f}" for p, s in zip(table["capture_psnr"], table["capture_ssim"])],
        "Wiener PSNR/SSIM": [f"{p:.1f} / {s:.3f}" for p, s in zip(table["wiener_psnr"], table["wiener_ssim"])],
    })
    if extra_seeds:
        n = 1 + len(extra_seeds)
        recognition.insert(5, f"owner top-1 % closed set, {n} seeds", [
            f"{100 * m:.1f} ± {100 * sd:.1f}" for m, sd in
            zip(table["owner_closed_set_top1_seed_mean"], table["owner_closed_set_top1_seed_std"])])
        recognition.insert(7, f"owner top-1 % unseen ids, {n} seeds", [
            f"{100 * m:.1f} ± {100 * sd:.1f}" for m, sd in
            zip(table["owner_heldout_ids_top1_seed_mean"], table["owner_heldout_ids_top1_seed_std"])])
    if "unet_psnr" in table:
        recognition["U-Net PSNR/SSIM"] = [f"{p:.1f} / {s:.3f}" if p == p else "-"
                                          for p, s in zip(table["unet_psnr"], table["unet_ssim"])]
    first = next(iter(configs.values()))
    scale = {f.name: getattr(first, f.name) for f in fields(first)
             if f.name in ("dataset", "identities", "heldout_identities", "val_per_identity", "image_size",
                           "mask_size", "epochs", "noise", "bits", "width", "seed")}
    notes = [
        f"- Scale (CPU): {scale}.",
        "- Owner closed set: top-1 of the trained ResNet on held-out images of its training identities (the talk's "
        "'Recognition results'); unseen ids: nearest neighbour on its features, 1 gallery + 1 probe per identity, "
        f"{first.heldout_repeats} seeded repeats (mean ± std). Last epoch, no selection.",
        "- Blurriness: Crete et al. blur effect (skimage.measure.blur_effect) of the captures, 0 sharp .. 1 blurry; "
        "aperture ratio: mean mask transmission.",
        f"- PSNR/SSIM on the unseen identities' scenes at the sensor size; Wiener = Tikhonov deconvolution with the "
        f"known mask (lam {lam:g}, {iters} CG steps), the white-box attacker.",
        f"- U-Net: restoration network (training/unet.py, plain L1) trained on simulated captures of the training "
        f"identities with the known mask ({restoration or 'defaults'}), scored on the unseen identities; only for "
        f"{restore_variants or 'no variant'}.",
        f"- Seeds: columns without 'seeds' are the run with seed {first.seed} (every other column too); the "
        f"'N seeds' columns are mean ± std over training runs with seeds {[first.seed, *extra_seeds]} (each seed "
        "also redraws the image split and the unseen-identity draws; unseen ids: std of the per-seed means).",
        "- talk_reference: the talk's own numbers (theirs; MS-Celeb, other scale), never ours.",
    ]
    from ..privacy.paper import load_paper_table

    talk = load_paper_table("talk_lensless_recognition")[["pattern", "msceleb_63_32", "source"]]
    talk = talk.rename(columns={"msceleb_63_32": "their top-1 % (MS-Celeb, 63x63 image, 32x32 mask)"})
    patterns = load_paper_table("talk_lensless_patterns")
    return ExperimentResult(
        tables={"lensless": table, "recognition": recognition, "talk_reference": talk, "talk_patterns": patterns},
        figures={"masks": mask_figure(masks, table)}, notes="\n".join(notes),
    )

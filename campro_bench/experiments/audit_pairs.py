"""How many leaked (scene, capture) pairs break the camera? The audit's accuracy-versus-N curve.

An attacker who holds N photographs of known scenes taken through the protected camera (leaked
calibration data, images the owner published next to the originals) can learn the camera's inverse
from them. For each N of ``pairs.counts`` the audit

* trains a decoder: the restoration rung's U-Net (E5's, plain L1) on the N pairs alone, with
  ``pairs.budget`` x ``restoration.steps`` AdamW steps (for any protector);
* for a lensless camera (``lensless``, also under a capture condition), estimates the mask from the
  same N pairs by least squares and deconvolves with the estimate
  (:mod:`campro_bench.attacks.mask_estimation`; the deconvolution weight chosen on those N pairs);

and identifies the restored EVAL probes against the raw gallery. The pairs are TRAIN images (the
attacker's own identities), the first N of one seeded permutation of them, so a larger N holds every
smaller one's pairs. The curve (``pairs.csv``, ``pairs-<protector>.png``) is a measurement of how the
attack grows with leaked data; it takes no part in the verdict (the restoration rung trained on every
TRAIN image is the ladder's attack).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from ..errors import CamproError
from ..io.hashing import ids_digest
from . import audit_budget
from .common import check_protector

if TYPE_CHECKING:
    from ..protectors.base import Protector
    from .audit import AuditConfig, AuditSplit, Evaluator
    from .base import RunContext

PAIRS_STREAM = 2
"""Second word of the pair order's generator seed ``default_rng([seed, PAIRS_STREAM])``."""
DECODER, MASK = "decoder (U-Net on N pairs)", "mask estimation (N pairs)"


def check_counts(counts: Sequence[int]) -> list[int]:
    """The pair counts if they are integers >= 1 and strictly increasing ([] = no curve); else one error line."""
    values = [int(n) for n in counts]
    if any(n < 1 for n in values) or any(a >= b for a, b in zip(values, values[1:])):
        raise CamproError(f"pairs.counts must be strictly increasing numbers of pairs >= 1 (e.g. [8, 32, 128]), "
                          f"got {list(counts)}")
    return values


def pair_ids(train_ids: Sequence[str], seed: int) -> list[str]:
    """The TRAIN image ids in the seeded order the pairs are taken in (the first N are the N pairs)."""
    order = np.random.default_rng([seed, PAIRS_STREAM]).permutation(len(train_ids))
    return [train_ids[i] for i in order]


def leaked(cfg: "AuditConfig", split: "AuditSplit", n: int) -> list[str]:
    """The image ids of the first ``n`` leaked pairs; more than TRAIN holds is one error line."""
    if n > len(split.train_ids):
        raise CamproError(f"pairs.counts asks for {n} leaked pairs; TRAIN holds {len(split.train_ids)} images "
                          "(raise train_identities or lower pairs.counts)")
    return pair_ids(split.train_ids, cfg.seed)[:n]


def decoder_task(ctx: "RunContext", cfg: "AuditConfig", spec: str, split: "AuditSplit", amount: float) -> dict[str, Any]:
    """One executor task: the restoration U-Net trained on the first ``amount`` leaked pairs (every
    model's alignment of those images). The weights path is relative to the cache."""
    from ..recognizers.base import contract_of
    from ..training.restoration import face_crop_images, restoration_network

    n = int(amount)
    ids = leaked(cfg, split, n)
    alignments = list(dict.fromkeys(contract_of(m).alignment for m in cfg.models))
    data = face_crop_images(cfg.dataset, ids, alignments, detector=cfg.detector, data_root=ctx.data_root_option,
                            cache_dir=ctx.cache_dir, device=str(ctx.device), progress=ctx.progress)
    if not len(data):
        raise CamproError(f"no face found in the {n} leaked pair(s) of {cfg.dataset}: raise pairs.counts")
    section = audit_budget.budget_config(cfg, cfg.pairs.budget).restoration
    section = dataclasses.replace(section, batch_size=min(section.batch_size, len(data)))
    config = section.unet(cfg.seed, len(data))
    key = {"kind": "faces", "dataset": cfg.dataset, "train": ids_digest(ids), "alignments": alignments,
           "detector": cfg.detector, "pairs": n}
    with ctx.manifest.timer("pairs/decoder/train"):
        weights, report = restoration_network(data, check_protector(spec), config, ctx.cache_dir, key,
                                              device=str(ctx.device), progress=ctx.progress, log=ctx.log)
    info = {"pairs": n, "crops": len(data), "pairs_sha": ids_digest(ids), "history": report.get("history"),
            "cached": report.get("cached"), "budget": section.budget(len(data))}
    return {"weights": str(weights.relative_to(ctx.cache_dir)), "info": info}


def _mask_attack(cfg: "AuditConfig", base: "Protector", split: "AuditSplit", n: int, ctx: "RunContext") -> Any:
    """Mask estimation from the first ``n`` leaked pairs (models[0]'s alignment), then deconvolution."""
    import torch

    from ..attacks.inverses import LenslessDeconvolution, select_on_train
    from ..attacks.mask_estimation import estimate_psf
    from ..io import uint8_to_tensor
    from ..recognizers.base import contract_of
    from ..training.restoration import face_crop_images

    data = face_crop_images(cfg.dataset, leaked(cfg, split, n), [contract_of(cfg.models[0]).alignment],
                            detector=cfg.detector, data_root=ctx.data_root_option, cache_dir=ctx.cache_dir,
                            device=str(ctx.device), progress=ctx.progress)
    crops = np.stack(data.images)
    raw = uint8_to_tensor(crops)
    with torch.no_grad():
        scenes, captures = base.scene(raw), base.capture(raw)  # type: ignore[attr-defined]
    estimate = estimate_psf(scenes, captures, int(base.mask_size)).clamp_min(0)  # type: ignore[attr-defined]
    candidates = [LenslessDeconvolution(estimate, int(base.image_size), lam)  # type: ignore[attr-defined]
                  for lam in (1e-4, 1e-3, 1e-2)]
    for c in candidates:
        c.name = f"lensless-mask-estimate-{n}-pairs"
    return select_on_train(base, candidates, crops, "lensless mask estimation")


def pair_rows(cfg: "AuditConfig", spec: str, protector: "Protector", trained: list[tuple[float, dict[str, Any]]],
              split: "AuditSplit", ev: "Evaluator", ctx: "RunContext") -> list[dict[str, Any]]:
    """The accuracy-versus-N entries of one protector: the decoders of :func:`decoder_task` (a
    training whose loss did not fall is ``failed``, not scored) and, for a lensless camera, mask
    estimation; restored EVAL probes against the raw gallery, every model and classifier."""
    from ..attacks.base import Attacked, save_protector_config
    from ..conditions import Captured
    from ..privacy.stats import summarize
    from ..protectors.base import build_protector

    base_config = save_protector_config(protector, ctx.cache_dir / "e5")
    variants: list[tuple[str, int, str, Any, dict[str, Any]]] = []
    for amount, outcome in trained:
        history = outcome["info"].get("history") or []
        status = audit_budget.training_status(history)
        restored = None if status == audit_budget.FAILED else build_protector(
            f"restored:base={base_config},weights={ctx.cache_dir / outcome['weights']}")
        variants.append((DECODER, int(amount), status, restored,
                         {"final_loss": (history or [{}])[-1].get("loss", float("nan")),
                          "steps": outcome["info"]["budget"]["steps"]}))
    base = protector.base if isinstance(protector, Captured) else protector
    if base.name == "lensless":
        for n in cfg.pairs.counts:
            attack = _mask_attack(cfg, base, split, n, ctx)
            variants.append((MASK, n, audit_budget.OK, Attacked(protector, attack, attack.spec()),
                             {"selection": str(attack.selection["rule"])}))
    out = []
    with ctx.manifest.timer("pairs/identify"):
        for method, n, status, probes, extra in variants:
            for model in cfg.models:
                common = {"protector": spec, "method": method, "pairs": n, "status": status, "model": model, **extra}
                if probes is None:
                    out += [{**common, "classifier": c, "accuracy_mean": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                             "chance": np.nan} for c in cfg.classifiers]
                    continue
                raw, features = ev.features(model, "raw"), ev.features(model, probes)
                for clf in cfg.classifiers:
                    res = ev.identify(clf, raw, {"p": features})["p"]
                    s = summarize(res.accuracies, cfg.confidence)
                    out.append({**common, "classifier": clf, "accuracy_mean": s.mean, "ci_low": s.ci_low,
                                "ci_high": s.ci_high, "chance": res.chance})
    return out


def pairs_figure(table: pd.DataFrame, spec: str, classifier: str) -> Any:
    """Top-1 against the number of leaked pairs (log axis), one line per (method, model), 95 % band."""
    from .figures import mark_no_data, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = table[(table["protector"] == spec) & (table["classifier"] == classifier)]
    drawn = False
    for (method, model), part in rows.groupby(["method", "model"], sort=False):
        part = part[part["status"] == audit_budget.OK].sort_values("pairs")
        if part.empty:
            continue
        style = "-o" if method == DECODER else "--s"
        line = ax.plot(part["pairs"], 100 * part["accuracy_mean"], style, ms=3.5, label=f"{method}, {model}")[0]
        ax.fill_between(part["pairs"], 100 * part["ci_low"], 100 * part["ci_high"], color=line.get_color(), alpha=0.15)
        drawn = True
    if not drawn:
        mark_no_data(ax, "no data: every decoder failed (its loss did not fall)")
    else:
        chance = float(rows["chance"].dropna().iloc[0]) if rows["chance"].notna().any() else np.nan
        if np.isfinite(chance):
            ax.axhline(100 * chance, color="k", ls=":", lw=0.8, label="chance")
        ax.set_xscale("log")
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel="leaked (scene, capture) pairs N (TRAIN images)", ylabel=f"top-1 % ({classifier}, raw gallery)")
    ax.set_title(f"{spec}: how many leaked pairs break the camera?", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

"""The audit's report: per-protector Markdown, figures and a small image grid.

* ``accuracy-<protector>.png``: top-1 per rung and attack, one bar per model, 95 % interval bars;
* ``plane.png``: every audited protector on the privacy (worst case) vs utility (PSNR, person AP)
  plane;
* ``grid-<protector>.png``: a few EVAL faces raw / protected / restored / best cheap attack. It
  shows dataset images, so it is written only into the run's output folder (never commit it).
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..io import tensor_to_uint8, uint8_to_tensor
from ..protectors.base import Protector
from .figures import mark_no_data, place_labels, pyplot

if TYPE_CHECKING:
    from ..attacks.base import ImageAttack
    from .audit import AuditConfig, AuditSplit
    from .base import RunContext


def slug(spec: str) -> str:
    """A protector spec as a file-name part (runs of other characters become ``-``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")


def figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _pyplot() -> Any:
    return pyplot()


def image_grid(cfg: "AuditConfig", split: "AuditSplit", protector: Protector, restored: Protector | None,
               attacks: list["ImageAttack"], rows: pd.DataFrame, ctx: "RunContext",
               warnings: dict[str, str] | None = None) -> bytes:
    """PNG of ``grid_faces`` EVAL crops: raw, protected, restored, best cheap attack (by accuracy).

    A rung named in ``warnings`` (:func:`rung_warnings`) has its row labelled with the warning, so a
    restorer that did not learn is not mistaken for a protector that defeats restoration."""
    from ..attacks.base import Attacked, quantize
    from ..faces.pipeline import aligned_crops
    from ..recognizers.base import contract_of

    if cfg.grid_faces < 1:
        return b""
    crops = aligned_crops(cfg.dataset, contract_of(cfg.models[0]).alignment, pipeline="paper", protector="raw",
                          detector=cfg.detector, data_root=ctx.data_root_option, cache_dir=ctx.cache_dir,
                          image_ids=split.eval_ids[: 4 * cfg.grid_faces], device=str(ctx.device))
    faces = crops.crops[crops.found][: cfg.grid_faces]
    if not len(faces):
        return b""
    x = uint8_to_tensor(np.stack(faces))
    panels: dict[str, torch.Tensor] = {"raw": x}
    with torch.no_grad():
        panels["protected"] = quantize(protector(x))
        if restored is not None:
            note = (warnings or {}).get("restoration")
            panels["restored (U-Net)" + (f"\n{note.split(':')[0].upper()}" if note else "")] = restored(x)
        cheap = rows[rows["rung"] == "cheap"]
        if len(cheap):
            best = cheap.loc[cheap["accuracy_mean"].idxmax(), "attack"]
            for attack in attacks:
                if attack.spec() == best:
                    panels[f"best cheap: {best}"] = Attacked(protector, attack, best)(x)
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), len(faces), figsize=(1.6 * len(faces), 1.7 * len(panels)), squeeze=False)
    for r, (label, images) in enumerate(panels.items()):
        for c in range(len(faces)):
            axes[r][c].imshow(tensor_to_uint8(images[c]))
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    data = figure_png(fig)
    plt.close(fig)
    return data


CONVERGED_DROP = 0.01
"""A training rung converged when its last epoch's loss is at least 1 % below its first epoch's."""
HISTORY_LOSS = {"restoration": "loss", "retrain": "train_loss"}
"""The loss each training rung records per epoch in its history."""
LONGER = {"restoration": "restoration.steps=...", "retrain": "retrain.epochs=..."}
"""The protocol key that trains each rung longer."""


def training_warning(history: list[dict[str, Any]] | None, key: str) -> str | None:
    """Why a training rung's rows may understate its attack (one line), or ``None`` when it trained.

    ``failed``: a loss is not finite. ``did not converge``: with two or more epochs, the last loss
    is not :data:`CONVERGED_DROP` below the first (a restorer that learned nothing returns flat grey
    faces and would read as a strong protector). A single epoch cannot show a trend: no judgement.
    """
    losses = [float(h[key]) for h in history or [] if key in h]
    if not losses:
        return None
    if not all(np.isfinite(losses)):
        return f"failed: its training loss became {losses[-1]} (not finite)"
    if len(losses) >= 2 and losses[-1] > losses[0] * (1 - CONVERGED_DROP):
        return (f"did not converge: its training loss went {losses[0]:.4g} -> {losses[-1]:.4g} over "
                f"{len(losses)} epochs (less than {CONVERGED_DROP:.0%} lower)")
    return None


def rung_warnings(info: dict[str, Any]) -> dict[str, str]:
    """``{rung: warning}`` for the training rungs of one protector's audit notes that failed or did not converge."""
    out = {}
    for rung, key in HISTORY_LOSS.items():
        warning = training_warning((info.get(rung) or {}).get("history"), key)
        if warning:
            out[rung] = warning
    return out


def accuracy_figure(rows: pd.DataFrame, title: str) -> Any:
    """Bars per (rung, attack, classifier, gallery), one colour per model, interval error bars."""
    plt = _pyplot()
    rows = rows.assign(label=rows["rung"] + ": " + rows["attack"] + " [" + rows["classifier"] + ", " +
                       rows["gallery"] + " gallery]")
    labels = list(dict.fromkeys(rows["label"]))
    models = list(dict.fromkeys(rows["model"]))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) * max(1, len(models)) / 2 + 1.5))
    height = 0.8 / max(1, len(models))
    for m, model in enumerate(models):
        part = rows[rows["model"] == model].set_index("label")
        ys = [i + m * height for i, lab in enumerate(labels) if lab in part.index]
        sub = part.loc[[lab for lab in labels if lab in part.index]]
        mean = 100 * sub["accuracy_mean"].to_numpy()
        err = np.vstack([mean - 100 * sub["ci_low"].to_numpy(), 100 * sub["ci_high"].to_numpy() - mean])
        ax.barh(ys, mean, height=height, xerr=np.nan_to_num(err), label=model, capsize=1.5, error_kw={"lw": 0.6})
    chance = float(rows["chance"].iloc[0])
    ax.axvline(100 * chance, color="k", ls=":", lw=0.8, label="chance")
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2)
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("top-1 identification accuracy, % (mean, 95 % interval over draws)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plane_figure(summary: pd.DataFrame) -> Any:
    """Privacy (worst-case top-1, with interval) against utility (PSNR and person AP), labels placed
    without overlap; a panel without any value says "no data"."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, column, label in ((axes[0], "PSNR_dB", "PSNR (dB, E4)"), (axes[1], "person_AP", "person AP (E3)")):
        xs, ys, names = [], [], []
        for r in summary.itertuples():
            y = getattr(r, column)
            if not np.isfinite(y):
                continue
            x = 100 * r.worst_case_top1
            xerr = [[x - 100 * r.ci_low], [100 * r.ci_high - x]] if np.isfinite(r.ci_low) else None
            ax.errorbar([x], [y], xerr=xerr, fmt="o", capsize=3, color="C0", ecolor="0.6", elinewidth=0.8)
            xs.append(x)
            ys.append(y)
            names.append(r.protector)
        if not names:
            mark_no_data(ax, f"no data: no {label.split(' (')[0]} for these protectors\nin the tables listed under [utility]")
        else:
            place_labels(ax, xs, ys, names, fontsize=6.5)
        ax.set(xlabel="worst-case top-1 %, any rung (lower = more private)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].set_title("privacy vs image quality", fontsize=9)
    axes[1].set_title("privacy vs person detection", fontsize=9)
    fig.tight_layout()
    return fig


def _percent(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{100 * v:.1f}"


def protector_report(spec: str, rows: pd.DataFrame, verdict: pd.Series, name: str,
                     warnings: dict[str, str] | None = None) -> str:
    """Markdown report of one protector (worst case first, failed or non-converged rungs, then every row)."""
    table = rows.assign(**{"top-1 %": [f"{_percent(m)} [{_percent(lo)}, {_percent(hi)}]" for m, lo, hi in
                                       zip(rows["accuracy_mean"], rows["ci_low"], rows["ci_high"])],
                           "± std": [_percent(s) for s in rows["accuracy_std"]],
                           "x chance": [f"{v:.1f}" for v in rows["x_chance"]]})
    table = table[["rung", "attack", "model", "classifier", "gallery", "top-1 %", "± std", "x chance",
                   "probe_detect_rate"]]
    lines = [f"# Privacy audit: `{spec}`", "", *unbiased_lines(verdict),
        f"**{'Upper bound (max over rows, chosen on EVAL)' if 'verdict_top1' in verdict else 'Worst case'}: "
        f"{_percent(verdict['worst_case_top1'])} % top-1** (95 % interval {_percent(verdict['ci_low'])}-"
        f"{_percent(verdict['ci_high'])} %, {verdict['x_chance']:.1f}x chance) by the **{verdict['rung']}** rung "
        f"({verdict['attack']}, {verdict['model']}, {verdict['classifier']}, {verdict['gallery']} gallery). "
        f"Best black-box: {_percent(verdict['black_box_best'])} %; raw images: {_percent(verdict['raw_best'])} %.", "",
        *[f"**Warning: the {rung} rung {text}.** Its rows understate what this attack can do; train it longer "
          f"(`--set {LONGER[rung]}`) before reading it as a strength of the protector." for rung, text in
          (warnings or {}).items()],
        *([""] if warnings else []),
        f"![accuracy per rung](accuracy-{name}.png)", "", "![privacy vs utility](plane.png)", "",
        f"Image grid (dataset images, only in this folder): `grid-{name}.png`.", "",
        table.to_markdown(index=False), "",
    ]
    return "\n".join(lines)


def unbiased_lines(verdict: pd.Series) -> list[str]:
    """The unbiased verdict's paragraph (when the audit had SELECT identities)."""
    if "verdict_top1" not in verdict or not np.isfinite(verdict["verdict_top1"]):
        return []
    return [f"**Verdict (unbiased): {_percent(verdict['verdict_top1'])} % top-1** (95 % interval "
            f"{_percent(verdict['verdict_ci_low'])}-{_percent(verdict['verdict_ci_high'])} %, "
            f"{verdict['verdict_x_chance']:.1f}x chance): the attack with the highest accuracy on the SELECT "
            f"identities ({_percent(verdict['select_top1'])} % there, best of {int(verdict['select_rows'])} rows) is "
            f"the **{verdict['chosen_rung']}** rung ({verdict['chosen_attack']}, {verdict['chosen_model']}, "
            f"{verdict['chosen_classifier']}, {verdict['chosen_gallery']} gallery), scored once on EVAL.", ""]


def budget_lines(curve: pd.DataFrame | None, spec: str) -> list[str]:
    """The trained rungs' accuracy-versus-budget table of one protector (status, convergence)."""
    if curve is None or curve.empty:
        return []
    rows = curve[curve["protector"] == spec]
    if rows.empty:
        return []
    shown = rows.assign(**{"top-1 %": [f"{_percent(m)} [{_percent(lo)}, {_percent(hi)}]" if s == "ok" else "failed: not scored"
                                       for m, lo, hi, s in zip(rows["accuracy_mean"], rows["ci_low"], rows["ci_high"],
                                                               rows["status"])]})
    if "select_mean" in shown:
        shown["SELECT top-1 %"] = [_percent(v) for v in shown["select_mean"]]
    columns = ["rung", "budget", "steps_asked", "steps", "unit", "model", "classifier", "gallery", "status", "final_loss", "top-1 %",
               "SELECT top-1 %", "converged"]
    shown = shown[[c for c in columns if c in shown]]
    judged = "the SELECT identities" if "select_mean" in rows else "EVAL (the audit has no SELECT identities)"
    return ["## Trained rungs: accuracy versus training budget", "",
            "`converged = no`: the last budget still gains more than half its 95 % interval over the previous one "
            f"(judged on {judged}); `failed`: the training loss did not fall, so the budget is not scored.", "",
            shown.to_markdown(index=False), ""]


def pairs_lines(pairs: pd.DataFrame | None, spec: str, name: str) -> list[str]:
    """The accuracy-versus-leaked-pairs table of one protector."""
    if pairs is None or pairs.empty or not (pairs["protector"] == spec).any():
        return []
    rows = pairs[pairs["protector"] == spec]
    shown = rows.assign(**{"top-1 %": [f"{_percent(m)} [{_percent(lo)}, {_percent(hi)}]" if s == "ok" else "failed: not scored"
                                       for m, lo, hi, s in zip(rows["accuracy_mean"], rows["ci_low"], rows["ci_high"],
                                                               rows["status"])]})
    shown = shown[["method", "pairs", "model", "classifier", "status", "top-1 %"]]
    return ["## How many leaked (scene, capture) pairs break the camera?", "",
            "Decoders (and, for a lensless camera, mask estimation) from the first N of a seeded order of TRAIN images; "
            "restored EVAL probes against the raw gallery. Not part of the verdict.", "",
            f"![accuracy versus leaked pairs](pairs-{name}.png)", "", shown.to_markdown(index=False), ""]


def reports(cfg: "AuditConfig", long: pd.DataFrame, summary: pd.DataFrame, grids: dict[str, bytes],
            split: "AuditSplit", notes: dict[str, Any] | None = None, curve: pd.DataFrame | None = None,
            threats: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None
            ) -> tuple[dict[str, Any], dict[str, bytes]]:
    from .audit_pairs import pairs_figure
    from .audit_threats import report_lines

    figures: dict[str, Any] = {"plane": plane_figure(summary)}
    files: dict[str, bytes] = {}
    for spec in cfg.protectors:
        name = slug(spec)
        rows = long[long["protector"] == spec]
        figures[f"accuracy-{name}"] = accuracy_figure(rows, f"{spec}: attacker ladder on {cfg.dataset}")
        verdict = summary[summary["protector"] == spec].iloc[0]
        warnings = rung_warnings((notes or {}).get(spec, {}))
        more = [*report_lines(threats, spec), *budget_lines(curve, spec), *pairs_lines(pairs, spec, name)]
        text = protector_report(spec, rows, verdict, name, warnings) + "\n".join(more)
        if pairs is not None and not pairs.empty and (pairs["protector"] == spec).any():
            figures[f"pairs-{name}"] = pairs_figure(pairs, spec, cfg.classifiers[0])
        files[f"report-{name}.md"] = text.encode()
        if grids.get(spec):
            files[f"grid-{name}.png"] = grids[spec]
    return figures, files


def summary_notes(cfg: "AuditConfig", split: "AuditSplit", notes: dict[str, Any] | None = None) -> str:
    warned = [f"- **Warning: {spec}: the {rung} rung {text}**; its rows understate that attack."
              for spec, info in (notes or {}).items() for rung, text in rung_warnings(info).items()]
    return "\n".join([*warned,
        f"- Data: {cfg.dataset}; EVAL = {len(split.eval_names)} identities ({len(split.eval_ids)} images), TRAIN "
        f"(attacker) = {len(split.train_names)} other identities ({len(split.train_ids)} images); at most "
        f"{cfg.max_images_per_identity} images per identity; the two sets share no identity (checked).",
        f"- Closed-set identification on EVAL, {cfg.repeats} gallery/probe draws (seeds {cfg.seed}.."
        f"{cfg.seed + cfg.repeats - 1}); models {', '.join(cfg.models)}; classifiers {', '.join(cfg.classifiers)}.",
        f"- Rungs: {', '.join(cfg.rungs)}. Cheap: {', '.join(cfg.cheap_attacks)}"
        + (f" on {', '.join(cfg.cheap.models)}" if cfg.cheap.models else "")
        + (" + the protector's analytic inverses (choices made on TRAIN crops)." if cfg.cheap.inverses else "."),
        "- worst_case_top1: the highest mean top-1 over every attack row (rungs 1-5, all models, classifiers, "
        "galleries) with that row's 95 % t-interval. Taking the maximum over rows looks at EVAL accuracies, so it "
        "is an upper bound on what one pre-chosen attack achieves; no row itself is tuned on EVAL identities.",
        *([f"- verdict_top1 (unbiased): every attack row is also scored on {cfg.select_identities} SELECT identities "
            "(neither EVAL nor TRAIN); the row best on SELECT is scored once on EVAL, with its interval. worst_case_top1 "
            "stays beside it as the upper bound."] if cfg.select_identities else
          ["- select_identities = 0: no unbiased verdict; worst_case_top1 is the only (upper-bound) figure."]),
        *([f"- Threat models: {', '.join(cfg.threat_models)} (threat_verdict.csv: raw, unbiased verdict and upper "
           "bound per metric; thresholds calibrated on raw-vs-raw comparisons of the same identities and draws; "
           "the re-training rung is closed-set only)."] if len(cfg.threat_models) > 1 else []),
        "- Utility: person AP from E3 tables and PSNR from E4 tables where the protector appears in them "
        "(source columns), else as stated.",
    ])

"""Privacy-utility trade-off sweep (paper Sec. VI-F, Fig. 11).

Every method level of the spec (low resolution x4/x8/x16, defocus 9/3, 13/5, 15/7, 25/7, each
CamPro ISP preset, the raw reference) becomes one point:

* privacy (x): closed-set face identification accuracy on the face dataset, averaged over the
  offline recognisers — the E1 protocol (:func:`campro_bench.privacy.evaluate.run_protocol`,
  cached embeddings), probes protected, gallery raw by default;
* utility (y): person-detection AP on the protected val (test) images with its 95 % bootstrap
  interval (error bars) — the E3 functions (a detector fine-tuned per protector, cached, or the
  pretrained one with ``finetune_epochs = 0``), or the point of an earlier E3 run listed in
  ``utility_from`` when its test images and protocol are this sweep's (checked; a run that does
  not qualify is passed over with a note); ``measure_missing = false`` leaves the other points'
  AP empty instead of measuring them.

Outputs: ``tradeoff.csv`` (one row per point, per-model accuracies, AP and the other detection
metrics, whether the point is on the Pareto front), ``tradeoff.png`` (accuracy vs AP, one marker
and line per method, the Pareto front drawn and circled) and the manifest. Presets that are not
shipped are skipped when their row says ``optional = true``. ``--compare paper`` adds only the
points the paper states in its text (no values read off Fig. 11), in a separate panel and table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import option
from ..errors import CamproError, UnknownNameError
from ..privacy.evaluate import SPLITS_SEED_PREFIX, ProtocolConfig, run_protocol
from ..protectors import build_protector
from ..registries import EXPERIMENTS
from ..utility.detection_eval import METRICS
from .base import ExperimentResult, RunContext
from .common import check_compare, resolve_table_path
from .earlier_detection import PROTOCOL_KEYS, Wanted, earlier_points, lookup, run_record
from .figures import legend_outside, place_labels, pyplot
from .finetuned import DetectionJob, DetectionUtilityConfig, PersonSubset, detection_results
from .spec import parse_protocol
from .tradeoff_audits import audited, read_audit

PAPER_POINTS = [
    {"method": "Raw", "accuracy_pct": 84.3, "AP": 0.578,
     "source": "Table I (CelebA, Raw, Nearest, average of 10 models) and Table III (Raw Images AP)"},
    {"method": "CamPro (omega = 0.2)", "accuracy_pct": 0.3, "AP": 0.475,
     "source": "Sec. VI-F: 'the AP increases from 0.475 to 0.540 ... while the face identification accuracy "
               "increases from 0.3% to 11.8%' (start point)"},
    {"method": "CamPro (larger omega)", "accuracy_pct": 11.8, "AP": 0.540,
     "source": "Sec. VI-F, same sentence (end point; the text does not say which omega)"},
]
"""The only Fig. 11 coordinates the paper gives as numbers (its models: 10 FR models on CelebA,
YOLOv5m on COCO; not comparable in absolute value with ours)."""


def pareto_front(accuracy: Sequence[float], ap: Sequence[float]) -> np.ndarray:
    """Bool mask of the points no other point dominates (lower or equal accuracy AND higher or
    equal AP, strictly better in one). NaN points are never on the front."""
    acc, util = np.asarray(accuracy, float), np.asarray(ap, float)
    valid = ~(np.isnan(acc) | np.isnan(util))
    front = np.zeros(len(acc), bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = others & (acc <= acc[i]) & (util >= util[i]) & ((acc < acc[i]) | (util > util[i]))
        front[i] = not dominated.any()
    return front


@dataclass(frozen=True)
class TradeoffMethod:
    """One point of the sweep: a method level."""

    method: str = option(help="the method (one line and marker per method)")
    spec: str = option(help="protector spec")
    label: str = option("", help="the level's name on the figure; '' = the spec")
    optional: bool = option(False, help="skip the point (with a note) when the protector is not available")


@dataclass(frozen=True)
class TradeoffConfig:
    """The trade-off protocol (``protocols/tradeoff.toml``)."""

    seed: int = option(0, ge=0, help="seed of the identification draws, the subsets and the fine-tuning")
    methods: list[TradeoffMethod] = option(list, help="method levels: {method, spec[, label][, optional]}")
    privacy: dict[str, Any] = option(dict, help="the E1 protocol keys (ProtocolConfig), one classifier and one "
                                                "gallery (classifier, gallery)")
    utility: DetectionUtilityConfig = option(DetectionUtilityConfig, help="person detection (the E3 keys)")
    audits: list[str] = option(list, help="audit summary.csv files (campro-bench audit; the first that has a "
                                          "protector counts, missing ones are passed over): each audited point's "
                                          "worst case over the attacker ladder and its capture conditions joins "
                                          "its worst-case column")
    whitebox: list[str] = option(list, help="E5 (Table VII) result folders (e5.csv + manifest.json): the strongest "
                                            "attack on the protector each one attacked joins that point's worst case")
    privacy_from: str = option("", help="an earlier tradeoff run folder whose privacy columns are read, not "
                                        "re-measured (same [privacy] keys, seed and face data, checked); '' = measure")
    utility_from: list[str] = option(list, help="earlier E3 run folders whose points (same test images, detector, "
                                                "fine-tuning and bootstrap, checked) are read, not re-measured")
    measure_missing: bool = option(True, help="measure the points no `utility_from` run holds; false: their AP is "
                                              "left empty (NaN: off the front, drawn on the privacy axis only)")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "TradeoffConfig":
        cfg = parse_protocol(cls, spec, "tradeoff")
        if not cfg.methods:
            raise CamproError("the tradeoff spec lists no methods")
        cfg.protocol(["raw"])  # the privacy keys are checked before anything runs
        return cfg

    def protocol(self, protectors: list[str]) -> ProtocolConfig:
        """The E1 protocol of the privacy axis, for ``protectors``."""
        privacy = dict(self.privacy)
        gallery = privacy.pop("gallery", "raw")
        classifier = privacy.pop("classifier", "nearest")
        galleries = list(dict.fromkeys([gallery, "protected"]))  # the re-enrolled gallery costs no embedding
        return ProtocolConfig.from_spec({"repeats": 10, "seed": self.seed, **privacy, "protectors": protectors,
                                         "classifiers": [classifier], "galleries": galleries})


def _methods(cfg: TradeoffConfig, ctx: RunContext) -> list[dict[str, str]]:
    out = []
    for item in cfg.methods:
        try:
            build_protector(item.spec)
        except UnknownNameError as exc:
            if not item.optional:
                raise
            ctx.log(f"[yellow]skipping {item.method} {item.label}[/]: {exc}")
            ctx.manifest.notes.setdefault("skipped", {})[item.spec] = str(exc)
            continue
        out.append({"method": item.method, "label": item.label or item.spec, "spec": item.spec})
    return out


PRIVACY_COLUMNS = ("accuracy", "accuracy_best_model", "accuracy_std_mean_over_models", "reenrolled",
                   "reenrolled_best_model")
"""The privacy axis' columns of ``tradeoff.csv`` (besides ``accuracy/<model>``)."""


def earlier_privacy(methods: list[dict[str, str]], cfg: TradeoffConfig, ctx: RunContext) -> pd.DataFrame:
    """The privacy columns of an earlier trade-off run (``privacy_from``), for a sweep that changes
    only its utility axis: the embeddings of 18 protectors x 6 models cost hours on a CPU.

    The earlier run counts when its manifest has this sweep's ``[privacy]`` keys and seed and its
    table has every protector; its gallery/probe draws (``seeds["splits/..."]``) and face data
    enter this run's manifest, so E5 runs are checked against them as if measured here.
    """
    folder = resolve_table_path(cfg.privacy_from, ctx.results_root)
    if folder is None or not (folder / "manifest.json").is_file() or not (folder / "tradeoff.csv").is_file():
        raise CamproError(f"privacy_from {cfg.privacy_from}: not a tradeoff run folder (manifest.json, tradeoff.csv)")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    spec = manifest.get("spec") or {}
    if manifest.get("experiment") != "tradeoff":
        raise CamproError(f"privacy_from {cfg.privacy_from}: a {manifest.get('experiment')!r} run, not a tradeoff run")
    for key, ours in (("privacy", dict(cfg.privacy)), ("seed", cfg.seed)):
        if spec.get(key) != ours:
            raise CamproError(f"privacy_from {cfg.privacy_from}: its {key} is {spec.get(key)!r}, this sweep's {ours!r}")
    table = pd.read_csv(folder / "tradeoff.csv").drop_duplicates("spec").set_index("spec")
    specs = list(dict.fromkeys(m["spec"] for m in methods))
    missing = [s for s in specs if s not in table.index]
    if missing:
        raise CamproError(f"privacy_from {cfg.privacy_from}: no privacy point for {', '.join(missing)}")
    columns = [c for c in table.columns if c.startswith("accuracy/")] + list(PRIVACY_COLUMNS)
    ctx.manifest.seeds.update({k: v for k, v in (manifest.get("seeds") or {}).items() if k.startswith(SPLITS_SEED_PREFIX)})
    ctx.manifest.data["datasets"] = (manifest.get("data") or {}).get("datasets", {})
    ctx.manifest.notes["privacy_from"] = {"folder": cfg.privacy_from, "started": manifest.get("started"),
                                          "commit": (manifest.get("environment") or {}).get("campro_bench_commit")}
    return table.loc[specs, columns]


def privacy_points(methods: list[dict[str, str]], cfg: TradeoffConfig, ctx: RunContext) -> pd.DataFrame:
    """Per protector spec: accuracy of each model and their mean in the x-axis gallery (the E1
    protocol), and the best model's accuracy in that gallery and in the re-enrolled one; read from
    ``privacy_from`` when it is set (:func:`earlier_privacy`)."""
    if cfg.privacy_from:
        return earlier_privacy(methods, cfg, ctx)
    protocol = cfg.protocol(list(dict.fromkeys(m["spec"] for m in methods)))
    gallery = protocol.galleries[0]
    outcome = run_protocol(protocol, ctx)
    rows = pd.DataFrame(outcome.rows)
    long = rows[rows["gallery"] == gallery]
    per_model = long.pivot_table(index="image_type", columns="model", values="accuracy_mean", aggfunc="mean")
    per_model.columns = [f"accuracy/{m}" for m in per_model.columns]
    per_model["accuracy"] = per_model.mean(axis=1)
    per_model["accuracy_best_model"] = per_model.drop(columns="accuracy").max(axis=1)
    std = long.groupby("image_type")["accuracy_std"].mean().rename("accuracy_std_mean_over_models")
    reenrolled = rows[rows["gallery"] == "protected"].groupby("image_type")["accuracy_mean"]
    return per_model.join(std).join(reenrolled.mean().rename("reenrolled")).join(
        reenrolled.max().rename("reenrolled_best_model"))


INCOMPARABLE = "other EVAL draws than this sweep's, not counted"
"""``whitebox_attack`` of a point whose E5 run drew its gallery/probe splits differently."""


def whitebox_attacks(folders: Sequence[str], draws: Mapping[str, str] | None = None,
                     results_root: Path | None = None) -> dict[str, tuple[pd.Series | None, str]]:
    """The strongest attack of each earlier E5 (Table VII) result folder, keyed by the protector it
    attacked (its ``manifest.json``'s ``models.isp.spec``), with the folder; read once per sweep.

    A folder's best row is taken over every attack that sees protected or restored probes
    (restoration, re-training, captured probes with either gallery); the raw-probe context rows are
    not attacks. Of several comparable folders on one protector the strongest attack counts (a worst
    case must not depend on the order of the list); missing folders are passed over; a folder whose
    manifest or table is not an E5 run's is a :class:`CamproError`.

    ``draws`` (``splits/<dataset>`` -> ``splits_sha256`` of the sweep's manifest) makes the check that
    the E5 run evaluated the same identities in the same gallery/probe draws; a run that did not
    (another ``eval_identities``, seed, dataset or repeats) is kept with row ``None`` only when no
    comparable run of that protector is listed, before or after it: its accuracy is on another scale
    and must not join the worst case.
    """
    found: dict[str, tuple[pd.Series | None, str]] = {}
    for text in folders:
        folder = resolve_table_path(text, results_root) or Path(text)
        manifest_path, results = folder / "manifest.json", folder / "e5.csv"
        if not (manifest_path.is_file() and results.is_file()):
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
            attacked = manifest["models"]["isp"]["spec"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CamproError(f"{manifest_path}: not the manifest of an E5 run (no models.isp.spec): {exc}") from None
        rows = pd.read_csv(results)
        if not {"probe", "accuracy_mean", "attack", "model"} <= set(rows.columns):
            raise CamproError(f"{results}: not an E5 table (needs probe, attack, model, accuracy_mean)")
        rows = rows[rows["probe"] != "raw"]
        if not len(rows):
            continue
        kept = found.get(attacked, (None, ""))[0]
        if draws is None or _same_draws(manifest, draws):
            best = rows.loc[rows["accuracy_mean"].idxmax()]
            if kept is None or float(best["accuracy_mean"]) > float(kept["accuracy_mean"]):
                found[attacked] = (best, str(folder))
        elif attacked not in found:
            found[attacked] = (None, str(folder))
    return found


def _same_draws(manifest: dict[str, Any], draws: Mapping[str, str]) -> bool:
    """Whether an E5 manifest's identification draws are the sweep's (same ``splits_sha256``)."""
    theirs = sweep_draws(manifest.get("seeds") or {})
    return bool(theirs) and all(draws.get(k) == v for k, v in theirs.items())


def sweep_draws(seeds: Mapping[str, Any]) -> dict[str, str]:
    """``splits/<dataset>`` -> ``splits_sha256`` from a manifest's seeds (the sweep's draws)."""
    return {k: v["splits_sha256"] for k, v in seeds.items()
            if k.startswith(SPLITS_SEED_PREFIX) and isinstance(v, dict) and "splits_sha256" in v}


def worst_case_points(table: pd.DataFrame, audits: list[str], whitebox: Sequence[str] = (),
                      draws: Mapping[str, str] | None = None, results_root: Path | None = None) -> pd.DataFrame:
    """Each point's worst case: the highest accuracy any evaluated attacker reached, over the best
    model in both galleries of this run and, where an audit summary has the protector, the audit's
    worst case over its whole ladder (its own identities and scale) and over its capture conditions
    (:mod:`.tradeoff_audits`), and where an E5 folder attacked it with the sweep's own draws
    (``draws``, see :func:`whitebox_attacks`), E5's strongest attack (white-box restoration at a
    larger scale than the audit's); the winner is named in ``worst_case_source``.
    ``worst_case_colour`` (``worst_case_colour_source``) is the same with the audit's colour row
    only (the protector as it is), equal to ``worst_case`` for an audit without conditions."""
    e5_attacks = whitebox_attacks(whitebox, draws, results_root)
    out = []
    for point in table.itertuples():
        candidates = {"this run, raw gallery": point.accuracy_best_model,
                      "this run, re-enrolled gallery": point.reenrolled_best_model}
        audit = read_audit(audits, point.spec, results_root)
        whitebox_columns: dict[str, Any] = {"whitebox_worst_case": np.nan, "whitebox_attack": "no E5 run"}
        e5: dict[str, float] = {}
        if point.spec in e5_attacks:
            e5_row, folder = e5_attacks[point.spec]
            if e5_row is None:
                whitebox_columns.update(whitebox_attack=f"E5 {folder}: {INCOMPARABLE}")
            else:
                label = f"E5 {folder}: {e5_row['attack']} / {e5_row['model']}"
                e5[label] = float(e5_row["accuracy_mean"])
                whitebox_columns.update(whitebox_worst_case=float(e5_row["accuracy_mean"]), whitebox_attack=label)
        worst, source = _highest({**candidates, **audit.over_conditions, **e5})
        colour, colour_source = _highest({**candidates, **audit.colour, **e5})
        columns = audit.columns
        out.append({"audit_worst_case": columns["audit_worst_case"], "audit_attack": columns["audit_attack"],
                    **whitebox_columns, "worst_case": worst, "worst_case_source": source,
                    "worst_case_colour": colour, "worst_case_colour_source": colour_source,
                    **{k: v for k, v in columns.items() if k not in ("audit_worst_case", "audit_attack")}})
    return pd.DataFrame(out, index=table.index)


def _highest(candidates: Mapping[str, float]) -> tuple[float, str]:
    """The highest candidate that is a number and its label (the first of ties); ``(NaN, "")`` for none."""
    valid = {k: v for k, v in candidates.items() if not np.isnan(v)}
    worst = max(valid, key=valid.__getitem__) if valid else ""
    return valid.get(worst, np.nan), worst


def utility_points(methods: list[dict[str, str]], cfg: TradeoffConfig, ctx: RunContext) -> pd.DataFrame:
    """Per protector spec: the E3 metrics (detector fine-tuned per protector unless epochs = 0), one
    executor task per protector (:func:`~campro_bench.experiments.finetuned.detection_task`), or
    read from an earlier E3 run of ``utility_from`` (:mod:`.earlier_detection`)."""
    utility, seed = cfg.utility, cfg.seed
    config = utility.finetune(seed)
    evaluated = PersonSubset(utility.dataset, "val", utility.max_images, seed)
    eval_set = evaluated.load(ctx)
    trained, images, train_sha = None, 0, {}
    if config.epochs > 0:
        trained = PersonSubset(utility.train_dataset, "train", utility.max_train_images, seed)
        ctx.manifest.data["utility_train"] = trained.load(ctx).fingerprint()
        images = ctx.manifest.data["utility_train"]["images"]
        train_sha = {images: ctx.manifest.data["utility_train"]["sha256"]}
    ctx.manifest.data["utility_eval"] = eval_set.fingerprint()
    protocol = {**{key: getattr(utility, key) for key in PROTOCOL_KEYS if key != "seed"}, "seed": seed}
    skipped: dict[str, str] = {}
    earlier = earlier_points(cfg.utility_from, Wanted(ctx.manifest.data["utility_eval"]["sha256"], protocol,
                                                      train_sha), ctx.results_root, skipped)
    name = utility.detector
    specs = list(dict.fromkeys(m["spec"] for m in methods))
    found = {spec: lookup(earlier, spec, images, config.epochs) for spec in specs}
    measured = [spec for spec in specs if found[spec] is None] if cfg.measure_missing else []
    jobs = [DetectionJob(spec, spec, name, evaluated, trained, config, utility.batch_size, stage="utility/",
                         bootstrap=utility.bootstrap)
            for spec in measured]
    results = dict(zip(measured, detection_results(jobs, ctx)))
    if results:
        ctx.manifest.models[name] = {"weights_sha256": next(iter(results.values()))["base"]["weights_sha256"]}
    rows = {}
    for spec in specs:
        if spec in results:
            out = results[spec]
            rows[spec] = {**{m: out["metrics"][m] for m in METRICS}, "AP_lo": out["metrics"].get("AP_lo", np.nan),
                          "AP_hi": out["metrics"].get("AP_hi", np.nan), "utility_measured_in": "this run",
                          "detector_cached": out["report"]["cached"] if out["report"] is not None else None}
        elif found[spec] is not None:
            rows[spec] = {**{m: found[spec].get(m, np.nan) for m in (*METRICS, "AP_lo", "AP_hi")},
                          "utility_measured_in": found[spec]["source_run"], "detector_cached": None}
        else:
            rows[spec] = {**{m: np.nan for m in (*METRICS, "AP_lo", "AP_hi")},
                          "utility_measured_in": "not measured", "detector_cached": None}
    ctx.manifest.notes["utility"] = {"detector": name, "finetune": config.to_dict(), "eval_images": len(eval_set),
                                     "eval_persons": eval_set.num_persons, "bootstrap": utility.bootstrap,
                                     "read_from": [run_record(f, ctx.results_root) for f in cfg.utility_from
                                                   if f not in skipped],
                                     "utility_from_skipped": skipped,
                                     "not_measured": [s for s in specs if s not in results and found[s] is None]}
    return pd.DataFrame.from_dict(rows, orient="index")


def is_sweep(specs: Sequence[str]) -> bool:
    """Whether a method's points are one protector at several settings (a line joins them) rather than
    separately trained presets, which a line would wrongly present as a continuum."""
    names = {s.split(":", 1)[0] for s in specs}
    return len(specs) > 1 and len(names) == 1 and not any("preset=" in s or "params=" in s for s in specs)


def _front_panel(ax: Any, table: pd.DataFrame, x: str, front_column: str, xlabel: str, title: str,
                 hollow_unaudited: bool, log_x: bool = False) -> None:
    """One marker per method, lines only through sweeps, labels placed without overlap, the Pareto
    front on ``x`` drawn and circled; with ``hollow_unaudited`` points no audit attacked are hollow
    (their worst case is only a lower bound)."""
    markers = iter(["*", "s", "^", "o", "D", "v", "P", "X", "h", "<"])
    xs, ys, labels = [], [], []
    for i, (method, part) in enumerate(table.groupby("method", sort=False)):
        part = part.sort_values(x)
        style, colour = next(markers, "o"), f"C{i % 10}"
        size = 10 if style == "*" else 6
        if is_sweep(list(part["spec"])):
            ax.plot(100 * part[x], part["AP"], color=colour, linewidth=1.0, alpha=0.7, zorder=2)
        if {"AP_lo", "AP_hi"} <= set(part.columns) and part["AP_lo"].notna().any():
            # the 95 % bootstrap interval of each point's AP over the evaluated images
            ax.errorbar(100 * part[x], part["AP"], yerr=[part["AP"] - part["AP_lo"], part["AP_hi"] - part["AP"]],
                        fmt="none", ecolor=colour, elinewidth=0.8, capsize=2, zorder=2)
        attacked = audited(part) if hollow_unaudited else pd.Series(True, index=part.index)
        for filled, group in ((True, part[attacked]), (False, part[~attacked])):
            if len(group):
                ax.plot(100 * group[x], group["AP"], linestyle="none", marker=style, markersize=size, color=colour,
                        markerfacecolor=colour if filled else "none", zorder=3,
                        label=method if filled or not attacked.any() else None)
        xs += list(100 * part[x])
        ys += list(part["AP"])
        labels += [str(label) for label in part["label"]]
    front = table[table[front_column]].sort_values(x)
    ax.step(100 * front[x], front["AP"], where="post", color="black", linestyle="--", linewidth=0.9,
            label="Pareto front", zorder=1)
    ax.scatter(100 * front[x], front["AP"], s=170, facecolors="none", edgecolors="black", linewidths=1.0, zorder=4)
    if hollow_unaudited:
        ax.plot([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="none",
                label="hollow: never audited\n(worst case a lower bound)")
    if log_x:  # the private points crowd below 10 %: a log axis spreads them
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    place_labels(ax, xs, ys, labels)
    ax.set(xlabel=xlabel, ylabel="person detection AP (higher = more useful)", title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    legend_outside(ax)


def tradeoff_figure(table: pd.DataFrame, paper: pd.DataFrame | None = None) -> Any:
    """Accuracy (x, %) vs AP (y): the paper's axis (mean over models) and the worst case, one marker
    per method (lines only through one protector's settings), each panel's Pareto front circled,
    never-audited points hollow on the worst-case panel, legends beside the plots; the paper's stated
    points beside."""
    plt = pyplot()
    missing = table[table["AP"].isna()]
    table = table[table["AP"].notna()]  # a point without person AP has no place on either panel
    panels = 3 if paper is not None else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 6.5 * panels), squeeze=False)
    _front_panel(axes[0, 0], table, "accuracy", "pareto",
                 "face identification accuracy (%, mean over models, log scale; lower = more private)",
                 "ours: black box, mean over models (Fig. 11's axis)", hollow_unaudited=False, log_x=True)
    _front_panel(axes[1, 0], table, "worst_case", "pareto_worst_case",
                 "worst case (%): best model, raw or re-enrolled gallery, audit ladder over capture conditions, E5",
                 "ours: worst case over attackers", hollow_unaudited=True)
    if paper is not None:
        pax = axes[2, 0]
        pax.scatter(paper["accuracy_pct"], paper["AP"], facecolors="none", edgecolors="grey", s=60)
        place_labels(pax, list(paper["accuracy_pct"]), list(paper["AP"]), list(paper["method"]))
        pax.set(xlabel="face identification accuracy (%)", ylabel="AP",
                title="paper: the only Fig. 11 values stated in its text")
        pax.grid(alpha=0.3)
    fig.tight_layout()
    if len(missing):
        names = "; ".join(f"{m} {label}" for m, label in zip(missing["method"], missing["label"]))
        fig.subplots_adjust(bottom=0.06)
        fig.text(0.01, 0.005, f"not drawn, no person AP on this test set: {names}", fontsize=6.5, wrap=True,
                 va="bottom", color="0.3")
    return fig


@EXPERIMENTS.register("tradeoff", protocol="tradeoff", description="Fig. 11: privacy-utility trade-off sweep")
def run_tradeoff(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    cfg = TradeoffConfig.from_spec(spec)
    methods = _methods(cfg, ctx)
    if not methods:
        raise CamproError("no tradeoff method is available (all optional presets are missing)")
    with ctx.manifest.timer("privacy"):
        privacy = privacy_points(methods, cfg, ctx)
    with ctx.manifest.timer("utility"):
        utility = utility_points(methods, cfg, ctx)
    rows = [{**m, **privacy.loc[m["spec"]].to_dict(), **utility.loc[m["spec"]].to_dict()} for m in methods]
    table = pd.DataFrame(rows)
    table = table.join(worst_case_points(table, cfg.audits, cfg.whitebox, sweep_draws(ctx.manifest.seeds),
                                         ctx.results_root))
    table["pareto"] = pareto_front(table["accuracy"], table["AP"])
    # an unaudited point's worst case is only a lower bound (no inverse, restoration or re-training
    # was tried), so the worst-case front compares audited points only
    table["pareto_worst_case"] = pareto_front(table["worst_case"].where(audited(table)), table["AP"])
    tables = {"tradeoff": table}
    paper = None
    if ctx.compare == "paper":
        paper = pd.DataFrame(PAPER_POINTS)
        tables["paper_points"] = paper
    protocol = cfg.protocol(["raw"])
    notes = (
        f"x: top-1 closed-set accuracy ({protocol.classifiers[0]}, gallery "
        f"{protocol.galleries[0]}, {protocol.repeats} draws) on "
        f"{', '.join(protocol.datasets)}, mean over {', '.join(protocol.models)}; "
        f"y: person AP (COCOeval) on {ctx.manifest.notes['utility']['eval_images']} protected "
        f"{cfg.utility.dataset} val (test) images, with its 95 % bootstrap interval (AP_lo, AP_hi; error bars); "
        "utility_measured_in: 'this run', the earlier E3 run whose point was read (same test images, detector, "
        "fine-tuning and bootstrap, checked), or 'not measured' (AP empty, point not drawn). pareto: no other point has lower-or-equal "
        "accuracy and higher-or-equal AP (one strictly). worst_case: the highest top-1 any evaluated attacker "
        "reached: the best single model with the raw and with the re-enrolled gallery in this run, and the "
        "audit's worst case over its ladder (cheap attacks, analytic inverses, restoration U-Net, re-training; "
        "its own identities, scale and models) where `audits` lists a summary with the protector, and the "
        "strongest attack of an E5 (Table VII) run on it where `whitebox` lists one (white-box restoration, "
        "re-training) with the sweep's own EVAL draws (checked; another run's is named and not counted) "
        "(for unaudited points it is only a lower bound); pareto_worst_case: the front on that axis among audited points. "
        "An audit under capture conditions (a `condition` column: colour, grey, ...) joins worst_case with its "
        "`worst over conditions` upper bound (a camera deployed in grey faces the grey attacker too; "
        "audit_worst_over_conditions, its attack and condition in audit_worst_over_conditions_attack), and "
        "worst_case_colour with its colour row only (audit_worst_case, audit_attack: the protector as it is; for an "
        "audit without conditions both are its one row). Unbiased verdicts (the attack chosen on the audit's SELECT "
        "identities, scored once on EVAL, with its 95 % interval; empty where the audit had no SELECT identities): "
        "audit_verdict (colour), audit_grey_verdict, audit_worst_over_conditions_verdict (the condition whose chosen "
        "attack was best on SELECT; audit_worst_over_conditions_chosen); audit_grey_worst_case is grey's upper bound, "
        "audit_conditions the conditions audited."
    )
    return ExperimentResult(tables=tables, figures={"tradeoff": tradeoff_figure(table, paper)}, notes=notes)

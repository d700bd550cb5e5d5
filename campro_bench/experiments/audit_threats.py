"""Threat models in the audit: every attack's probes judged as rank-k, 1:1 verification and open-set search too.

Closed-set top-1 stays the audit's headline (``audit.csv``, the verdict). With ``threat_models``
beyond ``closed-set`` (the default: all of them), every attack row whose features the audit holds
(the raw reference, black-box, gray-box, cheap and restoration rungs; the re-training rung keeps
its embeddings inside E5's task and is closed-set only) is also scored by the functions of
:mod:`campro_bench.privacy.threat_models`, with E1's rules (:mod:`campro_bench.privacy.threats`):

* rank-k per classifier (the classifier's own scores, fitted on the gallery of each draw);
* verification (TAR at each ``threats.fars``) and open-set search (DIR at each ``threats.fpirs``,
  watch-list = a seeded half of the identities) on cosine similarity to the enrolled template, with
  thresholds **calibrated per model on raw-vs-raw comparisons** of the same identities and draws and
  fixed before any attacked probe is scored. A rate those comparisons cannot measure gives NaN and a
  note, never a number.

The verdict per threat model (:func:`threat_verdict`) is built like the closed-set one: the upper
bound is the best EVAL row of the metric; the unbiased verdict is the row best on SELECT, scored once
on EVAL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..config import option
from ..privacy.identification import FeatureSet
from ..privacy.splits import IdentificationSplits
from ..privacy.stats import summarize
from ..privacy.threat_models import (
    open_set_rates,
    rank_k_hits,
    verification_scores,
    watch_lists,
)
from ..privacy.threats import (
    ThreatConfig,
    classifier_scores,
    cosine_scores,
    cosine_templates,
    fit_classifier,
    open_set_draw,
    operating_points,
    rate_label,
)
from .audit_select import worst_rows

if TYPE_CHECKING:
    from ..conditions.axis import Expansion

REFERENCE = "reference"
KEY = ["protector", "rung", "attack", "model", "classifier", "gallery", "metric"]
"""What names one threat row: the same key on SELECT and on EVAL is the same attack and metric."""


@dataclass(frozen=True)
class AuditThreatConfig(ThreatConfig):
    """The audit's ``[threats]``: E1's keys, with TAR at FAR 1e-2 and 1e-3 only (FAR 1e-4 needs 100,000
    impostor pairs: more than an audit's tens of identities hold)."""

    fars: list[float] = option(lambda: [1e-2, 1e-3], help="verification: false-accept rates")


@dataclass
class ThreatScorer:
    """Scores attacked probes by the threat models beyond closed-set top-1 on one set of draws
    (EVAL or SELECT), collecting one row per (attack, model, classifier, gallery, metric)."""

    threat_models: list[str]
    threats: ThreatConfig
    classifiers: list[str]
    classifier_options: dict[str, dict[str, Any]]
    splits: IdentificationSplits
    seed: int
    confidence: float
    device: Any = "cpu"
    rows: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(t != "closed-set" for t in self.threat_models)

    def _calibrate(self, model: str, raw: FeatureSet) -> dict[str, Any]:
        """Raw-vs-raw operating points of ``model`` (computed once): verification impostor pairs and
        open-set non-mated searches of raw probes against the raw gallery."""
        if model in self.calibration:
            return self.calibration[model]
        splits, t = self.splits, self.threats
        found = raw.detected[splits.probe].astype(bool)
        templates = cosine_templates(raw, splits)
        _, impostor = verification_scores(cosine_scores(*templates, raw.embeddings[splits.probe], found), found)
        watch = watch_lists(splits.n_identities, splits.repeats, self.seed)
        draws = [open_set_draw(templates, raw, splits, watch[r], r) for r in range(splits.repeats)]
        non_mated = np.concatenate([top[non] for top, _, _, non in draws])
        self.calibration[model] = {"far": operating_points(impostor, t.fars, t.min_false_accepts),
                                   "fpir": operating_points(non_mated, t.fpirs, t.min_false_accepts), "watch": watch,
                                   "impostor_scores": int(impostor.size), "non_mated_searches": int(non_mated.size)}
        return self.calibration[model]

    def _row(self, key: dict[str, Any], threat: str, classifier: str, metric: str, values: np.ndarray | None,
             note: str = "") -> None:
        s = summarize(np.asarray(values, np.float64), self.confidence) if values is not None else None
        self.rows.append({**key, "classifier": classifier, "threat_model": threat, "metric": metric,
                          "value_mean": s.mean if s else math.nan, "ci_low": s.ci_low if s else math.nan,
                          "ci_high": s.ci_high if s else math.nan, "note": note})

    def score(self, protector: str, rung: str, attack: str, model: str, gallery_label: str, gallery: FeatureSet,
              probes: FeatureSet, raw: FeatureSet) -> None:
        """Every active threat model's rows of ``probes`` against ``gallery`` (``raw``: the model's raw
        features of the same images, for calibration)."""
        if not self.active:
            return
        key = {"protector": protector, "rung": rung, "attack": attack, "model": model, "gallery": gallery_label}
        splits = self.splits
        if "rank-k" in self.threat_models:
            truth = np.broadcast_to(np.arange(splits.n_identities), splits.probe.shape)
            for name in self.classifiers:
                fitted = fit_classifier(name, self.classifier_options.get(name), gallery, splits, self.device)
                hits = rank_k_hits(classifier_scores(fitted, probes, splits, self.device), truth,
                                   self.threats.ranks).mean(axis=1)
                for n, k in enumerate(self.threats.ranks):
                    self._row(key, "rank-k", name, f"rank-{k}", hits[:, n])
        if not {"verification", "open-set"} & set(self.threat_models):
            return
        points = self._calibrate(model, raw)
        found = probes.detected[splits.probe].astype(bool)
        templates = cosine_templates(gallery, splits)
        if "verification" in self.threat_models:
            genuine, _ = verification_scores(cosine_scores(*templates, probes.embeddings[splits.probe], found), found)
            for far, point in points["far"].items():
                metric = f"TAR@FAR={rate_label(far)}"
                if isinstance(point, str):
                    self._row(key, "verification", "cosine", metric, None, point)
                else:
                    self._row(key, "verification", "cosine", metric, np.array([point.accept_rate(g) for g in genuine]))
        if "open-set" in self.threat_models:
            draws = [open_set_draw(templates, probes, splits, points["watch"][r], r) for r in range(splits.repeats)]
            for fpir, point in points["fpir"].items():
                metric = f"DIR@FPIR={rate_label(fpir)}"
                if isinstance(point, str):
                    self._row(key, "open-set", "cosine", metric, None, point)
                else:
                    self._row(key, "open-set", "cosine", metric,
                              np.array([open_set_rates(top, slot, true, point)[0] for top, slot, true, _ in draws]))

    def manifest(self) -> dict[str, Any]:
        """Per model: the calibrated thresholds and how many raw comparisons they rest on."""
        return {model: {"impostor_scores": c["impostor_scores"], "non_mated_searches": c["non_mated_searches"],
                        **{f"FAR={rate_label(r)}": p if isinstance(p, str) else p.threshold for r, p in c["far"].items()},
                        **{f"FPIR={rate_label(r)}": p if isinstance(p, str) else p.threshold
                           for r, p in c["fpir"].items()}}
                for model, c in self.calibration.items()}


def closed_set_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Audit rows (``audit.csv`` / ``select.csv``) as threat rows of the metric ``top-1`` (closed-set)."""
    if rows is None or rows.empty:
        return pd.DataFrame()
    keep = rows[["protector", "rung", "attack", "model", "classifier", "gallery", "accuracy_mean", "ci_low", "ci_high"]]
    return keep.rename(columns={"accuracy_mean": "value_mean"}).assign(threat_model="closed-set", metric="top-1",
                                                                       note="")


def threat_verdict(eval_rows: pd.DataFrame, select_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per protector and metric: the raw value (best reference row), the upper bound (best EVAL attack
    row, chosen on EVAL) and, with SELECT rows, the unbiased verdict (the attack row best on SELECT,
    scored by its EVAL row). Rows whose value could not be measured (NaN) take no part."""
    out = []
    if eval_rows.empty:
        return pd.DataFrame(out)
    for (protector, metric), rows in eval_rows.groupby(["protector", "metric"], sort=False):
        attacks = rows[(rows["rung"] != REFERENCE) & rows["value_mean"].notna()]
        ref = rows[rows["rung"] == REFERENCE]["value_mean"]
        record: dict[str, Any] = {"protector": protector, "threat_model": rows["threat_model"].iloc[0],
                                  "metric": metric, "raw": float(ref.max()) if ref.notna().any() else math.nan}
        if not len(attacks):
            notes = rows["note"].dropna()
            record["note"] = str(notes.iloc[0]) if len(notes) else "no attack row"
            out.append(record)
            continue
        best = attacks.loc[attacks["value_mean"].idxmax()]
        record.update({"upper_bound": best["value_mean"], "upper_ci_low": best["ci_low"],
                       "upper_ci_high": best["ci_high"], "upper_rung": best["rung"], "upper_attack": best["attack"],
                       "upper_model": best["model"], "upper_gallery": best["gallery"]})
        if select_rows is not None and len(select_rows):
            cand = select_rows[(select_rows["protector"] == protector) & (select_rows["metric"] == metric)
                               & (select_rows["rung"] != REFERENCE) & select_rows["value_mean"].notna()]
            if len(cand):
                chosen = cand.loc[cand["value_mean"].idxmax()]
                match = attacks[np.logical_and.reduce([attacks[k] == chosen[k] for k in KEY])]
                if len(match) == 1:
                    record.update({"verdict": match["value_mean"].iloc[0], "verdict_ci_low": match["ci_low"].iloc[0],
                                   "verdict_ci_high": match["ci_high"].iloc[0], "chosen_rung": chosen["rung"],
                                   "chosen_attack": chosen["attack"], "chosen_model": chosen["model"],
                                   "chosen_classifier": chosen["classifier"], "chosen_gallery": chosen["gallery"],
                                   "select_value": chosen["value_mean"]})
        out.append(record)
    return pd.DataFrame(out)


def over_conditions(table: pd.DataFrame, expansion: "Expansion") -> pd.DataFrame:
    """:func:`threat_verdict` with ``protector`` split into protector and ``condition``, plus one
    ``worst over conditions`` row per protector and metric audited under several conditions (upper
    bound: the highest; unbiased: the condition whose chosen attack was best on SELECT)."""
    from ..conditions.axis import label

    if not expansion.labelled or table.empty:
        return table
    table = label(table, expansion, column="protector")
    extra = worst_rows(table, ["protector", "metric"], "upper_bound",
                       ["threat_model", "raw", "upper_bound", "upper_ci_low", "upper_ci_high", "upper_rung"],
                       "upper_attack", "select_value", ("verdict", "chosen_", "select_"))
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table


def report_lines(table: pd.DataFrame | None, spec: str) -> list[str]:
    """The per-protector report's threat-model section: one line per metric."""
    from .audit_report import _percent

    if table is None or table.empty:
        return []
    rows = table[table["protector"] == spec]
    if rows.empty:
        return []
    lines = ["## Threat models beyond closed-set top-1", "",
             "Thresholds calibrated on raw-vs-raw comparisons of the same identities and draws; the re-training rung "
             "is scored closed-set only.", "",
             "| threat model | metric | raw % | verdict (unbiased) % | upper bound % | attack (unbiased) |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows.itertuples():
        verdict = getattr(r, "verdict", math.nan)
        unbiased = (f"{_percent(verdict)} [{_percent(r.verdict_ci_low)}, {_percent(r.verdict_ci_high)}]"
                    if np.isfinite(verdict) else "—")
        upper = getattr(r, "upper_bound", math.nan)
        upper_text = f"{_percent(upper)} [{_percent(r.upper_ci_low)}, {_percent(r.upper_ci_high)}]" if np.isfinite(upper) \
            else f"— ({r.note})" if isinstance(getattr(r, "note", None), str) else "—"
        attack = f"{r.chosen_rung}: {r.chosen_attack}, {r.chosen_model}" if np.isfinite(verdict) else ""
        lines.append(f"| {r.threat_model} | {r.metric} | {_percent(r.raw)} | {unbiased} | {upper_text} | {attack} |")
    return [*lines, ""]

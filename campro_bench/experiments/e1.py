"""E1 (paper Table I): face identification accuracy on raw and protected images.

Rows: dataset x image type (raw and each protector) x classifier x gallery kind; columns: the
models and their Average. ``e1.csv`` is the long form (mean, std, t-interval, chance, detection
rates; what ``campro-bench regress`` compares); ``table1.csv``/``.md`` is the paper's wide layout
in %. See ``protocols/e1.toml`` and docs/privacy.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from ..conditions import axis
from ..errors import EmptyDatasetError
from ..privacy.evaluate import PROTOCOL_KEYS, ProtocolConfig, run_protocol, sort_rows
from ..privacy.paper import load_paper_table
from ..privacy.tables import add_paper_columns, image_type_label, table1_wide
from ..privacy.threats import threat_tables, threats_wide
from ..registries import EXPERIMENTS
from .base import ExperimentResult, RunContext
from .common import check_compare, protocol_notes

@EXPERIMENTS.register("e1", protocol="e1", description="Table I: face identification accuracy (raw/protected)",
                      extra_keys=PROTOCOL_KEYS, free_tables=("paper_image_types",))
def run_e1(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    """Run E1 from its spec; see the module docstring."""
    check_compare(ctx)
    cfg = ProtocolConfig.from_spec(spec)
    conditions = axis.expand(cfg.protectors, axis.conditions_of(spec))  # default ["colour"]: cfg unchanged
    cfg = dataclasses.replace(cfg, protectors=conditions.specs)
    if conditions.labelled:
        ctx.manifest.notes["conditions"] = conditions.manifest()
    outcome = run_protocol(cfg, ctx)
    if not outcome.rows:
        raise EmptyDatasetError(f"E1 produced no rows: every model was skipped ({outcome.skipped_models})")
    long = pd.DataFrame(sort_rows(outcome.rows, cfg))
    wide = table1_wide(long, cfg.models)
    image_types = dict(spec.get("paper_image_types", {"raw": "Raw"}))
    if ctx.compare == "paper":
        long, wide = add_paper_columns(long, wide, load_paper_table("table1_identification"), image_types)
    long, wide = axis.label(long, conditions), axis.label(wide, conditions, display=image_type_label)
    notes = [
        "Top-1 accuracy. table1: mean over repeats in %; e1.csv: fractions with std, t-interval, chance, "
        "detection rates.",
        *protocol_notes(cfg, ctx, outcome),
    ]
    if cfg.gallery_images > 1:
        notes.append(f"Enrolment: {cfg.gallery_images} different images per identity and draw (raw, or protected for "
                     "the re-enrolled gallery), then a further image as the probe; nearest enrols their unit mean "
                     "embedding, linear trains on all of them.")
    if conditions.labelled:
        notes.append("Capture conditions (docs/conditions.md): every image type under every condition; a raw "
                     "gallery is enrolled from the unconditioned photographs, a protected gallery through the same "
                     "camera under the same condition.")
    if ctx.compare == "paper":
        notes.append("'(paper)' columns: the paper's Table I numbers where dataset, model, image type, classifier "
                     "and gallery are exactly the paper's. 'Paper Average (reference)' is the paper's 10-model "
                     "Average of the closest paper row, shown for orientation only (other models, and for "
                     "celeba-subset another identity set).")
    tables = {"e1": long, "table1": wide}
    if set(cfg.threat_models) - {"closed-set"}:  # beside e1.csv, never in it
        with ctx.manifest.timer("protocol/threat-models"):
            threats, leaks, info = threat_tables(cfg, outcome, ctx.device)
        ctx.manifest.notes["threat_models"] = {"models": cfg.threat_models, "gallery_images": cfg.gallery_images,
                                               "settings": vars(cfg.threats), "calibration": info}
        tables.update({"e1_threats": threats, "e1_threats_wide": threats_wide(threats), "e1_leakage": leaks})
        notes.append(THREAT_NOTE)
    return ExperimentResult(tables=tables, notes="\n\n".join(notes))


THREAT_NOTE = (
    "Threat models (docs/privacy.md): e1_threats holds every threat model per draw-summarised metric (mean, std, "
    "t-interval over the draws); e1_threats_wide the means in %. Verification and open-set thresholds are calibrated "
    "per model on raw-vs-raw comparisons pooled over the draws and fixed before protected probes are scored; a rate "
    "whose calibration holds fewer than threats.min_false_accepts false accepts is NaN with the reason in 'note'. "
    "e1_leakage: cosine of each protected face to its raw embedding and the share above the raw threshold.")

"""E2 (paper Table II): ablation of the adversarial learning scheme.

For each ISP parameter source (e.g. Protector-Only and Protector+Attacker presets or parameter
files, given in ``protocols/e2.toml`` ``[sources]``), the nearest-neighbour identification accuracy
of every model on captured (protected) probes against a raw gallery; the white-box model is the one
the ISP was optimised against. Summary rows: the black-box average and black-box / white-box ratio.
"""

from __future__ import annotations

from typing import Any

from ..errors import CamproError
from ..privacy.evaluate import PROTOCOL_KEYS, ProtocolConfig, run_protocol
from ..privacy.paper import load_paper_table
from ..privacy.tables import table2_long, table2_wide
from ..registries import EXPERIMENTS
from .base import ExperimentResult, RunContext
from .common import check_compare, protocol_notes


def _sources(spec: dict[str, Any]) -> dict[str, str]:
    sources = spec.get("sources")
    if not isinstance(sources, dict) or not sources or not all(isinstance(v, str) for v in sources.values()):
        raise CamproError("e2 needs a [sources] table: column name = protector spec, e.g. "
                          "\"Protector-Only\" = \"campro-isp:params=ablation.json\"")
    if len(set(sources.values())) != len(sources):
        raise CamproError(f"e2 sources must be different protectors, got {sources}")
    return dict(sources)


@EXPERIMENTS.register("e2", protocol="e2", description="Table II: Protector-Only vs Protector+Attacker ablation",
                      extra_keys=PROTOCOL_KEYS, free_tables=("sources",))
def run_e2(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    """Run E2 from its spec; see the module docstring."""
    check_compare(ctx)
    sources = _sources(spec)
    white_box = spec.get("white_box")
    if not isinstance(white_box, str) or not white_box:
        raise CamproError("e2 needs white_box = \"MODEL\": the model the ISP parameters were optimised against")
    models = list(spec.get("models", []))
    models = [white_box] + [m for m in models if m != white_box]
    dataset = spec.get("dataset", "celeba-subset")
    classifier = spec.get("classifier", "nearest")
    cfg = ProtocolConfig.from_spec({**spec, "datasets": [dataset], "models": models,
                                    "protectors": list(sources.values()), "classifiers": [classifier],
                                    "galleries": ["raw"]})
    outcome = run_protocol(cfg, ctx)
    if white_box in outcome.skipped_models:
        raise CamproError(f"white-box model {white_box} cannot run: {outcome.skipped_models[white_box]}")
    label = {protector: name for name, protector in sources.items()}
    accuracy: dict[str, dict[str, float]] = {name: {} for name in sources}
    std: dict[str, dict[str, float]] = {name: {} for name in sources}
    for row in outcome.rows:
        accuracy[label[row["image_type"]]][row["model"]] = row["accuracy_mean"]
        std[label[row["image_type"]]][row["model"]] = row["accuracy_std"]
    long = table2_long(accuracy, std, white_box)
    long.insert(0, "dataset", dataset)
    long.insert(1, "classifier", classifier)
    long["protector"] = [sources.get(s, "") for s in long["source"]]
    tables = {"e2": long, "table2": table2_wide(long, list(sources))}
    notes = [
        f"Nearest-neighbour top-1 accuracy (%) on {dataset}; white-box model: {white_box}. Sources: "
        + "; ".join(f"{k} = {v}" for k, v in sources.items()) + ".",
        "Ratio row: black-box average / white-box accuracy, in % like the paper (NaN when the white-box "
        "accuracy is 0).",
        *protocol_notes(cfg, ctx, outcome),
    ]
    if ctx.compare == "paper":
        paper = load_paper_table("table2_ablation")
        ref = paper.pivot_table(index=["row", "role"], columns="isp_source", values="value", sort=False)
        ref = (ref.reindex(columns=["Protector-Only", "Protector+Attacker"]) * 100.0).reset_index()
        tables["table2_paper"] = ref.rename(columns={"row": "model"})
        notes.append("table2_paper: the paper's Table II (CelebA, its ten models, white-box Ada18), "
                     "for reference only.")
    return ExperimentResult(tables=tables, notes="\n\n".join(notes))

"""Screening the runs of a ``train isp`` sweep with held-out judges: one quick E1, one ranking table.

It lives with the experiments (it runs one, through the experiment runner) but is not a registered
experiment: its input is a sweep folder rather than a protocol.

``campro-bench train screen SWEEP_DIR --out DIR`` takes every run folder of a sweep (a folder of
``SWEEP_DIR`` holding ``isp.json``) and runs **E1 itself** (:func:`~campro_bench.experiments.runner.run_experiment`)
once, on a small face-identification screen: every run's ISP and a reference ISP as protectors, the
*judges* as models, under each capture condition (default: 50 LFW identities, 3 images each, nearest
neighbour against a raw gallery, 5 repeats, colour and grey). The judges must be held out: a judge
that any run trained against as an attacker is refused, since a run is then scored by the model it
was fitted to beat.

Per run, the score is its **worst held-out top-1**: the highest mean top-1 over judges and
conditions (lower is more private). A run *survives* when its score is not above the reference's
score plus ``margin``; only survivors go on to the full evaluation. Ties in the score are broken by
the mean top-1 over all cells, then by name.

``DIR`` receives ``e1/`` (E1's own output folder, with its manifest), ``params/`` (each run's
``isp.json`` copied under a name that protector specs can hold: run names such as
``seed=0,omega=0.2`` cannot appear in a spec), ``screen.csv``/``screen.md`` (the ranking) and
``screen.json`` (configuration, runs, reference, survivors, command).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..config import option, parse_config, validate_config
from ..errors import CamproError, MissingFileError
from ..io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..io.outfolder import check_output_location
from ..protectors.isp import ISPParams
from .runner import run_experiment

SCREEN_FILE = "screen.json"
WORST = "worst_top1"


@dataclass
class ScreenConfig:
    """The screen: judges, conditions, reference, and the E1 subset (every key checked, unknown keys refused)."""

    judges: list[str] = option(lambda: ["sface", "mobilefacenet"],
                               help="held-out face recognisers (none of them an attacker of any run)")
    conditions: list[str] = option(lambda: ["colour", "grey"], help="capture conditions of the probes")
    reference: str = option("campro-isp:preset=casia-adv", help="protector spec a run must not be worse than")
    margin: float = option(0.0, ge=0.0, le=1.0, help="a run survives when its worst top-1 <= the reference's + margin")
    dataset: str = option("lfw", help="face identification dataset")
    max_identities: int = option(50, ge=2, help="first N identities of the dataset")
    max_images_per_identity: int = option(3, ge=2, help="seeded subset of N images per identity")
    repeats: int = option(5, ge=1, le=1000, help="gallery/probe draws")
    seed: int = option(0, ge=0, help="seed of E1's draws")

    def __post_init__(self) -> None:
        validate_config(self, "train screen")
        if not self.judges or not all(self.judges):
            raise CamproError("train screen key 'judges' must name one or more face recognisers")
        if not self.conditions:
            raise CamproError("train screen key 'conditions' must name one or more capture conditions")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScreenConfig":
        return parse_config(cls, data, "train screen")

    def e1_overrides(self, protectors: Sequence[str]) -> list[str]:
        """E1's ``--set`` overrides of this screen (closed-set top-1 only, raw gallery)."""
        keys: dict[str, Any] = {
            "datasets": [self.dataset], "models": self.judges, "protectors": list(protectors),
            "conditions": self.conditions, "classifiers": ["nearest"], "galleries": ["raw"],
            "threat_models": ["closed-set"], "max_identities": self.max_identities,
            "max_images_per_identity": self.max_images_per_identity, "repeats": self.repeats, "seed": self.seed,
        }
        return [f"{k}={json.dumps(v)}" for k, v in keys.items()]


@dataclass(frozen=True)
class ScreenRun:
    """One run of the sweep: its name (folder), parameter file and the attackers it trained against."""

    name: str
    params: Path
    attackers: tuple[str, ...]


def sweep_runs(sweep_dir: Path) -> list[ScreenRun]:
    """Every run folder of ``sweep_dir`` (a visible sub-folder holding ``isp.json``), by name."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MissingFileError(f"no sweep folder {sweep_dir}")
    runs = []
    for path in sorted(sweep_dir.glob("*/isp.json")):
        if path.parent.name.startswith("."):
            continue  # a sweep's hidden work folders
        attacker = ISPParams.load(path).metadata.get("attacker", "")
        runs.append(ScreenRun(path.parent.name, path, tuple(a.strip() for a in str(attacker).split(",") if a.strip())))
    if not runs:
        raise MissingFileError(f"{sweep_dir} holds no run folder with an isp.json; train the sweep first")
    return runs


def check_held_out(runs: Sequence[ScreenRun], judges: Sequence[str]) -> None:
    """Refuse a judge that a run trained against (one line, naming the run)."""
    for run in runs:
        seen = sorted(set(run.attackers) & set(judges))
        if seen:
            raise CamproError(f"judge {', '.join(seen)} is not held out: run '{run.name}' trained against it; "
                              "choose judges that no run used as an attacker")


def spec_file_name(index: int, name: str) -> str:
    """A file name a protector spec can hold (no ``,`` ``=`` ``:``), unique by the run's index."""
    return f"run{index:02d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"


def rank(e1: pd.DataFrame, labels: dict[str, str], reference: str, margin: float) -> pd.DataFrame:
    """The ranking table from E1's long table: one row per run and the reference, sorted by worst top-1.

    ``labels`` maps each run's protector spec to its name; ``reference`` is the reference's spec.
    Columns: rank, run, worst_top1, worst_judge, worst_condition, mean_top1, one ``top1 JUDGE@CONDITION``
    per cell, survivor (the reference's own row: None)."""
    rows = e1.copy()
    if "condition" not in rows.columns:
        rows["condition"] = "colour"
    for key, value in (("classifier", "nearest"), ("gallery", "raw")):
        if key in rows.columns:
            rows = rows[rows[key] == value]
    names = {**labels, reference: f"reference ({reference})"}
    cells = sorted({(m, c) for m, c in zip(rows["model"], rows["condition"])})
    out = []
    for spec, name in names.items():
        mine = rows[rows["image_type"] == spec]
        values = {(m, c): float(v) for m, c, v in zip(mine["model"], mine["condition"], mine["accuracy_mean"])}
        missing = [f"{m}@{c}" for m, c in cells if (m, c) not in values]
        if missing or not values:
            raise CamproError(f"E1 has no top-1 for {name} under {', '.join(missing) or 'any judge'}")
        worst = max(cells, key=lambda cell: (values[cell], cell))
        out.append({"run": name, WORST: values[worst], "worst_judge": worst[0], "worst_condition": worst[1],
                    "mean_top1": sum(values.values()) / len(values),
                    **{f"top1 {m}@{c}": values[(m, c)] for m, c in cells}, "_spec": spec})
    table = pd.DataFrame(out).sort_values([WORST, "mean_top1", "run"], kind="stable").reset_index(drop=True)
    bar = float(table.loc[table["_spec"] == reference, WORST].iloc[0]) + margin
    table["survivor"] = [None if s == reference else bool(w <= bar + 1e-12)
                         for s, w in zip(table["_spec"], table[WORST])]
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.drop(columns="_spec")


def screen_sweep(
    sweep_dir: Path,
    out: Path,
    config: ScreenConfig,
    *,
    data_root: str | None = None,
    cache_dir: str | None = None,
    models_dir: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    command: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Run the screen (see the module docstring); returns the ranking table, written under ``out``."""
    runs = sweep_runs(sweep_dir)
    check_held_out(runs, config.judges)
    out = Path(out)
    check_output_location(out, replaces=False)
    if (out / SCREEN_FILE).exists() and not overwrite:
        raise CamproError(f"{out} already holds a screen ({SCREEN_FILE}); pass --overwrite or choose another --out")
    params = out / "params"
    if (out / SCREEN_FILE).exists():  # --overwrite: the earlier screen's copies go, files of others stay
        for entry in json.loads((out / SCREEN_FILE).read_text()).get("runs", []):
            name = Path(str(entry.get("spec_file", ""))).name
            if name.startswith("run") and name.endswith(".json"):
                (params / name).unlink(missing_ok=True)
    params.mkdir(parents=True, exist_ok=True)
    labels = {}
    for index, run in enumerate(runs):
        copy = params / spec_file_name(index, run.name)
        atomic_write_bytes(copy, run.params.read_bytes())
        labels[f"campro-isp:params={copy}"] = run.name
    if config.reference in labels:
        raise CamproError(f"the reference {config.reference} is one of the runs; choose another reference")
    overrides = config.e1_overrides([config.reference, *labels])
    _, result = run_experiment("e1", overrides=overrides, out=out / "e1", data_root=data_root, cache_dir=cache_dir,
                               models_dir=models_dir, device=device, quiet=quiet, overwrite=overwrite)
    table = rank(result.tables["e1"], labels, config.reference, config.margin)
    atomic_write_text(out / "screen.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "screen.md", table.to_markdown(index=False, floatfmt=".4g") + "\n")
    survivors = [r for r, s in zip(table["run"], table["survivor"]) if s]
    atomic_write_json(out / SCREEN_FILE, {
        "written_by": "campro-bench", "command": list(command) if command else None, "sweep": str(sweep_dir),
        "config": asdict(config), "e1_overrides": overrides, "score": "worst top-1 over judges and conditions "
        "(highest mean top-1 of any judge under any condition; lower is more private)",
        "survivor_rule": f"worst top-1 <= reference's ({config.reference}) + margin {config.margin}",
        "runs": [{"name": r.name, "params": str(r.params), "attackers": list(r.attackers),
                  "spec_file": spec_file_name(i, r.name)} for i, r in enumerate(runs)],
        "ranking": "screen.csv", "survivors": survivors,
    })
    return table

"""Person-detection points of earlier committed runs (E3, utility-curve), taken instead of re-evaluated.

A point (protector, fine-tuning images, epochs) costs a fine-tuning and an evaluation of the test
images, minutes each on a CPU; a run that needs a point an earlier run already measured under the
same protocol may read it from that run's folder (its table and ``manifest.json``). The earlier
run counts only when its manifest shows the same test images (``data.eval`` digest), detector,
seed, bootstrap draws and fine-tuning hyper-parameters, and, for a fine-tuned point, the same
fine-tuning images (their digest); anything else is one error line naming the folder and the key
that differs. Each taken row says where it came from (``source_run``) and the run's manifest
notes list the folders with their commit, so a reader can tell a read point from a measured one.
Protectors are matched by spec: E3 manifests record no protector fingerprint, so a preset whose
shipped weights changed after the earlier run is not detected; re-measure after shipping new weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..errors import CamproError
from .common import resolve_table_path

TABLES = {"e3": "table3.csv", "utility-curve": "utility_curve.csv"}
"""The experiments whose folders can be read, with their table."""

PROTOCOL_KEYS = ("detector", "seed", "bootstrap", "batch_size", "lr", "momentum", "weight_decay", "hflip")
"""Spec keys that must agree for an earlier point to stand for a new one."""

POINT_COLUMNS = ("AP", "AP_lo", "AP_hi", "AP@0.5", "AP@0.75", "Precision", "Recall", "F1")


@dataclass(frozen=True)
class Wanted:
    """What the new run would measure: its test images, protocol keys and fine-tuning digests.

    ``train`` maps a number of fine-tuning images to the digest of those images (the whole split
    and, for a learning curve, each nested subset).
    """

    eval_sha256: str
    protocol: Mapping[str, Any]
    train: Mapping[int, str]


def earlier_points(folders: list[str], wanted: Wanted, results_root: Path | None = None,
                   skipped: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows ``protector, finetune_images, epochs`` + :data:`POINT_COLUMNS` (those the table has) +
    ``source_run``, from every folder in ``folders``; the first folder holding a point wins.

    A folder that does not qualify is an error, unless ``skipped`` is given: then it is passed
    over and ``skipped[folder]`` says why (a shipped list that a user's overrides made stale).
    """
    frames = []
    for folder in folders:
        try:
            frames.append(_points(folder, wanted, results_root))
        except CamproError as exc:
            if skipped is None:
                raise
            skipped[folder] = str(exc)
    if not frames:
        return pd.DataFrame(columns=["protector", "finetune_images", "epochs", "source_run"])
    table = pd.concat(frames, ignore_index=True)
    return table.drop_duplicates(["protector", "finetune_images", "epochs"], keep="first").reset_index(drop=True)


def lookup(points: pd.DataFrame, protector: str, images: int, epochs: int) -> dict[str, Any] | None:
    """The earlier point of ``protector`` fine-tuned on ``images`` images for ``epochs`` (0, 0:
    pretrained), or ``None``."""
    hit = points[(points["protector"] == protector) & (points["finetune_images"] == images)
                 & (points["epochs"] == epochs)]
    return None if hit.empty else hit.iloc[0].to_dict()


def run_record(folder: str, results_root: Path | None = None) -> dict[str, Any]:
    """Where an earlier folder is and the commit and time its manifest records (for manifest notes)."""
    manifest = _manifest(folder, results_root)[1]
    return {"folder": folder, "experiment": manifest.get("experiment"), "started": manifest.get("started"),
            "commit": (manifest.get("environment") or {}).get("campro_bench_commit")}


def _manifest(folder: str, results_root: Path | None) -> tuple[Path, dict[str, Any]]:
    path = resolve_table_path(folder, results_root)
    if path is None or not (path / "manifest.json").is_file():
        raise CamproError(f"earlier run {folder}: no such run folder with a manifest.json")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CamproError(f"earlier run {folder}: manifest.json is not JSON ({exc})") from None
    if manifest.get("experiment") not in TABLES:
        raise CamproError(f"earlier run {folder}: a {manifest.get('experiment')!r} run, not one of {sorted(TABLES)}")
    return path, manifest


def _points(folder: str, wanted: Wanted, results_root: Path | None) -> pd.DataFrame:
    path, manifest = _manifest(folder, results_root)
    spec, data = manifest.get("spec") or {}, manifest.get("data") or {}
    if (data.get("eval") or {}).get("sha256") != wanted.eval_sha256:
        raise CamproError(f"earlier run {folder}: other test images (data.eval digest differs)")
    for key in PROTOCOL_KEYS:
        if key in wanted.protocol and spec.get(key) != wanted.protocol[key]:
            raise CamproError(f"earlier run {folder}: {key} = {spec.get(key)!r}, this run's is {wanted.protocol[key]!r}")
    table_path = path / TABLES[manifest["experiment"]]
    if not table_path.is_file():
        raise CamproError(f"earlier run {folder}: no {table_path.name}")
    table = pd.read_csv(table_path)
    trained = {int(k.split()[1]): (v or {}).get("sha256") for k, v in data.items() if k.startswith("finetune ")}
    if manifest["experiment"] == "e3":
        table = _e3_points(table, spec, data)
        trained[int((data.get("train") or {}).get("images", 0))] = (data.get("train") or {}).get("sha256")
    keep = []
    for row in table.itertuples():
        images = int(row.finetune_images)
        # a fine-tuned point stands only on the same fine-tuning images; the pretrained needs none
        keep.append(images == 0 or (images in wanted.train and trained.get(images) == wanted.train[images]))
    columns = ["protector", "finetune_images", "epochs", *[c for c in POINT_COLUMNS if c in table]]
    out = table.loc[keep, columns].copy()
    out["source_run"] = folder
    return out


def _e3_points(table: pd.DataFrame, spec: Mapping[str, Any], data: Mapping[str, Any]) -> pd.DataFrame:
    """E3's own rows (not the paper's, not a given checkpoint's) as points."""
    ours = table[table["protector"].notna() & ~table["source"].astype(str).str.contains("not fine-tuned")].copy()
    epochs = int(spec.get("finetune_epochs", 0))
    train = data.get("train") or {}
    if epochs and not train.get("sha256"):
        raise CamproError("an E3 manifest without data.train: its fine-tuning images are unknown")
    ours["epochs"] = epochs
    ours["finetune_images"] = int(train.get("images", 0)) if epochs else 0
    return ours

"""The paper's privacy numbers (Tables I, II, VII), transcribed in ``baselines/paper/``.

They are reference values only: ``campro-bench run e1 --compare paper`` puts them beside ours where
the model, dataset, image type and classifier are *exactly* the paper's (e.g. the paper's FaceNet
is InceptionResNetV1 trained on VGGFace2; our offline ``facenet-casia`` is a different network and
is never matched to it). ``celeba-subset`` (299 identities) is not the paper's CelebA protocol
(10,126 identities) and is never matched per model either.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import MissingFileError

PAPER_MODELS: dict[str, str] = {
    "facenet": "FaceNet",
    "arc18": "Arc18",
    "arc50": "Arc50",
    "arc152": "Arc152",
    "mag18": "Mag18",
    "mag50": "Mag50",
    "mag100": "Mag100",
    "ada18": "Ada18",
    "ada50": "Ada50",
    "ada100": "Ada100",
}
"""campro-bench registry name -> the paper's label, for the ten models of Table I."""

PAPER_DATASETS: dict[str, str] = {"celeba": "CelebA", "lfw": "LFW"}
"""Datasets whose full identification protocol is the paper's (exact matches only)."""

REFERENCE_DATASETS: dict[str, str] = {"celeba": "celeba", "celeba-subset": "celeba", "lfw": "lfw"}
"""Dataset -> paper dataset whose *Average* row is shown as a labelled reference (not a match)."""


def baselines_dir() -> Path:
    """``baselines/paper`` of the campro-bench checkout."""
    return Path(__file__).resolve().parents[2] / "baselines" / "paper"


def load_paper_table(name: str) -> pd.DataFrame:
    """Read ``baselines/paper/<name>.csv`` (e.g. ``table1_identification``)."""
    path = baselines_dir() / f"{name}.csv"
    if not path.is_file():
        raise MissingFileError(
            f"paper baseline {path.name} not found in {path.parent}: --compare paper needs the "
            "baselines/paper folder of a campro-bench checkout"
        )
    return pd.read_csv(path)

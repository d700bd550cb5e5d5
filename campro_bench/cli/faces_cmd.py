"""``campro-bench verify-lfw``: LFW face verification (official 10-fold View 2 protocol).

Checks that a face recogniser with its detector, alignment and preprocessing reaches its
published accuracy before it is used in the experiments::

    campro-bench verify-lfw --model facenet-casia            # mean +- std over the 10 folds
    campro-bench verify-lfw --model sface --folds 1          # one fold (600 pairs), quick check
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from .. import paths
from ..datasets.faces import LFW, lfw_pairs, load_face_dataset
from ..errors import CamproError
from ..io import atomic_write_json
from ..progress import stage_progress
from ..recognizers.base import contract_of
from ..recognizers.onnx_generic import register_onnx_models


def _progress_factory(console: Console, quiet: bool):
    return functools.partial(stage_progress, console, quiet=quiet)


def verify_lfw(
    model: str = typer.Option(..., "--model", "-m", help="face recogniser (see `campro-bench list face-recognizers`)"),
    folds: int = typer.Option(10, min=1, max=10, help="evaluate the first N folds of pairs.txt (600 pairs each)"),
    detector: str = typer.Option("mtcnn", help="face detector spec, e.g. mtcnn, yunet, dlib:model=cnn"),
    protector: str = typer.Option("raw", help="protector spec applied by the pipeline"),
    pipeline: str = typer.Option("paper", help="paper (protect the aligned crop) or camera (protect the frame)"),
    data_root: Optional[str] = typer.Option(None, help="data root holding lfw/ (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
    batch_size: int = typer.Option(64, min=1, help="faces per forward pass"),
    flip: bool = typer.Option(False, help="also embed mirrored crops and concatenate (Sandberg's --use_flipped_images)"),
    subtract_mean: bool = typer.Option(False, help="subtract the training folds' mean embedding (Sandberg's --subtract_mean)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the result as JSON here"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Face verification accuracy on LFW pairs: threshold chosen on the other folds, mean +- std."""
    from ..faces.embeddings import face_embeddings
    from ..faces.verification import HorizontalFlip, mean_subtracted_scores, pair_scores, verify_folds

    register_onnx_models(paths.models_dir(models_dir))  # as the environment variable does at import
    contract_of(model)  # unknown names fail here, before any work
    dataset = load_face_dataset("lfw", data_root)
    if not isinstance(dataset, LFW):
        raise CamproError("verify-lfw needs the lfw dataset")
    pairs = [p for p in lfw_pairs(dataset) if p.fold < folds]
    ids = sorted({i for p in pairs for i in (p.first, p.second)})
    console = Console(stderr=True)
    common = dict(pipeline=pipeline, detector=detector, data_root=data_root, cache_dir=cache_dir, models_dir=models_dir,
                  device=device, batch_size=batch_size, progress=_progress_factory(console, quiet), image_ids=ids)
    emb = face_embeddings(dataset, model, protector, **common)
    vectors = emb.embeddings
    if flip:
        if protector != "raw":
            raise CamproError("--flip is a check of the unprotected model; use it with --protector raw")
        vectors = np.concatenate([vectors, face_embeddings(dataset, model, HorizontalFlip(), **common).embeddings], 1)
    index = {image_id: n for n, image_id in enumerate(emb.image_ids)}
    scores = mean_subtracted_scores(pairs, index, vectors) if subtract_mean else pair_scores(pairs, index, vectors)
    result = verify_folds(pairs, scores, folds)
    prov = emb.provenance
    out = Console()
    out.print(f"LFW verification: {model} | detector {prov['detector']} | alignment {prov['alignment']} | "
              f"pipeline {pipeline} | protector {emb.protector}", highlight=False)
    out.print(f"{result.pairs} pairs, {len(ids)} images, faces detected {prov['detected']}/{prov['images']}"
              + (f" (lenient {prov['fallback_lenient']}, centre {prov['fallback_centre']})" if pipeline == "paper" else ""),
              highlight=False)
    for n, (acc, thr) in enumerate(zip(result.accuracies, result.thresholds)):
        out.print(f"  fold {n + 1:2d}: accuracy {acc:.4f}  threshold {thr:.4f}", highlight=False)
    how = "threshold from the other half of the fold" if len(result.accuracies) == 1 else f"{len(result.accuracies)}-fold"
    extras = ", ".join(x for x, on in (("flipped crops", flip), ("mean subtracted", subtract_mean)) if on)
    out.print(f"accuracy {result.mean:.4f} ± {result.std:.4f} ({how}{', ' + extras if extras else ''})", highlight=False)
    published = contract_of(model).extra.get("published_lfw_accuracy")
    if published:
        out.print(f"published: {published}", highlight=False)
    if json_out is not None:
        atomic_write_json(json_out, {"model": model, "mean": result.mean, "std": result.std, "flip": flip,
                                     "subtract_mean": subtract_mean,
                                     "accuracies": result.accuracies.tolist(), "thresholds": result.thresholds.tolist(),
                                     "pairs": result.pairs, "provenance": prov})


def register(app: typer.Typer) -> None:
    app.command("verify-lfw")(verify_lfw)

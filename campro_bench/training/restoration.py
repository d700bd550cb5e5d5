"""White-box attack by image restoration (paper Sec. VII-C2, Table VII column 5).

An attacker who knows the ISP parameters simulates (raw, captured) pairs and trains a network to
invert the ISP. The paper uses "the same training settings as the enhancer, except for removing
the penalty of face restoration": the U-Net of :mod:`campro_bench.training.unet` with the plain L1
of Eq. 7 (``face_penalty = False``). Restored probes are then matched against a raw gallery by the
ordinary recognisers.

Training data (``data``):

* ``faces``: raw aligned face crops of the attacker's *training* identities, in the alignment of
  every recogniser that will be attacked (the paper pipeline crops the face first, so the network
  only ever sees crops; training on them is the strongest choice at small scale);
* ``scenes``: COCO scene images, as the paper's enhancer settings imply.

The restored-probe protector is ``campro-enhanced:params=ISP.json,enhancer=RESTORATION.pt``
(ISP then U-Net), so the face pipeline caches its embeddings like any other protector's.
:func:`restoration_network` caches the trained weights under ``<cache>/e5/`` keyed by everything
that determines them, sealed with a content digest (an altered or unsealed entry is trained again).
Beside the weights it keeps the run's full training state (``restoration-<key>.state.pt``), so a
longer schedule of the same training (only ``epochs`` larger) continues from the longest shorter
run in the cache instead of starting again: the resumed run is bit-identical to one trained from
scratch (the trainer's resume guarantee), so a budget curve of 1x, 3x and 7x costs 7 units, not 11.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import CamproError
from ..faces.pipeline import ProgressFactory, aligned_crops, progress_bar
from ..io.sealed import discard, seal, trusted_entry, write_sealed_json
from ..io.hashing import sha256_json
from ..protectors.base import Protector
from ..protectors.isp import CamproISP
from .unet import TrainingImages, UNetTrainConfig, save_unet, train_unet

DATA_KINDS = ("faces", "scenes")


def face_crop_images(dataset: str, image_ids: Sequence[str], alignments: Sequence[str], *, detector: str,
                     data_root: str | None, cache_dir: Path, device: str = "cpu",
                     progress: ProgressFactory | None = None) -> TrainingImages:
    """Raw aligned crops of ``image_ids`` in each alignment (crops without a face are skipped)."""
    images = []
    for alignment in dict.fromkeys(alignments):
        crops = aligned_crops(dataset, alignment, pipeline="paper", protector="raw", detector=detector,
                              data_root=data_root, cache_dir=cache_dir, image_ids=list(image_ids),
                              progress=progress, device=device)
        images.extend(list(crops.crops[crops.found]))
    return TrainingImages(images, None, info={"kind": "faces", "dataset": dataset, "alignments": list(alignments),
                                              "images": len(images)})


def scene_training_images(data_root: Path, sources: str, holdout: str) -> TrainingImages:
    """COCO scene images of ``sources`` minus ``holdout`` (as the enhancer trainer selects them)."""
    from ..io import load_image
    from .enhancer import parse_sources, scene_paths

    held = {p.name for p in scene_paths(data_root, parse_sources(holdout))} if holdout else set()
    paths = [p for p in scene_paths(data_root, parse_sources(sources)) if p.name not in held]
    return TrainingImages([load_image(p) for p in paths], None,
                          info={"kind": "scenes", "sources": sources, "holdout": holdout, "images": len(paths)})


def isp_file(isp: CamproISP, cache_dir: Path) -> Path:
    """The ISP's parameters as a JSON file in the cache (named by their digest)."""
    params = isp.to_params()
    path = Path(cache_dir) / "e5" / f"isp-{params.digest()}.json"
    if not path.is_file():
        params.save(path)
    return path


def restoration_spec(isp_path: Path, weights: Path) -> str:
    """Protector spec of the restored probes: the ISP, then the restoration U-Net."""
    return f"campro-enhanced:params={isp_path},enhancer={weights}"


def restoration_network(
    data: TrainingImages,
    isp: Protector,
    config: UNetTrainConfig,
    cache_dir: Path,
    key: dict[str, Any],
    *,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    shorter_epochs: Sequence[int] = (),
) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse from the cache) the plain-L1 restoration U-Net; returns its weights file and
    a report (history, cache hit, ``resumed_from``). ``key`` must describe the training data (it
    joins the ISP and the configuration in the cache key).

    ``shorter_epochs``: the epochs of shorter runs of the same training (a budget schedule); the
    longest one whose training state is in the cache is continued instead of starting again, with
    the same weights as a run from scratch."""
    if config.face_penalty:
        raise CamproError("a restoration network is trained without the face penalty (Eq. 7): face_penalty=False")
    weights = entry_path(isp, config, cache_dir, key)
    report_file = weights.with_suffix(".json")
    trusted = trusted_entry(weights, report_file)
    if trusted:
        return weights, {**json.loads(report_file.read_text()), "cached": True}
    if trusted is False:  # altered or unsealed: train again
        discard(weights)
        discard(report_file)
    state_file = weights.with_suffix(".state.pt")
    discard(state_file)  # a state left by an interrupted run is not trusted: start from a sealed one or anew
    resumed_from = continue_shorter(isp, config, cache_dir, key, shorter_epochs, state_file)
    per_epoch = len(data) // config.batch_size
    steps = (config.epochs - (resumed_from or {}).get("epochs", 0)) * per_epoch
    with progress_bar(progress, "train restoration U-Net (Eq. 7)", steps) as advance:
        result = train_unet(data, isp, config, trainer="restoration", checkpoint=state_file,
                            resume=resumed_from is not None, device=device, on_step=advance, log=log)
    seal(state_file)
    state = save_unet(result, weights, trainer="restoration", isp=isp.fingerprint(), data=key)
    report = {"weights_digest": state, "history": result.history, "config": config.to_dict(), "data": data.info,
              "key": weights.stem.removeprefix("restoration-"), "resumed_from": resumed_from}
    seal(weights)
    write_sealed_json(report_file, report)
    return weights, {**report, "cached": False}


def entry_path(isp: Protector, config: UNetTrainConfig, cache_dir: Path, key: dict[str, Any]) -> Path:
    """The cache file of the restoration weights trained on ``key``'s data with ``config``."""
    digest = sha256_json({"isp": isp.fingerprint(), "config": config.to_dict(), "data": key})[:16]
    return Path(cache_dir) / "e5" / f"restoration-{digest}.pt"


def continue_shorter(isp: Protector, config: UNetTrainConfig, cache_dir: Path, key: dict[str, Any],
                     shorter_epochs: Sequence[int], state_file: Path) -> dict[str, Any] | None:
    """Copy the sealed training state of the longest cached shorter run (epochs in ``shorter_epochs``,
    fewer than ``config.epochs``, all else equal) to ``state_file``; its epochs and key, or ``None``."""
    for epochs in sorted({e for e in shorter_epochs if 0 < e < config.epochs}, reverse=True):
        shorter = entry_path(isp, dataclasses.replace(config, epochs=epochs), cache_dir, key)
        saved = shorter.with_suffix(".state.pt")
        if trusted_entry(shorter, shorter.with_suffix(".json"), saved):
            state_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved, state_file)
            return {"epochs": epochs, "key": shorter.stem.removeprefix("restoration-")}
    return None

"""Face embeddings of a dataset through a protector, a pipeline and a recogniser, cached on disk.

:func:`face_embeddings` is what experiments call. Each image is embedded once per (dataset
fingerprint, model + weights id, protector fingerprint, pipeline, detector, alignment); the
result lives in a :class:`~campro_bench.faces.store.ShardStore` and every later call, in this or
another process, only reads it: a warm call builds neither the model nor the detector (weights
are identified by the registry entry's ``weights_id`` function, memoised file hashes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import paths
from ..datasets.faces import FaceDataset, load_face_dataset
from ..errors import CamproError, MissingFileError
from ..io import uint8_to_tensor
from ..protectors import build_protector
from ..protectors.base import Protector
from ..recognizers.base import contract_of, create_face_recognizer, weights_path
from ..recognizers.packaged import files_sha256
from ..registries import FACE_RECOGNIZERS
from .detection import FaceDetector, build_face_detector
from .pipeline import (
    NONE,
    PIPELINES,
    AlignedCrops,
    ProgressFactory,
    aligned_crops,
    crop_provenance,
    progress_bar,
    select_items,
)
from .store import ShardStore

__all__ = ["AlignedCrops", "FaceEmbeddings", "aligned_crops", "face_embeddings", "weights_identity"]


@dataclass
class FaceEmbeddings:
    """Embeddings of a dataset (dataset order) by one model through one protector and pipeline."""

    dataset: str
    model: str
    protector: str
    pipeline: str
    image_ids: list[str]  # dataset-relative ids, dataset order (same for every model/protector)
    labels: np.ndarray  # int64 [N], identity index
    identity_names: list[str]  # label -> identity name
    embeddings: np.ndarray  # float32 [N, D], L2-normalised rows; all-zero rows where no face found
    detected: np.ndarray  # bool [N]; False where the pipeline found no face
    provenance: dict[str, Any]


def weights_identity(model: str, models_dir: str | os.PathLike[str] | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> str:
    """A short id of a model's weights, without building the model when possible.

    Uses the registry entry's ``weights_id(models_dir, cache_dir)`` function when it declares one,
    else the hash of the user-supplied ``contract.weights_file``, else builds the model once and
    reads its ``weights_hash``.
    """
    entry = FACE_RECOGNIZERS.entry(model)
    mdir, cdir = paths.models_dir(models_dir), paths.cache_dir(cache_dir)
    fn = entry.metadata.get("weights_id")
    if callable(fn):
        return str(fn(mdir, cdir))
    contract = contract_of(model)
    if contract.weights_file:
        path = weights_path(mdir, contract)
        if not path.is_file():
            raise MissingFileError(f"weights of '{model}' not found: put {contract.weights_file} in {mdir}")
        return files_sha256([path], cdir)
    return create_face_recognizer(model, mdir, cdir).weights_hash


def face_embeddings(
    dataset: str | FaceDataset,
    model: str,
    protector: str | Protector = "raw",
    *,
    pipeline: str = "paper",
    detector: str | FaceDetector = "mtcnn",
    data_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    min_images_per_identity: int = 1,
    batch_size: int = 64,
    progress: ProgressFactory | None = None,
    image_ids: Sequence[str] | None = None,
) -> FaceEmbeddings:
    """Embeddings of ``dataset`` by ``model`` through ``protector`` and ``pipeline`` (cached).

    ``min_images_per_identity`` keeps identities with at least that many images (before
    embedding); ``image_ids`` restricts to those dataset ids (e.g. the LFW pair images).
    """
    if pipeline not in PIPELINES:
        raise CamproError(f"unknown pipeline '{pipeline}'; known pipelines: {', '.join(PIPELINES)}")
    ds = load_face_dataset(dataset, data_root)
    prot, det = build_protector(protector), build_face_detector(detector)
    contract = contract_of(model)
    cache = paths.cache_dir(cache_dir)
    items, labels, names = select_items(ds, min_images_per_identity, image_ids)
    ids = [it.image_id for it in items]
    fp = ds.fingerprint()
    wid = weights_identity(model, models_dir, cache)
    key = {"dataset": fp["sha256"], "model": model, "weights": wid, "contract": contract.to_dict(),
           "protector": prot.fingerprint(), "pipeline": pipeline, "detector": det.config(),
           "alignment": contract.alignment}
    store = ShardStore(cache, "embeddings", key)
    fields = ("embedding", "source")
    cached, have = store.get(ids, fields)
    if not have.all():
        missing = [ids[n] for n in range(len(ids)) if not have[n]]
        _embed_missing(ds, missing, model, prot, det, pipeline, contract.alignment, cache, models_dir,
                       device, batch_size, progress, store)
        cached, have = store.get(ids, fields)
    source = cached["source"]
    provenance = crop_provenance(ds, fp, prot, det, contract.alignment, pipeline, source)
    provenance.update({"model": model, "weights_id": wid, "contract": contract.to_dict(),
                       "min_images_per_identity": min_images_per_identity, "identities": len(names),
                       "embedding_cache": str(store.folder)})
    return FaceEmbeddings(ds.spec(), model, prot.spec(), pipeline, ids, labels, names,
                          cached["embedding"].astype(np.float32), source != NONE, provenance)


def _embed_missing(ds: FaceDataset, ids: list[str], model: str, prot: Protector, det: FaceDetector, pipeline: str,
                   alignment: str, cache: Path, models_dir: Any, device: Any, batch_size: int,
                   progress: ProgressFactory | None, store: ShardStore) -> None:
    """Crop (cached) and embed ``ids``; the model is built here, only on a cache miss."""
    crops = aligned_crops(ds, alignment, pipeline=pipeline, protector=prot, detector=det, cache_dir=cache,
                          progress=progress, image_ids=ids, device=device)
    net = create_face_recognizer(model, models_dir, cache, device)
    out = np.zeros((len(ids), net.contract.embedding_size), np.float32)
    rows = np.nonzero(crops.found)[0]
    with progress_bar(progress, f"embed {ds.spec()} with {model} ({prot.spec()}, {pipeline})", len(rows)) as advance:
        with torch.inference_mode():
            for k in range(0, len(rows), batch_size):
                part = rows[k : k + batch_size]
                x = uint8_to_tensor(crops.crops[part]).to(device)
                out[part] = torch.nn.functional.normalize(net(x).float(), dim=1).cpu().numpy()
                advance(len(part))
    store.put(crops.image_ids, {"embedding": out, "source": crops.source})

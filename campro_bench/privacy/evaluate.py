"""The E1/E2 evaluation loop: embeddings from the face pipeline -> splits -> classifiers -> rows.

:func:`run_protocol` reads a :class:`ProtocolConfig` (the parsed ``protocols/e1.toml``), gets the
cached embeddings of every (dataset, model, protector) from
:func:`campro_bench.faces.embeddings.face_embeddings`, draws the splits once per dataset, and
returns one long-form row per (dataset, image type, classifier, gallery kind, model). Provenance,
detection rates, seeds and stage timings go into the run manifest.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..config import config_keys, option, parse_config
from ..errors import CamproError
from ..context import RunContext
from ..protectors import build_protector
from ..recognizers.base import contract_of, weights_path
from .cache import OutcomeCache, array_digest
from .classifiers import CLASSIFIERS, IdentificationClassifier, build_classifier
from .identification import FeatureSet, IdentificationResult, identify_many
from .splits import IdentificationSplits, sample_splits, select_identities
from .threat_models import THREAT_MODELS
from .threats import ThreatConfig, check_threat_models

GALLERY_KINDS = ("raw", "protected")
"""``raw``: enrolled with unprotected images (Table I); ``protected``: gray-box re-enrolment with
images from the protected camera (Sec. VII-B)."""


class Embeddings(Protocol):
    """What the protocol reads from :class:`campro_bench.faces.embeddings.FaceEmbeddings`."""

    image_ids: list[str]
    labels: np.ndarray
    identity_names: list[str]
    embeddings: np.ndarray
    detected: np.ndarray
    provenance: dict[str, Any]


def load_embeddings(dataset: str, model: str, protector: str, **options: Any) -> Embeddings:
    """The face pipeline's cached embeddings (tests replace this function)."""
    from ..faces.embeddings import face_embeddings

    return face_embeddings(dataset, model, protector, **options)


def dataset_index(dataset: str, data_root: str | None) -> list[tuple[str, str]]:
    """(image id, identity name) of every image, in dataset order (tests replace this function)."""
    from ..datasets.faces import load_face_dataset

    return [(it.image_id, it.identity) for it in load_face_dataset(dataset, data_root).items()]


def subset_image_ids(index: Sequence[tuple[str, str]], min_images: int, max_identities: int,
                     max_images_per_identity: int = 0, seed: int = 0) -> list[str]:
    """Image ids of the first ``max_identities`` identities by name (0 = all) among those with >=
    ``min_images`` images, at most ``max_images_per_identity`` of each (0 = all): the subset is
    chosen before embedding, so a small protocol embeds only what it uses.

    The capped images of an identity are a uniform random subset drawn by
    ``numpy.random.default_rng([seed, crc32(identity)])``: the same whatever other identities are
    kept, so a smaller run's images are a subset of a larger run's (and share its embedding cache).
    A uniform subset keeps each repeat's gallery/probe pair uniform over the identity's images."""
    counts: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    for image_id, name in index:
        counts[name] = counts.get(name, 0) + 1
        members.setdefault(name, []).append(image_id)
    eligible = sorted(n for n, c in counts.items() if c >= min_images)
    kept = set(eligible[:max_identities] if max_identities else eligible)
    allowed: set[str] | None = None
    if max_images_per_identity:
        allowed = set()
        for name in kept:
            ids = members[name]
            if len(ids) > max_images_per_identity:
                rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
                ids = [ids[i] for i in sorted(rng.choice(len(ids), max_images_per_identity, replace=False))]
            allowed.update(ids)
    return [image_id for image_id, name in index if name in kept and (allowed is None or image_id in allowed)]


@dataclass(frozen=True)
class DatasetLayout:
    """The images a protocol works on, in dataset order, labelled as the face pipeline labels them.

    ``labels`` number identities by first appearance among ``image_ids`` (exactly as
    :func:`campro_bench.faces.pipeline.select_items` does), so splits drawn from this layout are the
    splits that embedding the whole layout would give: they can be drawn *before* embedding, and
    only the images some draw uses need a face crop and a forward pass.
    """

    image_ids: list[str]
    labels: np.ndarray
    identity_names: list[str]

    @classmethod
    def build(cls, index: Sequence[tuple[str, str]], min_images: int,
              image_ids: Sequence[str] | None = None) -> "DatasetLayout":
        from ..faces.pipeline import select_layout

        kept, labels, names = select_layout(index, min_images, image_ids)
        return cls([index[n][0] for n in kept], labels, names)

    def used_by(self, splits: IdentificationSplits) -> list[str]:
        """Ids of the images some draw uses as gallery or probe, in dataset order."""
        used = np.unique(np.concatenate([splits.gallery.ravel(), splits.probe.ravel()]))
        return [self.image_ids[i] for i in used]


def _names(default: list[str] | None = None, help: str = "") -> Any:
    return option((lambda: list(default)) if default is not None else dataclasses.MISSING, help=help)


@dataclass
class ProtocolConfig:
    """The identification part of an E1/E2 spec, validated (:func:`campro_bench.config.parse_config`)."""

    datasets: list[str] = _names(help="face datasets")
    models: list[str] = _names(help="face recognisers")
    protectors: list[str] = _names(help="image types: raw and protector specs")
    classifiers: list[str] = _names(["nearest", "linear"], help="identification classifiers")
    galleries: list[str] = _names(["raw"], help="gallery kinds: raw, protected")
    repeats: int = option(10, ge=1, le=1000, help="independent gallery/probe draws")
    seed: int = option(0, ge=0, help="seed of repeat 0 (repeat r uses seed + r)")
    pipeline: str = option("paper", help="paper: protect the aligned crop; camera: protect the frame")
    detector: str = option("mtcnn", help="face detector spec")
    min_images: int = option(2, ge=2, le=10_000, help="identities with fewer images are dropped")
    max_identities: int = option(0, ge=0, help="0 = all; N = the first N identities by name")
    max_images_per_identity: int = option(0, ge=0, help="0 = all; N = a seeded subset per identity")
    skip_missing_models: bool = option(False, help="skip models whose user weights are missing")
    batch_size: int = option(64, ge=1, le=4096, help="embedding batch size")
    confidence: float = option(0.95, gt=0.0, lt=1.0, help="level of the t-interval over repeats")
    threat_models: list[str] = _names(list(THREAT_MODELS), help="closed-set, rank-k, verification, open-set")
    gallery_images: int = option(1, ge=1, le=1000, help="images enrolled per identity (1: the paper's)")
    threats: ThreatConfig = option(ThreatConfig, help="operating points of the threat models")
    classifier_options: dict[str, dict[str, Any]] = option(dict, help="(from the classifiers' own tables)")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ProtocolConfig":
        """The protocol keys of ``spec`` (other keys, e.g. ``description``, belong to the experiment)."""
        given = {k: ([v] if isinstance(v, str) and k in _NAME_LISTS else v)
                 for k, v in spec.items() if k in PROTOCOL_KEYS}
        cfg = parse_config(cls, given, "protocol")
        for key in _NAME_LISTS:
            if not getattr(cfg, key) or not all(getattr(cfg, key)):
                raise CamproError(f"protocol key '{key}' must be a non-empty list of names, got {getattr(cfg, key)!r}")
        for name in cfg.classifiers:
            CLASSIFIERS.entry(name)  # unknown names fail here, listing the known ones
        bad = [g for g in cfg.galleries if g not in GALLERY_KINDS]
        if bad:
            raise CamproError(f"unknown gallery kind(s) {bad}; known: {', '.join(GALLERY_KINDS)}")
        check_threat_models(cfg.threat_models)
        if cfg.min_images < cfg.gallery_images + 1:
            raise CamproError(f"gallery_images = {cfg.gallery_images} needs min_images >= {cfg.gallery_images + 1} "
                              f"(every identity enrols {cfg.gallery_images} images and is probed with another one); "
                              f"min_images is {cfg.min_images}")
        if 0 < cfg.max_images_per_identity < cfg.min_images:
            raise CamproError(f"protocol key 'max_images_per_identity' ({cfg.max_images_per_identity}) must be 0 "
                              "(all) or >= min_images")
        cfg.classifier_options = {name: dict(spec[name]) for name in cfg.classifiers if isinstance(spec.get(name), dict)}
        return cfg


_NAME_LISTS = ("datasets", "models", "protectors", "classifiers", "galleries", "threat_models")
PROTOCOL_KEYS: tuple[str, ...] = tuple(k for k in config_keys(ProtocolConfig) if k != "classifier_options")
"""The keys of a protocol that :class:`ProtocolConfig` reads."""


@dataclass
class ProtocolOutcome:
    rows: list[dict[str, Any]]
    results: dict[tuple[str, str, str, str, str], IdentificationResult]
    splits: dict[str, IdentificationSplits]
    skipped_models: dict[str, str]
    features: dict[str, dict[str, dict[str, FeatureSet]]] = dataclasses.field(default_factory=dict)
    """dataset -> model -> image type -> whole-layout features (what the threat models read)."""
    raw_spec: str = "raw"


def missing_weights(model: str, ctx: RunContext) -> str | None:
    """Why ``model`` cannot run (its user-supplied weights file is absent, or the package that
    carries its weights is not installed), or None."""
    contract = contract_of(model)
    if contract.weights_file and not weights_path(ctx.models_dir, contract).is_file():
        return (f"weights file {contract.weights_file} not found in {ctx.models_dir} "
                "(--models-dir / CAMPRO_BENCH_MODELS)")
    if not contract.weights_file:  # weights inside an installed package (or an npm file)
        return carrier_missing(model, contract, ctx)
    return None


def carrier_missing(model: str, contract: Any, ctx: RunContext) -> str | None:
    """Where the package-carried weights of ``model`` should be, if they are absent (tests replace it)."""
    from ..recognizers.weights import weights_status
    from ..registries import FACE_RECOGNIZERS

    metadata = FACE_RECOGNIZERS.entry(model).metadata
    if metadata.get("weights_id") is None:  # the entry does not say where its weights are
        return None
    status = weights_status(model, contract, metadata, ctx.models_dir, ctx.cache_dir)
    return None if status.found else status.location


def _scatter(layout: DatasetLayout, emb: Embeddings, used: Sequence[str], where: str) -> FeatureSet:
    """Whole-layout features from the embeddings of the ``used`` images: rows no draw uses stay
    all-zero and undetected (they are never read)."""
    if list(emb.image_ids) != list(used):
        raise CamproError(f"{where}: the face pipeline returned other images than the ones asked for "
                          f"({len(emb.image_ids)} vs {len(used)})")
    position = {image_id: n for n, image_id in enumerate(layout.image_ids)}
    rows = np.array([position[i] for i in used], dtype=np.int64)
    embeddings = np.asarray(emb.embeddings, dtype=np.float32)
    full = np.zeros((len(layout.image_ids), embeddings.shape[1]), np.float32)
    detected = np.zeros(len(layout.image_ids), bool)
    full[rows], detected[rows] = embeddings, np.asarray(emb.detected, dtype=bool)
    return FeatureSet(full, detected)


def _row(cfg: ProtocolConfig, dataset: str, protector: str, classifier: str, gallery: str, model: str,
         result: IdentificationResult) -> dict[str, Any]:
    summary = result.summary(cfg.confidence)
    row = {
        "dataset": dataset,
        "image_type": protector,
        "classifier": classifier,
        "gallery": gallery,
        "model": model,
        "accuracy_mean": summary.mean,
        "accuracy_std": summary.std,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
        "chance": result.chance,
        "identities": int(result.correct.shape[1]),
        "repeats": summary.repeats,
        "gallery_detect_rate": float(result.gallery_detected.mean()),
        "probe_detect_rate": float(result.probe_detected.mean()),
    }
    if cfg.gallery_images > 1:  # the paper's one-image rows keep e1.csv's columns
        row["gallery_images"] = cfg.gallery_images
    return row


def _embed_cell(get: Callable[..., Embeddings], dataset: str, model: str, spec: str,
                options: dict[str, Any]) -> Embeddings:
    """One independent unit of work: the embeddings of one (dataset, model, image type)."""
    return get(dataset, model, spec, **options)


def _cell_order(models: Sequence[str], specs: Sequence[str]) -> list[tuple[str, str]]:
    """(model, image type) cells: alignment groups in order of first appearance, then image type,
    then model. The order changes no result, only how often a protector runs (once per group)."""
    groups: dict[str, list[str]] = {}
    for model in models:
        try:
            alignment = getattr(contract_of(model), "alignment", None)
        except CamproError:
            alignment = None
        # not a registered recogniser, or one without an alignment (a test's stand-in): its own group
        groups.setdefault(alignment or f"model:{model}", []).append(model)
    return [(model, spec) for group in groups.values() for spec in specs for model in group]


def _embed_all(get: Callable[..., Embeddings], dataset: str, models: Sequence[str], specs: Sequence[str],
               layout: DatasetLayout, used: list[str], options: dict[str, Any],
               ctx: RunContext) -> dict[str, dict[str, FeatureSet]]:
    """Embeddings of the ``used`` images for every (model, image type) of one dataset, through the
    run's executor, scattered into whole-layout features and recorded in the manifest.

    Locally the cells run in order: models grouped by their crop alignment, and within a group
    image type by image type, so that models sharing an alignment take the same protected crops
    one after the other (the face pipeline protects them once). Elsewhere the first cell (it
    detects and aligns every used image) runs alone and the others then run in parallel, reading
    its detections from the cache.
    """
    cells = _cell_order(models, specs)
    cell_options = {**options, "image_ids": used, "min_images_per_identity": 1}
    local = ctx.executor.name == "local"
    if not local:
        cell_options["progress"] = None  # workers report through the driver's progress below
    calls = [(get, dataset, model, spec, cell_options) for model, spec in cells]
    resources = ctx.task_resources()
    with ctx.manifest.timer("embedding"):
        if local:
            results = ctx.executor.map(_embed_cell, calls)
        else:
            with ctx.progress(f"embed {dataset}: {len(calls)} cells on {ctx.executor.name}", len(calls)) as advance:
                results = ctx.executor.map(_embed_cell, calls[:1], resources=resources, on_done=advance)
                results += ctx.executor.map(_embed_cell, calls[1:], resources=resources, on_done=advance)
    feats: dict[str, dict[str, FeatureSet]] = {}
    for (model, spec), emb in zip(cells, results):
        feats.setdefault(model, {})[spec] = _scatter(layout, emb, used, f"{dataset}/{model}/{spec}")
        ctx.manifest.notes["embeddings"][f"{dataset}|{model}|{spec}"] = {
            "images_embedded": len(used),
            "detection_rate": float(np.asarray(emb.detected, dtype=bool).mean()),
            "provenance": emb.provenance,
        }
        ctx.manifest.data["datasets"][dataset].setdefault(
            "provenance", {k: v for k, v in emb.provenance.items() if "dataset" in k})
        ctx.manifest.models[model] = {k: v for k, v in emb.provenance.items()
                                      if k in ("model", "weights_id", "contract")}
    return feats


SPLITS_SEED_PREFIX = "splits/"
"""Manifest ``seeds`` key prefix of a dataset's gallery/probe draws (``splits/<dataset>``); readers
such as the trade-off's E5 check compare their ``splits_sha256``."""


def _draw(cfg: ProtocolConfig, dataset: str, reference: DatasetLayout, ctx: RunContext) -> IdentificationSplits:
    """The dataset's splits (same for every model and protector), recorded in the manifest."""
    with ctx.manifest.timer("protocol/splits"):
        kept = select_identities(reference.labels, reference.identity_names, min_images=cfg.min_images,
                                 max_identities=cfg.max_identities or None)
        splits = sample_splits(reference.labels, repeats=cfg.repeats, seed=cfg.seed, identities=kept,
                               gallery_images=cfg.gallery_images)
    ctx.manifest.seeds[f"{SPLITS_SEED_PREFIX}{dataset}"] = {
        "base_seed": cfg.seed,
        "repeat_seeds": list(splits.seeds),
        "generator": "numpy.random.default_rng(base_seed + repeat)",
        "gallery_images": cfg.gallery_images,
        "identities": splits.n_identities,
        "splits_sha256": array_digest(splits.gallery, splits.probe),
    }
    ctx.manifest.data.setdefault("datasets", {})[dataset] = {
        "images": len(reference.image_ids),
        "images_used_by_draws": len(reference.used_by(splits)),
        "identities_used": splits.n_identities,
        "image_ids_sha256": array_digest(np.array(reference.image_ids), reference.labels),
    }
    return splits


def _classify(cfg: ProtocolConfig, clf: IdentificationClassifier, feats: dict[str, FeatureSet], raw_spec: str,
              is_raw: dict[str, bool], splits: IdentificationSplits, cache: OutcomeCache,
              ctx: RunContext) -> dict[tuple[str, str], IdentificationResult]:
    """Results by (image type, gallery kind): one fit on the raw gallery serves every probe set;
    a protected gallery is fitted per protector."""
    outcome: dict[tuple[str, str], IdentificationResult] = {}
    if "raw" in cfg.galleries:
        probes = {spec: feats[spec] for spec in cfg.protectors}
        for spec, res in identify_many(clf, feats[raw_spec], probes, splits, device=ctx.device, cache=cache).items():
            outcome[(spec, "raw")] = res
    if "protected" in cfg.galleries:
        for spec in (s for s in cfg.protectors if not is_raw[s]):  # a raw "protected" gallery is the raw one
            outcome[(spec, "protected")] = identify_many(
                clf, feats[spec], {spec: feats[spec]}, splits, device=ctx.device, cache=cache
            )[spec]
    return outcome


def run_protocol(
    cfg: ProtocolConfig,
    ctx: RunContext,
    *,
    embeddings: Callable[..., Embeddings] | None = None,
) -> ProtocolOutcome:
    """Run closed-set identification for every (dataset, model, protector, classifier, gallery)."""
    get = embeddings or load_embeddings
    is_raw = {spec: build_protector(spec).name == "raw" for spec in cfg.protectors}  # fail fast on bad specs
    raw_spec = next((s for s, raw in is_raw.items() if raw), "raw")
    classifiers = {name: build_classifier(name, cfg.classifier_options.get(name)) for name in cfg.classifiers}
    cache = OutcomeCache(ctx.cache_dir / "identification")
    ctx.manifest.notes["classifiers"] = {name: clf.config() for name, clf in classifiers.items()}
    ctx.manifest.notes.setdefault("embeddings", {})
    out = ProtocolOutcome([], {}, {}, {})
    options = dict(pipeline=cfg.pipeline, detector=cfg.detector, data_root=ctx.data_root_option,
                   cache_dir=ctx.cache_dir, models_dir=ctx.models_dir, device=str(ctx.device),
                   batch_size=cfg.batch_size, progress=ctx.progress)
    for dataset in cfg.datasets:
        index = dataset_index(dataset, ctx.data_root_option)
        subset = None
        if cfg.max_identities or cfg.max_images_per_identity:
            subset = subset_image_ids(index, cfg.min_images, cfg.max_identities, cfg.max_images_per_identity,
                                      cfg.seed)
        layout = DatasetLayout.build(index, cfg.min_images, subset)
        out.splits[dataset] = _draw(cfg, dataset, layout, ctx)
        used = layout.used_by(out.splits[dataset])  # only what some draw needs is embedded
        n_types = len(dict.fromkeys([raw_spec, *cfg.protectors]))
        ctx.log(f"{dataset}: the {cfg.repeats} draws over {out.splits[dataset].n_identities} identities use "
                f"{len(used)} of {len(layout.image_ids)} images; expected cost: {len(used)} images x {n_types} "
                f"image types x {len(cfg.models)} models = {len(used) * n_types * len(cfg.models)} face "
                "embeddings (cached ones are read, not recomputed)")
        for model in cfg.models:
            if cfg.skip_missing_models and model not in out.skipped_models:
                reason = missing_weights(model, ctx)
                if reason:
                    out.skipped_models[model] = reason
                    ctx.log(f"[yellow]skipping model {model}[/]: {reason}")
        models = [m for m in cfg.models if m not in out.skipped_models]
        specs = list(dict.fromkeys([raw_spec, *cfg.protectors]))
        features = _embed_all(get, dataset, models, specs, layout, used, options, ctx)
        out.features[dataset], out.raw_spec = features, raw_spec
        for model in models:
            for cname, clf in classifiers.items():
                start = time.perf_counter()
                with ctx.manifest.timer(f"protocol/{cname}"):
                    outcome = _classify(cfg, clf, features[model], raw_spec, is_raw, out.splits[dataset], cache, ctx)
                ctx.log(f"{dataset} / {model} / {cname}: {len(outcome)} rows in {time.perf_counter() - start:.1f} s")
                for (spec, gallery), res in outcome.items():
                    out.results[(dataset, spec, cname, gallery, model)] = res
                    _note_unconverged(ctx, f"{dataset}|{model}|{spec}|{gallery}|{cname}", res)
                    out.rows.append(_row(cfg, dataset, spec, cname, gallery, model, res))
    ctx.manifest.notes["skipped_models"] = out.skipped_models
    return out


def _note_unconverged(ctx: RunContext, cell: str, result: IdentificationResult) -> None:
    """A fit that stopped above its gradient tolerance is logged and listed in the manifest."""
    flags = result.fit_info.get("converged", [])
    if flags and not all(flags):
        ctx.log(f"[yellow]{cell}: {flags.count(False)} of {len(flags)} classifier fits stopped above the gradient "
                "tolerance[/] (iteration cap or float32 precision)")
        ctx.manifest.notes.setdefault("classifier_not_converged", {})[cell] = [i for i, ok in enumerate(flags) if not ok]


def sort_rows(rows: Sequence[dict[str, Any]], cfg: ProtocolConfig) -> list[dict[str, Any]]:
    """Rows in spec order: dataset, classifier, gallery, image type, model (Table I order)."""
    order = {
        "dataset": {v: i for i, v in enumerate(cfg.datasets)},
        "classifier": {v: i for i, v in enumerate(cfg.classifiers)},
        "gallery": {v: i for i, v in enumerate(GALLERY_KINDS)},
        "image_type": {v: i for i, v in enumerate(cfg.protectors)},
        "model": {v: i for i, v in enumerate(cfg.models)},
    }
    return sorted(rows, key=lambda r: tuple(order[k][r[k]] for k in order))

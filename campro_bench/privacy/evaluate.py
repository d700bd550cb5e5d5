"""The E1/E2 evaluation loop: embeddings from the face pipeline -> splits -> classifiers -> rows.

:func:`run_protocol` reads a :class:`ProtocolConfig` (the parsed ``protocols/e1.toml``), gets the
cached embeddings of every (dataset, model, protector) from
:func:`campro_bench.faces.embeddings.face_embeddings`, draws the splits once per dataset, and
returns one long-form row per (dataset, image type, classifier, gallery kind, model). Provenance,
detection rates, seeds and stage timings go into the run manifest.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..errors import CamproError
from ..experiments.base import RunContext
from ..protectors import build_protector
from ..recognizers.base import contract_of, weights_path
from .cache import OutcomeCache, array_digest
from .classifiers import CLASSIFIERS, IdentificationClassifier, build_classifier
from .identification import FeatureSet, IdentificationResult, identify_many
from .splits import IdentificationSplits, sample_splits, select_identities

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


@dataclass
class ProtocolConfig:
    """The identification part of an E1/E2 spec, validated."""

    datasets: list[str]
    models: list[str]
    protectors: list[str]
    classifiers: list[str] = field(default_factory=lambda: ["nearest", "linear"])
    galleries: list[str] = field(default_factory=lambda: ["raw"])
    repeats: int = 10
    seed: int = 0
    pipeline: str = "paper"
    detector: str = "mtcnn"
    min_images: int = 2
    max_identities: int = 0
    max_images_per_identity: int = 0
    skip_missing_models: bool = False
    batch_size: int = 64
    confidence: float = 0.95
    classifier_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ProtocolConfig":
        defaults = {"classifiers": ["nearest", "linear"], "galleries": ["raw"]}

        def strings(key: str) -> list[str]:
            value = spec.get(key, defaults.get(key))
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise CamproError(f"protocol key '{key}' must be a non-empty list of names, got {value!r}")
            return value

        def integer(key: str, default: int, minimum: int) -> int:
            value = spec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise CamproError(f"protocol key '{key}' must be an integer >= {minimum}, got {value!r}")
            return value

        def images_cap() -> int:
            cap = integer("max_images_per_identity", 0, 0)
            if 0 < cap < integer("min_images", 2, 2):
                raise CamproError(f"protocol key 'max_images_per_identity' ({cap}) must be 0 (all) or >= min_images")
            return cap

        classifiers = strings("classifiers")
        for name in classifiers:
            CLASSIFIERS.entry(name)  # unknown names fail here, listing the known ones
        galleries = strings("galleries")
        bad = [g for g in galleries if g not in GALLERY_KINDS]
        if bad:
            raise CamproError(f"unknown gallery kind(s) {bad}; known: {', '.join(GALLERY_KINDS)}")
        options = {name: dict(spec.get(name, {})) for name in classifiers if isinstance(spec.get(name), dict)}
        return cls(
            datasets=strings("datasets"),
            models=strings("models"),
            protectors=strings("protectors"),
            classifiers=classifiers,
            galleries=galleries,
            repeats=integer("repeats", 10, 1),
            seed=integer("seed", 0, 0),
            pipeline=str(spec.get("pipeline", "paper")),
            detector=str(spec.get("detector", "mtcnn")),
            min_images=integer("min_images", 2, 2),
            max_identities=integer("max_identities", 0, 0),
            max_images_per_identity=images_cap(),
            skip_missing_models=bool(spec.get("skip_missing_models", False)),
            batch_size=integer("batch_size", 64, 1),
            confidence=float(spec.get("confidence", 0.95)),
            classifier_options=options,
        )


@dataclass
class ProtocolOutcome:
    rows: list[dict[str, Any]]
    results: dict[tuple[str, str, str, str, str], IdentificationResult]
    splits: dict[str, IdentificationSplits]
    skipped_models: dict[str, str]


def missing_weights(model: str, ctx: RunContext) -> str | None:
    """Why ``model`` cannot run (its user-supplied weights file is absent, or the package that
    carries its weights is not installed), or None."""
    contract = contract_of(model)
    if contract.weights_file and not weights_path(ctx.models_dir, contract).is_file():
        return (f"weights file {contract.weights_file} not found in {ctx.models_dir} "
                "(--models-dir / CAMPRO_BENCH_MODELS)")
    if not contract.weights_file:  # weights inside an installed package (or an npm file)
        from ..recognizers.weights import weights_status
        from ..registries import FACE_RECOGNIZERS

        try:
            metadata = FACE_RECOGNIZERS.entry(model).metadata
        except CamproError:  # not a registry entry (a test double): nothing to check
            return None
        if metadata.get("weights_id") is None:  # the entry does not say where its weights are
            return None
        status = weights_status(model, contract, metadata, ctx.models_dir, ctx.cache_dir)
        return None if status.found else status.location
    return None


def _features(emb: Embeddings) -> FeatureSet:
    return FeatureSet(np.asarray(emb.embeddings, dtype=np.float32), np.asarray(emb.detected, dtype=bool))


def _check_same_images(reference: Embeddings, other: Embeddings, where: str) -> None:
    if list(other.image_ids) != list(reference.image_ids) or not np.array_equal(other.labels, reference.labels):
        raise CamproError(f"{where}: image list or labels differ from the first model's; "
                          "the face pipeline must return every dataset in one order")


def _row(cfg: ProtocolConfig, dataset: str, protector: str, classifier: str, gallery: str, model: str,
         result: IdentificationResult) -> dict[str, Any]:
    summary = result.summary(cfg.confidence)
    return {
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


def _embed(get: Callable[..., Embeddings], dataset: str, model: str, specs: Sequence[str],
           reference: Embeddings | None, options: dict[str, Any], ctx: RunContext) -> tuple[dict[str, FeatureSet], Embeddings]:
    """Cached embeddings of every image type for one (dataset, model), recorded in the manifest."""
    feats: dict[str, FeatureSet] = {}
    with ctx.manifest.timer("embedding"):
        for spec in specs:
            emb = get(dataset, model, spec, **options)
            reference = reference or emb
            _check_same_images(reference, emb, f"{dataset}/{model}/{spec}")
            feats[spec] = _features(emb)
            ctx.manifest.notes["embeddings"][f"{dataset}|{model}|{spec}"] = {
                "detection_rate": float(feats[spec].detected.mean()),
                "provenance": emb.provenance,
            }
    ctx.manifest.models[model] = {k: v for k, v in emb.provenance.items() if k in ("model", "weights_id", "contract")}
    return feats, reference


def _draw(cfg: ProtocolConfig, dataset: str, reference: Embeddings, ctx: RunContext) -> IdentificationSplits:
    """The dataset's splits (same for every model and protector), recorded in the manifest."""
    with ctx.manifest.timer("protocol/splits"):
        kept = select_identities(reference.labels, reference.identity_names, min_images=cfg.min_images,
                                 max_identities=cfg.max_identities or None)
        splits = sample_splits(reference.labels, repeats=cfg.repeats, seed=cfg.seed, identities=kept)
    ctx.manifest.seeds[f"splits/{dataset}"] = {
        "base_seed": cfg.seed,
        "repeat_seeds": list(splits.seeds),
        "generator": "numpy.random.default_rng(base_seed + repeat)",
        "identities": splits.n_identities,
        "splits_sha256": array_digest(splits.gallery, splits.probe),
    }
    ctx.manifest.data.setdefault("datasets", {})[dataset] = {
        "images": len(reference.image_ids),
        "identities_used": splits.n_identities,
        "image_ids_sha256": array_digest(np.array(reference.image_ids), reference.labels),
        "provenance": {k: v for k, v in reference.provenance.items() if "dataset" in k},
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
                   min_images_per_identity=cfg.min_images, batch_size=cfg.batch_size, progress=ctx.progress)
    for dataset in cfg.datasets:
        reference: Embeddings | None = None
        options.pop("image_ids", None)
        if cfg.max_identities or cfg.max_images_per_identity:
            index = dataset_index(dataset, ctx.data_root_option)
            options["image_ids"] = subset_image_ids(index, cfg.min_images, cfg.max_identities,
                                                    cfg.max_images_per_identity, cfg.seed)
        for model in cfg.models:
            if cfg.skip_missing_models and model not in out.skipped_models:
                reason = missing_weights(model, ctx)
                if reason:
                    out.skipped_models[model] = reason
                    ctx.log(f"[yellow]skipping model {model}[/]: {reason}")
            if model in out.skipped_models:
                continue
            specs = list(dict.fromkeys([raw_spec, *cfg.protectors]))
            feats, reference = _embed(get, dataset, model, specs, reference, options, ctx)
            if dataset not in out.splits:
                out.splits[dataset] = _draw(cfg, dataset, reference, ctx)
            for cname, clf in classifiers.items():
                start = time.perf_counter()
                with ctx.manifest.timer(f"protocol/{cname}"):
                    outcome = _classify(cfg, clf, feats, raw_spec, is_raw, out.splits[dataset], cache, ctx)
                ctx.log(f"{dataset} / {model} / {cname}: {len(outcome)} rows in {time.perf_counter() - start:.1f} s")
                for (spec, gallery), res in outcome.items():
                    out.results[(dataset, spec, cname, gallery, model)] = res
                    out.rows.append(_row(cfg, dataset, spec, cname, gallery, model, res))
    ctx.manifest.notes["skipped_models"] = out.skipped_models
    return out


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

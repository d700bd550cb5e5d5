"""The registries of campro-bench, one per kind of plugin, with their entry-point groups.

Third-party packages extend campro-bench by declaring entry points in these groups (see the
README, "Plugins"). Built-in entries live in the modules listed here and are imported on first
use of their registry.
"""

from __future__ import annotations

from typing import Any

from .registry import Registry

PROTECTORS: Registry[Any] = Registry(
    "protector",
    "campro_bench.protectors",
    builtins=(
        "campro_bench.protectors.baselines",
        "campro_bench.protectors.isp",
        "campro_bench.protectors.lensless",
        "campro_bench.enhancer.protector",
        "campro_bench.attacks.base",
        "campro_bench.conditions.base",
    ),
)

FACE_DETECTORS: Registry[Any] = Registry(
    "face detector",
    "campro_bench.face_detectors",
    builtins=(
        "campro_bench.faces.detectors.mtcnn",
        "campro_bench.faces.detectors.yunet",
        "campro_bench.faces.detectors.centerface",
        "campro_bench.faces.detectors.dlib_hog",
        "campro_bench.faces.detectors.retinaface",
    ),
)

FACE_RECOGNIZERS: Registry[Any] = Registry(
    "face recognizer",
    "campro_bench.face_recognizers",
    builtins=(
        "campro_bench.recognizers.facenet_casia",
        "campro_bench.recognizers.dlib_resnet",
        "campro_bench.recognizers.sface",
        "campro_bench.recognizers.facenet_msceleb",
        "campro_bench.recognizers.mobilefacenet",
        "campro_bench.recognizers.mobilefacenet_fp",
        "campro_bench.recognizers.official",
        "campro_bench.recognizers.onnx_generic",
    ),
)

PERSON_DETECTORS: Registry[Any] = Registry(
    "person detector",
    "campro_bench.person_detectors",
    builtins=(
        "campro_bench.detection.ssdlite",
        "campro_bench.detection.yolo_onnx",
    ),
)

POSE_ESTIMATORS: Registry[Any] = Registry(
    "pose estimator", "campro_bench.pose_estimators", builtins=("campro_bench.utility.pose",)
)

CAPTIONERS: Registry[Any] = Registry(
    "captioner", "campro_bench.captioners", builtins=("campro_bench.utility.caption",)
)

DATASETS: Registry[Any] = Registry(
    "dataset",
    "campro_bench.datasets",
    builtins=("campro_bench.datasets.coco", "campro_bench.datasets.coco_person", "campro_bench.datasets.faces",
              "campro_bench.video.data"),
)

EXPERIMENTS: Registry[Any] = Registry(
    "experiment",
    "campro_bench.experiments",
    builtins=(
        "campro_bench.experiments.e1",
        "campro_bench.experiments.e2",
        "campro_bench.experiments.e3",
        "campro_bench.experiments.utility_curve",
        "campro_bench.experiments.e4",
        "campro_bench.experiments.table5",
        "campro_bench.experiments.e5",
        "campro_bench.experiments.tradeoff",
        "campro_bench.experiments.lensless",
        "campro_bench.experiments.audit",
        "campro_bench.experiments.tsne",
        "campro_bench.experiments.bdq",
    ),
)

IDENTIFICATION_CLASSIFIERS: Registry[Any] = Registry(
    "identification classifier", "campro_bench.identification_classifiers",
    builtins=("campro_bench.privacy.classifiers",),
)

ALIGNMENTS: Registry[Any] = Registry("alignment", "campro_bench.alignments", builtins=("campro_bench.faces.align",))

RETRAIN_EXTRACTORS: Registry[Any] = Registry(
    "re-trainable face extractor", "campro_bench.retrain_extractors", builtins=("campro_bench.training.fr_retrain",)
)

RETRAIN_HEADS: Registry[Any] = Registry(
    "re-training loss head", "campro_bench.retrain_heads", builtins=("campro_bench.training.fr_retrain",)
)

ATTACKS: Registry[Any] = Registry(
    "attack",
    "campro_bench.attacks",
    builtins=("campro_bench.attacks.cheap", "campro_bench.attacks.inverses", "campro_bench.attacks.mask_estimation"),
)
"""Attacks of the privacy audit: blind image transforms and analytic inverses keyed by protector
(metadata ``kind`` = ``blind`` | ``inverse``, ``protector`` = the inverted protector's name)."""

CONDITIONS: Registry[Any] = Registry(
    "capture condition", "campro_bench.conditions", builtins=("campro_bench.conditions.builtin",)
)
"""Capture conditions (grey, low-light, jpeg, distance, ...): seeded image transforms applied before or after
the protector, as the camera would (``campro_bench.conditions``)."""
VIDEO_PROTECTORS: Registry[Any] = Registry(
    "video protector", "campro_bench.video_protectors", builtins=("campro_bench.video.protectors",)
)
"""Protectors of clips ``(B, 3, T, H, W)`` in [0, 1] (BDQ and its baselines; see docs/video.md)."""

ALL: dict[str, Registry[Any]] = {
    "protectors": PROTECTORS,
    "face-detectors": FACE_DETECTORS,
    "face-recognizers": FACE_RECOGNIZERS,
    "person-detectors": PERSON_DETECTORS,
    "pose-estimators": POSE_ESTIMATORS,
    "captioners": CAPTIONERS,
    "datasets": DATASETS,
    "experiments": EXPERIMENTS,
    "classifiers": IDENTIFICATION_CLASSIFIERS,
    "alignments": ALIGNMENTS,
    "retrain-extractors": RETRAIN_EXTRACTORS,
    "retrain-heads": RETRAIN_HEADS,
    "attacks": ATTACKS,
    "conditions": CONDITIONS,
    "video-protectors": VIDEO_PROTECTORS,
}
"""Registries by the plural name used on the command line (``campro-bench list KIND``)."""

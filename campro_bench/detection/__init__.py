"""Person detection: the detector contract, the SSDLite converter, YOLO ONNX loading, the SSD
loss and fine-tuning on protected images (paper Table III / experiment E3)."""

from .base import (
    PERSON_LABEL,
    DetectorContract,
    DetectorOutput,
    Detections,
    NotDifferentiableError,
    PersonDetector,
    contract_of,
    create_person_detector,
    detect_images,
    person_targets,
)

__all__ = [
    "PERSON_LABEL",
    "DetectorContract",
    "DetectorOutput",
    "Detections",
    "NotDifferentiableError",
    "PersonDetector",
    "contract_of",
    "create_person_detector",
    "detect_images",
    "person_targets",
]

"""Face recognisers (feature extractors): the model zoo and its preprocessing contracts."""

from .base import FaceModelContract, FaceRecognizer, create_face_recognizer

__all__ = ["FaceModelContract", "FaceRecognizer", "create_face_recognizer"]

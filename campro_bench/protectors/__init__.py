"""Protectors: what a camera-side anti-facial-recognition method does to the camera's output.

Use :func:`build_protector` with a spec string (``"lowres:factor=16"``) or a config dict; see
:mod:`campro_bench.protectors.base` for the contract and ``campro-bench list protectors`` for the
registered names.
"""

from ..registries import PROTECTORS
from .base import Protector, build_protector, check_image_batch, parse_spec

__all__ = ["PROTECTORS", "Protector", "build_protector", "check_image_batch", "parse_spec"]

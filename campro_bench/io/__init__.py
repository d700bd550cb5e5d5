"""Reading and writing files safely: atomic writes and image decoding with clear errors."""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from .images import (
    IMAGE_SUFFIXES,
    list_images,
    load_image,
    load_image_tensor,
    save_image_tensor,
    unreadable_reason,
    tensor_to_uint8,
    uint8_to_tensor,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "list_images",
    "load_image",
    "load_image_tensor",
    "save_image_tensor",
    "tensor_to_uint8",
    "uint8_to_tensor",
    "unreadable_reason",
]

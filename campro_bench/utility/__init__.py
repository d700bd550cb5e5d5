"""Utility of protected images for the applications they must still serve: person detection,
image quality, pose estimation and captioning (Tables III-V)."""

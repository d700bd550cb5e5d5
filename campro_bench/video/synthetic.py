"""Synthetic clips written as video files or frame folders: for tests and the bench script."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_clip(frames: int = 12, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` noise clip."""
    return np.random.default_rng(seed).integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)


def write_avi(path: Path, clip: np.ndarray, codec: str = "FFV1") -> None:
    """Write RGB frames with OpenCV (FFV1: lossless)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 25, clip.shape[2:0:-1])
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} video to {path}")
    for frame in clip:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_frame_folder(folder: Path, clip: np.ndarray) -> None:
    """Write RGB frames as ``0001.png``, ... (lossless)."""
    import cv2

    folder.mkdir(parents=True)
    for i, frame in enumerate(clip, 1):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def write_kth_tree(root: Path, actors: int = 4, frames: int = 20, size: int = 16,
                   actions: tuple[str, ...] = ("boxing", "walking")) -> None:
    """A KTH-layout folder ``<action>/personNN_<action>_d1_uncomp.avi`` of noise clips."""
    for a in range(1, actors + 1):
        for action in actions:
            (root / action).mkdir(parents=True, exist_ok=True)
            write_avi(root / action / f"person{a:02d}_{action}_d1_uncomp.avi", random_clip(frames, size, a))

"""The ``video-clips`` dataset kind: labelled clips from frame folders or video files, seeded splits.

Two layouts are read:

* **frame folders** with a ``clips.csv`` (``clip, actor, action, frames``): ``<clip>/NNNN.jpg|png`` in
  frame order (the shared ``weizmann-subset`` layout);
* **video files** (``.avi``/``.mp4``, decoded with OpenCV) named by a naming rule: KTH
  (``<action>/personNN_<action>_dK_uncomp.avi``) or Weizmann (``<actor>_<action>.avi``, e.g.
  ``daria_jack.avi``).

Splits (both seeded and recorded): :func:`time_split` cuts every clip at a fraction of its length
(earlier frames train, later frames test: the actor task, where every actor is in both parts);
:func:`actor_split` holds out whole actors (the action task: recognise an action on people never seen).
:func:`windows` samples T frames at a stride inside each part, never across the cut.
Bad input (an empty folder, a corrupt file, an unknown action, a clip shorter than one window) raises
one :class:`~campro_bench.errors.CamproError` line naming the file.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from ..errors import CamproError, EmptyDatasetError, InvalidFileError, MissingFileError
from ..registries import DATASETS

VIDEO_SUFFIXES = (".avi", ".mp4")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
KTH_ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
WEIZMANN_ACTIONS = ("bend", "jack", "jump", "pjump", "run", "side", "skip", "walk", "wave1", "wave2")
_KTH = re.compile(r"^(person\d+)_([a-z]+)_(d\d+)(?:_uncomp)?$")
_WEIZMANN = re.compile(r"^([a-z]+)_([a-z]+\d?)$")


@dataclass(frozen=True)
class ClipRef:
    """One labelled clip: where its frames are, who acts and what they do."""

    name: str
    path: Path
    actor: str
    action: str


def parse_clip_name(path: Path, naming: str) -> tuple[str, str]:
    """``(actor, action)`` of a video file under the ``kth`` or ``weizmann`` naming rule."""
    stem = path.stem.lower()
    if naming == "kth":
        match, actions = _KTH.match(stem), KTH_ACTIONS
    elif naming == "weizmann":
        match, actions = _WEIZMANN.match(stem), WEIZMANN_ACTIONS
    else:
        raise CamproError(f"unknown clip naming '{naming}'; known: kth, weizmann")
    if match is None:
        raise InvalidFileError(f"{path}: name does not follow the {naming} naming rule")
    actor, action = match.group(1), match.group(2)
    if action not in actions:
        raise InvalidFileError(f"{path}: unknown action '{action}' for {naming} naming; known: {', '.join(actions)}")
    return actor, action


def scan_clips(root: Path, naming: str = "auto") -> list[ClipRef]:
    """Every clip under ``root``: from ``clips.csv`` when present, else video files by ``naming``
    (``auto``: ``kth`` when a file name starts with ``person``, else ``weizmann``)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"video dataset folder {root} does not exist")
    index = root / "clips.csv"
    if index.is_file():
        return _clips_from_csv(index)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise EmptyDatasetError(f"{root}: no clips.csv and no .avi/.mp4 video files")
    if naming == "auto":
        naming = "kth" if files[0].stem.lower().startswith("person") else "weizmann"
    clips = []
    for path in files:
        actor, action = parse_clip_name(path, naming)
        clips.append(ClipRef(str(path.relative_to(root).with_suffix("")), path, actor, action))
    return clips


def _clips_from_csv(index: Path) -> list[ClipRef]:
    with index.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"clip", "actor", "action"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise InvalidFileError(f"{index}: needs rows with columns clip, actor, action")
    return [ClipRef(r["clip"], index.parent / r["clip"], r["actor"], r["action"]) for r in rows]


def read_frames(path: Path, size: int | None = None) -> np.ndarray:
    """Frames of one clip as uint8 ``(T, H, W, 3)`` RGB, from a frame folder or a video file;
    resized to ``size`` x ``size`` (area interpolation) when given."""
    import cv2

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise EmptyDatasetError(f"{path}: clip folder holds no .jpg/.png frames")
        frames = []
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise InvalidFileError(f"{file}: not a readable image")
            frames.append(image)
    else:
        if not path.is_file():
            found = [path.with_suffix(s) for s in VIDEO_SUFFIXES if path.with_suffix(s).is_file()]
            if not found:
                raise MissingFileError(f"clip {path} does not exist (no folder, no video file)")
            path = found[0]
        capture = cv2.VideoCapture(str(path))
        frames = []
        while capture.isOpened():
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
        capture.release()
        if not frames:
            raise InvalidFileError(f"{path}: not a readable video (no frame decoded)")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InvalidFileError(f"{path}: frames of different sizes {sorted(shapes)}")
    if size is not None and frames[0].shape[:2] != (size, size):
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


@dataclass
class VideoClips:
    """A loaded ``video-clips`` dataset: frames and labels of every clip, label vocabularies."""

    clips: list[ClipRef]
    frames: list[np.ndarray]
    actors: list[str]
    actions: list[str]

    def actor_index(self, i: int) -> int:
        return self.actors.index(self.clips[i].actor)

    def action_index(self, i: int) -> int:
        return self.actions.index(self.clips[i].action)

    def info(self) -> dict[str, object]:
        return {"clips": len(self.clips), "frames": int(sum(len(f) for f in self.frames)),
                "actors": len(self.actors), "actions": len(self.actions)}


def load_video_clips(root: Path, size: int = 64, naming: str = "auto",
                     actions: tuple[str, ...] | None = None) -> VideoClips:
    """Read every clip of ``root`` at ``size`` x ``size``; ``actions`` (when given) must cover every clip's action."""
    clips = scan_clips(root, naming)
    if actions is not None:
        for clip in clips:
            if clip.action not in actions:
                raise InvalidFileError(f"{clip.path}: unknown action '{clip.action}'; known: {', '.join(actions)}")
    frames = [read_frames(c.path, size) for c in clips]
    return VideoClips(clips, frames, sorted({c.actor for c in clips}), sorted({c.action for c in clips}))


# ---------------------------------------------------------------------------------------
# splits and windows
# ---------------------------------------------------------------------------------------
Segment = tuple[int, int, int]
"""``(clip index, first frame, end frame)``: a half-open frame range of one clip."""


def time_split(data: VideoClips, train_fraction: float = 0.6) -> tuple[list[Segment], list[Segment]]:
    """Earlier frames of every clip train, later ones test (the actor task); deterministic."""
    if not 0 < train_fraction < 1:
        raise CamproError(f"train fraction must lie in (0, 1), got {train_fraction}")
    train, test = [], []
    for i, frames in enumerate(data.frames):
        cut = int(round(len(frames) * train_fraction))
        train.append((i, 0, cut))
        test.append((i, cut, len(frames)))
    return train, test


def actor_split(data: VideoClips, test_actors: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded leave-actors-out split: ``(train actors, test actors)`` (the action task)."""
    if not 0 < test_actors < len(data.actors):
        raise CamproError(f"test actors must lie in 1..{len(data.actors) - 1}, got {test_actors}")
    order = np.random.default_rng(seed).permutation(len(data.actors))
    test = sorted(data.actors[j] for j in order[:test_actors])
    return [a for a in data.actors if a not in test], test


def actor_segments(data: VideoClips, actors: list[str]) -> list[Segment]:
    """Whole clips of the given actors."""
    return [(i, 0, len(f)) for i, f in enumerate(data.frames) if data.clips[i].actor in actors]


def windows(data: VideoClips, segments: list[Segment], frames: int, stride: int, step: int) -> list[tuple[int, int]]:
    """``(clip, start)`` of every window of ``frames`` frames ``stride`` apart that lies inside one
    segment, starts ``step`` frames apart; a segment shorter than one window is an error naming its clip."""
    span = (frames - 1) * stride + 1
    out = []
    for clip, first, end in segments:
        if end - first < span:
            raise InvalidFileError(f"{data.clips[clip].path}: frames {first}..{end - 1} are fewer than one window "
                                   f"of {frames} frames at stride {stride} ({span} frames)")
        out.extend((clip, s) for s in range(first, end - span + 1, step))
    return out


def window_frames(data: VideoClips, clip: int, start: int, frames: int, stride: int) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` of one window."""
    return data.frames[clip][start:start + (frames - 1) * stride + 1:stride]


def window_span(frames: int, stride: int) -> int:
    return (frames - 1) * stride + 1


# ---------------------------------------------------------------------------------------
# registered video datasets (kind "video-clips")
# ---------------------------------------------------------------------------------------
@DATASETS.register("weizmann-subset", kind="video-clips", folder="weizmann-subset", naming="weizmann",
                   description="36 Weizmann clips, 9 actors x 4 actions, 64x64 frame folders with clips.csv")
def weizmann_subset(data_root: Path, size: Annotated[int, Field(ge=8, le=1024)] = 64) -> VideoClips:
    return load_video_clips(Path(data_root) / "weizmann-subset", size, "weizmann")


@DATASETS.register("kth", kind="video-clips", folder="kth", naming="kth",
                   description="KTH actions: <action>/personNN_<action>_dK_uncomp.avi (25 actors x 6 actions)")
def kth(data_root: Path, size: Annotated[int, Field(ge=8, le=1024)] = 64) -> VideoClips:
    return load_video_clips(Path(data_root) / "kth", size, "kth", KTH_ACTIONS)


def load_video_dataset(name: str, data_root: Path | None, size: int = 64) -> VideoClips:
    """A registered ``video-clips`` dataset by name (under the data root), or any folder by path."""
    if name in DATASETS and DATASETS.entry(name).metadata.get("kind") == "video-clips":
        if data_root is None:
            raise CamproError(f"video dataset '{name}' needs a data root (--data-root or CAMPRO_BENCH_DATA)")
        return DATASETS.get(name)(Path(data_root), size)
    if name in DATASETS:
        raise CamproError(f"dataset '{name}' is not a video-clips dataset")
    return load_video_clips(Path(name), size)

"""The video-clips dataset kind: readers agree, splits do not leak, bad input fails in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from campro_bench.errors import CamproError
from campro_bench.video.data import (actor_segments, actor_split, load_video_clips, read_frames, scan_clips,
                                     time_split, window_span, windows)
from campro_bench.video.synthetic import random_clip as _synthetic_clip
from campro_bench.video.synthetic import write_avi as _write_avi
from campro_bench.video.synthetic import write_frame_folder as _write_folder
from campro_bench.video.synthetic import write_kth_tree as _kth_tree


def test_avi_and_frame_folder_give_the_same_frames(tmp_path: Path) -> None:
    clip = _synthetic_clip()
    _write_avi(tmp_path / "clip.avi", clip)  # FFV1 is lossless, PNG too: the frames must agree exactly
    _write_folder(tmp_path / "clip", clip)
    from_video = read_frames(tmp_path / "clip.avi")
    from_folder = read_frames(tmp_path / "clip")
    assert from_video.shape == clip.shape
    np.testing.assert_array_equal(from_video, from_folder)
    np.testing.assert_array_equal(from_folder, clip)


def test_kth_naming_gives_actor_and_action(tmp_path: Path) -> None:
    _kth_tree(tmp_path)
    clips = scan_clips(tmp_path)
    assert {(c.actor, c.action) for c in clips} == {(f"person{a:02d}", act) for a in range(1, 5)
                                                    for act in ("boxing", "walking")}
    data = load_video_clips(tmp_path, size=16)
    assert data.actors == [f"person{a:02d}" for a in range(1, 5)] and data.actions == ["boxing", "walking"]


def test_weizmann_naming(tmp_path: Path) -> None:
    _write_avi(tmp_path / "daria_jack.avi", _synthetic_clip(6, 16))
    (clip,) = scan_clips(tmp_path)
    assert (clip.actor, clip.action) == ("daria", "jack")


def _frames_of(data, segments, frames, stride, step):  # type: ignore[no-untyped-def]
    span = window_span(frames, stride)
    return {(c, s + k) for c, s in windows(data, segments, frames, stride, step) for k in range(span)}


def test_time_split_never_shares_frames(tmp_path: Path) -> None:
    _kth_tree(tmp_path, frames=40)
    data = load_video_clips(tmp_path, size=16)
    train, test = time_split(data, 0.6)
    a, b = _frames_of(data, train, 4, 2, 1), _frames_of(data, test, 4, 2, 1)
    assert a and b and not a & b
    assert {c for c, _ in a} == {c for c, _ in b} == set(range(len(data.clips)))  # every actor in both parts


def test_actor_split_holds_out_whole_actors(tmp_path: Path) -> None:
    _kth_tree(tmp_path)
    data = load_video_clips(tmp_path, size=16)
    train, test = actor_split(data, 1, seed=3)
    assert len(test) == 1 and not set(train) & set(test) and set(train) | set(test) == set(data.actors)
    assert actor_split(data, 1, seed=3) == (train, test)
    tr, te = actor_segments(data, train), actor_segments(data, test)
    assert not {c for c, _, _ in tr} & {c for c, _, _ in te}
    assert {data.clips[c].actor for c, _, _ in te} == set(test)


def test_windows_sample_frames_at_a_stride(tmp_path: Path) -> None:
    _kth_tree(tmp_path, actors=1, frames=20)
    data = load_video_clips(tmp_path, size=16)
    wins = windows(data, [(0, 0, 20)], frames=4, stride=3, step=5)
    assert wins == [(0, 0), (0, 5), (0, 10)]  # a window spans 10 frames: starts 0, 5, 10 fit, 15 does not


def _one_line(exc: pytest.ExceptionInfo[CamproError], name: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and name in message


def test_clip_shorter_than_a_window(tmp_path: Path) -> None:
    _kth_tree(tmp_path, actors=1, frames=5)
    data = load_video_clips(tmp_path, size=16)
    with pytest.raises(CamproError) as exc:
        windows(data, [(0, 0, 5)], frames=8, stride=1, step=1)
    _one_line(exc, "person01_boxing_d1_uncomp")


def test_corrupt_video_file(tmp_path: Path) -> None:
    (tmp_path / "walking").mkdir()
    bad = tmp_path / "walking" / "person01_walking_d1_uncomp.avi"
    bad.write_bytes(b"RIFF\x00\x00not a video at all" * 10)
    with pytest.raises(CamproError) as exc:
        load_video_clips(tmp_path)
    _one_line(exc, str(bad))


def test_unknown_action_name(tmp_path: Path) -> None:
    _write_avi(tmp_path / "person01_dancing_d1_uncomp.avi", _synthetic_clip(6, 16))
    with pytest.raises(CamproError) as exc:
        scan_clips(tmp_path, "kth")
    _one_line(exc, "person01_dancing_d1_uncomp.avi")
    assert "dancing" in str(exc.value)


def test_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(CamproError) as exc:
        scan_clips(tmp_path)
    _one_line(exc, str(tmp_path))
    (tmp_path / "clip").mkdir()
    with pytest.raises(CamproError) as exc:
        read_frames(tmp_path / "clip")
    _one_line(exc, str(tmp_path / "clip"))

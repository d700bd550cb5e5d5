"""The BLIP captioner adapter, end to end with a tiny randomly initialised BLIP (offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.errors import InvalidFileError, MissingFileError
from campro_bench.registries import CAPTIONERS
from campro_bench.utility.caption import (
    BlipCaptioner,
    blip_folder,
    build_captioner,
    caption_dataset,
    cider_d,
    load_coco_captions,
    make_tiny_blip,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_blip(tmp_path_factory.mktemp("models") / "blip", seed=0)


def test_missing_folder_says_how_to_get_blip(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as info:
        build_captioner("blip", models_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "blip") in message
    assert "Salesforce/blip-image-captioning-base" in message and "save_pretrained" in message
    assert blip_folder(None, tmp_path) == tmp_path / "blip"
    assert blip_folder(tmp_path / "x", tmp_path) == tmp_path / "x"


def test_folder_without_model_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "blip").mkdir()
    with pytest.raises(InvalidFileError, match="no config.json"):
        build_captioner("blip", path=tmp_path / "blip")
    (tmp_path / "blip" / "config.json").write_text("{}")
    with pytest.raises(InvalidFileError, match="cannot load BLIP from"):
        build_captioner("blip", path=tmp_path / "blip")


def test_tiny_blip_captions_deterministically(tiny_blip: Path) -> None:
    captioner = build_captioner("blip", models_dir=tiny_blip.parent, max_new_tokens=6, num_beams=2)
    assert isinstance(captioner, BlipCaptioner)
    images = [np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8),
              torch.rand(3, 30, 20, generator=torch.Generator().manual_seed(2))]
    first = captioner.caption(images)
    assert len(first) == 2 and all(isinstance(c, str) for c in first)
    vocab = set(captioner.processor.tokenizer.get_vocab())
    assert all(word in vocab for c in first for word in c.split())
    assert captioner.caption(images) == first
    assert captioner.caption([]) == []


@pytest.mark.realdata
def test_tiny_blip_end_to_end_on_coco(data_root: Path, tiny_blip: Path) -> None:
    data = load_coco_captions(data_root / "coco-mini", limit=2)
    captioner = build_captioner("blip", path=tiny_blip, max_new_tokens=8)
    captions = caption_dataset(captioner, data, transform=lambda image: 255 - image, batch_size=1)
    assert sorted(captions) == data.image_ids
    result = cider_d(data.references, captions)
    assert result.score >= 0.0 and np.isfinite(result.score)


def test_registered() -> None:
    assert "blip" in CAPTIONERS.names()
    assert "save_pretrained" in CAPTIONERS.entry("blip").metadata["weights"]

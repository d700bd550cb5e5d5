"""CIDEr-D scoring, caption tokenisation and COCO reference captions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from campro_bench.errors import CamproError, InvalidFileError, MissingFileError
from campro_bench.utility.caption import (
    cider_d,
    load_coco_captions,
    ptb_available,
    ptb_tokenize,
    resolve_tokenizer,
    simple_tokenize,
)

REFS = {
    1: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
        "Man on a surfboard riding an ocean wave."],
    2: ["Two dogs playing in the snow.", "A pair of dogs run through the snow.",
        "Dogs are playing together in a snowy field."],
    3: ["A plate of food with broccoli and rice.", "Rice and vegetables served on a white plate.",
        "A dinner plate holds rice and broccoli."],
}
GOOD = {1: "A man riding a wave on a surfboard.", 2: "Two dogs playing in the snow.",
        3: "A plate of rice and broccoli."}
UNRELATED = {1: "A red bus parked next to a building.", 2: "A laptop computer on a wooden desk.",
             3: "A giraffe standing in tall grass."}


def test_simple_tokenizer() -> None:
    assert simple_tokenize('Two dogs, playing in the "Snow"!') == "two dogs playing in the snow"
    assert simple_tokenize("  A  man's hat.\n") == "a man s hat"


@pytest.mark.parametrize("tokenizer", ["simple", "auto"])
def test_identical_beats_unrelated(tokenizer: str) -> None:
    exact = cider_d(REFS, {i: refs[0] for i, refs in REFS.items()}, tokenizer)
    good = cider_d(REFS, GOOD, tokenizer)
    bad = cider_d(REFS, UNRELATED, tokenizer)
    assert exact.score > bad.score and good.score > bad.score
    assert bad.score >= 0.0 and bad.score < 0.1
    assert set(good.per_image) == {1, 2, 3}
    assert good.score == pytest.approx(sum(good.per_image.values()) / 3)
    assert good.tokenizer in ("ptb", "simple")


def test_cider_needs_two_images_and_references() -> None:
    with pytest.raises(CamproError, match="at least 2 images"):
        cider_d(REFS, {1: GOOD[1]}, "simple")
    with pytest.raises(CamproError, match="no reference captions"):
        cider_d(REFS, {1: "x", 9: "y"}, "simple")
    with pytest.raises(CamproError, match="unknown caption tokenizer"):
        resolve_tokenizer("spacy")


@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed")
def test_ptb_tokenizer_matches_pycocoevalcap() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sentences = ['Two dogs, playing in the "snow"!', "A man's hat -- on (the) table...", "ok"]
    theirs = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
    assert ptb_tokenize(sentences) == [theirs[i][0] for i in range(len(sentences))]
    assert ptb_available() and resolve_tokenizer("auto") == "ptb"


def test_load_captions_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="captions_val2017.json"):
        load_coco_captions(tmp_path)
    (tmp_path / "annotations").mkdir()
    annotation = tmp_path / "annotations" / "captions_val2017.json"
    annotation.write_text(json.dumps({"images": []}))
    with pytest.raises(MissingFileError, match="image folder .*val2017"):
        load_coco_captions(tmp_path)
    (tmp_path / "val2017").mkdir()
    with pytest.raises(InvalidFileError, match="not a COCO captions file \\(missing annotations\\)"):
        load_coco_captions(tmp_path)
    annotation.write_text("{not json")
    with pytest.raises(InvalidFileError, match="not valid JSON"):
        load_coco_captions(tmp_path)


@pytest.mark.realdata
def test_coco_mini_captions(data_root: Path) -> None:
    data = load_coco_captions(data_root / "coco-mini")
    assert len(data.image_ids) == 79 and sum(len(v) for v in data.references.values()) == 395
    assert all(len(v) >= 5 for v in data.references.values())
    first = data.image_ids[:4]
    assert load_coco_captions(data_root / "coco-mini", limit=4).image_ids == first
    assert data.load(first[0]).ndim == 3
    # a reference caption scored against the other references of its image beats a shuffled one
    own = {i: data.references[i][0] for i in first}
    others = {i: data.references[i][1:] for i in first}
    shuffled = {i: data.references[first[(k + 1) % 4]][0] for k, i in enumerate(first)}
    assert cider_d(others, own).score > cider_d(others, shuffled).score

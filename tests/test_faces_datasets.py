"""Face datasets: layouts, deterministic order, fingerprints and the errors for bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from campro_bench.datasets.faces import LFW, lfw_pairs, load_face_dataset
from campro_bench.errors import CamproError, EmptyDatasetError, InvalidFileError, MissingFileError, UnknownNameError
from campro_bench.faces.pipeline import select_items


def _jpeg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


@pytest.mark.realdata
def test_lfw_items_and_pairs(data_root: Path) -> None:
    ds = load_face_dataset("lfw", data_root)
    items = ds.items()
    assert isinstance(ds, LFW)
    assert len(items) == 13233
    assert len({it.identity for it in items}) == 5749
    assert items[0].image_id == "images/AJ_Cook/AJ_Cook_0001.jpg"
    assert [it.image_id for it in items] == sorted(it.image_id for it in items)  # grouped, sorted
    pairs = lfw_pairs(ds)
    assert len(pairs) == 6000
    assert [sum(p.fold == f for p in pairs) for f in range(10)] == [600] * 10
    assert sum(p.same for p in pairs) == 3000
    assert pairs[0].first == "images/Abel_Pacheco/Abel_Pacheco_0001.jpg" and pairs[0].same
    kept, labels, names = select_items(ds, min_images_per_identity=2)
    assert (len(kept), len(names)) == (9164, 1680)  # the counts ../shared/README.md states
    assert labels.max() == len(names) - 1 and np.all(np.diff(labels) >= 0)


@pytest.mark.realdata
def test_celeba_subset(data_root: Path) -> None:
    ds = load_face_dataset("celeba-subset", data_root)
    items = ds.items()
    assert len(items) == 2741 and len({it.identity for it in items}) == 299
    identities = [int(it.identity) for it in items]
    assert identities == sorted(identities)  # numeric identity order
    assert all(it.image_id.startswith("images/") and it.path.is_file() for it in items[:20])
    assert ds.fingerprint()["files"] == 2741


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"lfw dataset not found: expected .*lfw laid out as"):
        load_face_dataset("lfw", tmp_path).items()
    (tmp_path / "faces").mkdir()
    with pytest.raises(EmptyDatasetError, match=r"holds no images"):
        load_face_dataset("identity-folder:folder=faces", tmp_path).items()
    with pytest.raises(CamproError, match="identity-folder needs a folder"):
        load_face_dataset("identity-folder", tmp_path)
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        load_face_dataset("nope", tmp_path)
    with pytest.raises(CamproError, match="has no option 'size'"):
        load_face_dataset("lfw:size=3", tmp_path)


def test_celeba_layout_errors(tmp_path: Path) -> None:
    folder = tmp_path / "celeba"
    (folder / "images").mkdir(parents=True)
    with pytest.raises(MissingFileError, match=r"identity file .*identity_CelebA.txt not found"):
        load_face_dataset("celeba", tmp_path).items()
    (folder / "identity_CelebA.txt").write_text("000001.jpg 2\n000002.jpg 10\n")
    _jpeg(folder / "images" / "000001.jpg")
    with pytest.raises(MissingFileError, match=r"1 images listed in identity_CelebA.txt are missing, e.g. .*000002.jpg"):
        load_face_dataset("celeba", tmp_path).items()
    _jpeg(folder / "images" / "000002.jpg")
    (folder / "identity_CelebA.txt").write_text("000001.jpg 10\n000002.jpg 2\n")
    items = load_face_dataset("celeba", tmp_path).items()
    assert [it.identity for it in items] == ["2", "10"]  # numeric, not string, order
    (folder / "identity_CelebA.txt").write_text("000001.jpg\n")
    with pytest.raises(InvalidFileError, match="line 1: expected 'file identity'"):
        load_face_dataset("celeba", tmp_path).items()


def test_identity_folder_order_and_fingerprint(tmp_path: Path) -> None:
    for name, n in (("bob", 2), ("alice", 3)):
        for k in range(n):
            _jpeg(tmp_path / "faces" / name / f"{k}.jpg", k)
    (tmp_path / "faces" / "alice" / "notes.txt").write_text("not an image")
    ds = load_face_dataset("identity-folder:folder=faces", tmp_path)
    assert [it.image_id for it in ds.items()] == ["alice/0.jpg", "alice/1.jpg", "alice/2.jpg", "bob/0.jpg", "bob/1.jpg"]
    before = ds.fingerprint()
    assert before == load_face_dataset(f"identity-folder:folder={tmp_path / 'faces'}").fingerprint() | {"dataset": before["dataset"]}
    _jpeg(tmp_path / "faces" / "bob" / "2.jpg", 5)
    after = load_face_dataset("identity-folder:folder=faces", tmp_path).fingerprint()
    assert after["files"] == 6 and after["sha256"] != before["sha256"]
    kept, labels, names = select_items(ds, min_images_per_identity=3)
    assert names == ["alice"] and labels.tolist() == [0, 0, 0]
    with pytest.raises(EmptyDatasetError, match=">= 4 images"):
        select_items(ds, min_images_per_identity=4)


def test_fingerprint_digest_is_stable(tmp_path: Path) -> None:
    """Fingerprints key the caches, so their digest is pinned: files in pathlib's component order
    (``a/b`` before ``a-c``, though ``-`` sorts before ``/`` as a character), named relative to the
    root, one ``name<TAB>size`` line each."""
    import hashlib

    from campro_bench.datasets.fingerprint import fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(b"xy")
    (tmp_path / "a-c").write_bytes(b"xyz")
    expected = hashlib.sha256(b"a/b\t2\na-c\t3\n").hexdigest()
    for files in ([tmp_path / "a-c", tmp_path / "a" / "b"], [str(tmp_path / "a" / "b"), str(tmp_path / "a-c")]):
        got = fingerprint(tmp_path, files)
        assert got == {"root": str(tmp_path), "files": 2, "bytes": 5, "sha256": expected}


@pytest.mark.realdata
def test_lfw_fingerprint_is_the_one_the_committed_runs_recorded(data_root: Path) -> None:
    """The full LFW digest equals the one in a committed manifest: the embedding caches of earlier
    runs stay valid."""
    import json

    manifest = json.loads((Path(__file__).resolve().parents[1] / "baselines" / "e1_full" / "manifest.json").read_text())
    recorded = manifest["notes"]["embeddings"]["lfw|facenet-casia|raw"]["provenance"]["dataset_fingerprint"]
    ds = load_face_dataset("lfw", data_root)
    assert ds.fingerprint()["sha256"] == recorded["sha256"] and ds.fingerprint()["files"] == recorded["files"] == 13233


def test_lfw_pairs_errors(tmp_path: Path) -> None:
    _jpeg(tmp_path / "lfw" / "images" / "A_B" / "A_B_0001.jpg")
    ds = load_face_dataset("lfw", tmp_path)
    with pytest.raises(MissingFileError, match="pairs.txt"):
        lfw_pairs(ds)
    (tmp_path / "lfw" / "pairs.txt").write_text("1\t1\nA_B\t1\t2\nA_B\t1\tC_D\t1\n")
    with pytest.raises(MissingFileError, match=r"2 images named in .*pairs.txt are missing"):
        lfw_pairs(ds)
    (tmp_path / "lfw" / "pairs.txt").write_text("1\t2\nA_B\t1\t2\n")
    with pytest.raises(InvalidFileError, match="expected 4 pairs"):
        lfw_pairs(ds)

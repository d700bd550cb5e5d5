"""One LFW fold (600 pairs) per offline recogniser through ``campro-bench verify-lfw``.

The published accuracies are 0.9905 (FaceNet-CASIA), 0.9938 (dlib) and ~0.994 (SFace); a
detector, alignment, colour-order or normalisation mistake costs several points, so >= 0.95 on
one fold catches it. The full 10-fold figures are in docs/faces.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campro_bench.cli.main import main
from campro_bench.datasets.faces import lfw_pairs, load_face_dataset

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("model", ["sface", "dlib-resnet", "facenet-casia", "mobilefacenet"])
def test_one_fold_accuracy(model: str, data_root: Path, cache_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    rc = main(["verify-lfw", "--model", model, "--folds", "1", "--quiet", "--data-root", str(data_root),
               "--cache-dir", str(cache_dir), "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    result = json.loads(out.read_text())
    assert result["pairs"] == 600 and len(result["accuracies"]) == 1
    assert result["mean"] >= 0.95, result
    fold = [p for p in lfw_pairs(load_face_dataset("lfw", data_root)) if p.fold == 0]
    assert result["provenance"]["images"] == len({i for p in fold for i in (p.first, p.second)}) == 807
    assert result["provenance"]["detector"].startswith("mtcnn")
    assert f"LFW verification: {model}" in printed
    assert f"accuracy {result['mean']:.4f} ± 0.0000 (threshold from the other half of the fold)" in printed


def test_cli_errors(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-lfw", "--model", "no-such-model", "--data-root", str(data_root)]) == 2
    assert "unknown face recognizer 'no-such-model'" in capsys.readouterr().err
    assert main(["verify-lfw", "--model", "sface", "--data-root", str(tmp_path)]) == 2
    assert "lfw dataset not found: expected" in capsys.readouterr().err

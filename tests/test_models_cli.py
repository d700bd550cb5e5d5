"""``campro-bench models``: every face recogniser, its contract, and where its weights are or go."""

from __future__ import annotations

from pathlib import Path

import pytest

from campro_bench.cli.main import main
from campro_bench.cli.models_cmd import model_rows
from campro_bench.recognizers.official import PAPER_MODELS
from campro_bench.registries import FACE_RECOGNIZERS


@pytest.fixture()
def models_dir(tmp_path: Path):
    (tmp_path / "arcface_ir18.pth").write_bytes(b"")  # present (the listing checks names, not content)
    (tmp_path / "ms1mv3_arcface_r50_fp16").mkdir()
    (tmp_path / "ms1mv3_arcface_r50_fp16" / "backbone.pth").write_bytes(b"")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "glint_r100.onnx").write_bytes(b"")
    yield tmp_path
    FACE_RECOGNIZERS.remove("onnx-glint_r100")


def test_rows_say_found_or_missing_with_the_full_path(models_dir: Path) -> None:
    rows = {row["name"]: row for row in model_rows("*", str(models_dir))}
    assert set(PAPER_MODELS) <= set(rows) and "onnx-glint_r100" in rows
    assert rows["arc18"] == {
        "name": "arc18", "paper": "Arc18", "embedding": "512", "input": "112x112", "alignment": "arcface-112",
        "channels": "BGR (x-0)/1", "weights": "found", "location": str(models_dir / "arcface_ir18.pth")}
    assert rows["mag100"]["weights"] == "missing"
    assert rows["mag100"]["location"] == f"{models_dir / 'magface_ir100.pth'} (or magface_epoch_00025.pth)"
    assert rows["facenet"]["input"] == "160x160" and rows["facenet"]["alignment"] == "facenet-160"
    assert rows["insightface-r50"]["location"] == str(models_dir / "ms1mv3_arcface_r50_fp16" / "backbone.pth")
    assert rows["onnx-glint_r100"]["weights"] == "found"
    assert [r["weights"] for n, r in rows.items() if n in PAPER_MODELS].count("found") == 1


def test_command_prints_the_table(models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no folding of long paths
    assert main(["models", "--models-dir", str(models_dir)]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert "found" in lines["arc18"] and str(models_dir / "arcface_ir18.pth") in lines["arc18"]
    assert "missing" in lines["ada50"] and str(models_dir / "adaface_ir50.pth") in lines["ada50"]
    assert "RGB (x-0.5)/0.502" in lines["facenet"] and "160x160" in lines["facenet"]


def test_pattern_filters_rows(models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["models", "mag*", "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    names = [line.split()[1] for line in out.splitlines() if line.startswith("│")]
    assert names == ["mag100", "mag18", "mag50"]
    assert "0 of 3 face recognizers have their weights" in out


def test_narrow_terminal_lists_locations_below_the_table(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "mag*", "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines() if line.startswith("│")) <= 80
    assert f"mag100 (missing): {models_dir / 'magface_ir100.pth'} (or magface_epoch_00025.pth)" in out.replace("\n", "")


def test_entry_without_contract_is_listed_not_fatal(models_dir: Path) -> None:
    FACE_RECOGNIZERS.add("zz-no-contract", lambda **_: None)
    try:
        rows = {row["name"]: row for row in model_rows("zz-*", str(models_dir))}
    finally:
        FACE_RECOGNIZERS.remove("zz-no-contract")
    assert rows["zz-no-contract"]["weights"] == "invalid"
    assert "declares no FaceModelContract" in rows["zz-no-contract"]["location"]


def test_verify_lfw_models_dir_registers_its_onnx_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--models-dir DIR registers DIR/onnx/*.onnx as CAMPRO_BENCH_MODELS=DIR does (issue 14)."""
    from campro_bench.cli.main import main
    from campro_bench.registries import FACE_RECOGNIZERS

    (tmp_path / "models" / "onnx").mkdir(parents=True)
    (tmp_path / "models" / "onnx" / "mine.onnx").write_bytes(b"not read before the dataset")
    (tmp_path / "data").mkdir()
    try:
        status = main(["verify-lfw", "--model", "onnx-mine", "--models-dir", str(tmp_path / "models"),
                       "--data-root", str(tmp_path / "data"), "--quiet"])
        err = capsys.readouterr().err
        assert status == 2 and "unknown face recognizer" not in err
        assert "lfw dataset not found" in err  # the model was known; the (empty) data root is the next problem
    finally:
        FACE_RECOGNIZERS.remove("onnx-mine")

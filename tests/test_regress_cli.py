"""``campro-bench regress``: exit codes and the messages naming what moved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from campro_bench.cli.main import main
from campro_bench.errors import CamproError
from campro_bench.regress import compare_tables

BASE = """dataset,image_type,model,accuracy_mean,accuracy_std,repeats
lfw,raw,sface,0.9500,0.010,3
lfw,invert,sface,0.0200,0.004,3
lfw,raw,dlib-resnet,0.9300,,3
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_identical_and_within_tolerance_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "base.csv", BASE)
    moved = write(tmp_path, "res.csv", BASE.replace("0.9500", "0.9580").replace("invert,sface", "invert,sface"))
    assert main(["regress", str(moved), str(base), "--tol", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 3 rows x 3 numeric columns compared on keys (dataset, image_type, model)")
    assert "max |delta| 0.008" in out


def test_moved_cells_are_named_and_exit_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "base.csv", BASE)
    res = write(tmp_path, "res.csv", BASE.replace("0.9500", "0.9000").replace("0.9300,,", "0.9300,0.02,"))
    assert main(["regress", str(res), str(base), "--tol", "0.01"]) == 1
    out = capsys.readouterr().out
    assert "changed: [dataset=lfw, image_type=raw, model=sface] accuracy_mean: 0.95 -> 0.9 (delta -0.05" in out
    assert "changed: [dataset=lfw, image_type=raw, model=dlib-resnet] accuracy_std: nan -> 0.02" in out
    assert "FAILED" in out and "2 cells moved" in out
    # a looser tolerance accepts the first change but never a value appearing where there was none
    assert main(["regress", str(res), str(base), "--tol", "0.1"]) == 1
    findings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("changed:")]
    assert findings and not any("accuracy_mean" in line for line in findings)


def test_missing_and_extra_rows_and_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "base.csv", BASE)
    lines = BASE.splitlines()
    text = "\n".join([lines[0].replace(",repeats", ",extra"), *[l.rsplit(",", 1)[0] + ",1" for l in lines[1:3]],
                      "lfw,lowres,sface,0.1,0.0,1"]) + "\n"
    res = write(tmp_path, "res.csv", text)
    assert main(["regress", str(res), str(base)]) == 1
    out = capsys.readouterr().out
    assert "missing row (in baseline only): [dataset=lfw, image_type=raw, model=dlib-resnet]" in out
    assert "extra row (in result only): [dataset=lfw, image_type=lowres, model=sface]" in out
    assert "missing column (in baseline only): repeats" in out
    assert "extra column (in result only): extra" in out
    assert main(["regress", str(res), str(base), "--ignore", "repeats", "--ignore", "extra"]) == 1
    out = capsys.readouterr().out
    assert "missing column" not in out and "extra column" not in out and "missing row" in out


def test_explicit_keys_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "base.csv", BASE)
    assert main(["regress", str(base), str(base), "--key", "dataset", "--key", "image_type"]) == 2
    assert "duplicate key {'dataset': 'lfw', 'image_type': 'raw'}" in capsys.readouterr().err
    assert main(["regress", str(tmp_path / "nope.csv"), str(base)]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err
    assert main(["regress", str(base), str(base), "--key", "model_name"]) == 2
    assert "key column(s) ['model_name'] not in the baseline table" in capsys.readouterr().err
    assert main(["regress", str(base), str(base), "--tol", "-1"]) == 2


def test_compare_tables_api() -> None:
    base = pd.DataFrame({"k": ["a", "b"], "v": [1.0, 2.0]})
    report = compare_tables(base.assign(v=[1.0, 2.02]), base, tol=0.01)
    assert not report.ok and [(c.key, c.column) for c in report.changed] == [(("b",), "v")]
    assert report.changed[0].delta == pytest.approx(0.02)
    assert compare_tables(base.iloc[::-1].reset_index(drop=True), base, tol=0).ok  # row order is irrelevant
    with pytest.raises(CamproError, match="not numeric in the result"):
        compare_tables(base.assign(v=["x", "y"]), base, keys=["k"])

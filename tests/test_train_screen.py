"""``train screen``: two toy runs of a sweep ranked by held-out judges through E1's own code path (a fake
face pipeline supplies the embeddings: each ISP leaks identity by a level of its own)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from campro_bench.cli.main import app
from campro_bench.errors import CamproError
from campro_bench.experiments.screen_sweep import ScreenConfig, screen_sweep
from campro_bench.privacy import evaluate
from campro_bench.protectors.isp import ISPParams
from test_e1_conditions import IDS, noisy_embeddings  # noqa: E402  (tests/ is on sys.path)

LEAK = {"leaky": 0.9, "private": 3.0, "casia-adv": 1.6}  # embedding noise per ISP: less noise, more leakage


def fake_embeddings(dataset: str, model: str, protector: str, **options: Any) -> SimpleNamespace:
    level = next((v for k, v in LEAK.items() if k in protector), 0.0) + (0.2 if "@grey" in protector else 0.0)
    return noisy_embeddings(model, f"{model}{protector.split('/')[-1]}", level, options.get("image_ids"))  # no tmp path


@pytest.fixture(autouse=True)
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "load_embeddings", fake_embeddings)
    monkeypatch.setattr(evaluate, "dataset_index", lambda dataset, root: list(IDS))
    monkeypatch.setattr(evaluate, "contract_of", lambda name: SimpleNamespace(weights_file=None, alignment="a"))


def toy_sweep(root: Path, attacker: str = "facenet-casia") -> Path:
    """A sweep folder with two finished runs (names as a grid names them) and a hidden work folder."""
    for name in ("seed=0,flavour=private", "seed=0,flavour=leaky", ".partial-x"):
        (root / name).mkdir(parents=True)
        ISPParams.from_dict({**ISPParams.identity().to_dict(), "metadata": {"attacker": attacker}}).save(
            root / name / "isp.json")
    return root


CONFIG = ScreenConfig(judges=["j1", "j2"], max_identities=8, repeats=3)


def test_ranking_follows_the_e1_numbers_it_reads(tmp_path: Path) -> None:
    sweep = toy_sweep(tmp_path / "sweep")
    table = screen_sweep(sweep, tmp_path / "screen", CONFIG, cache_dir=str(tmp_path / "cache"), device="cpu",
                         quiet=True)
    # the E1 numbers, read back from E1's own output: worst top-1 over judges and conditions per ISP
    with open(tmp_path / "screen" / "e1" / "e1.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model"] for r in rows} == {"j1", "j2"} and {r["condition"] for r in rows} == {"colour", "grey"}
    worst: dict[str, float] = {}
    for r in rows:
        worst[r["image_type"]] = max(worst.get(r["image_type"], 0.0), float(r["accuracy_mean"]))
    by_name = {next(k for k in ("leaky", "private", "casia-adv") if k in spec): v for spec, v in worst.items()}
    assert by_name["private"] < by_name["casia-adv"] < by_name["leaky"]  # the fake leaks as designed
    order = sorted(by_name, key=by_name.get)
    assert [next(k for k in by_name if k in run) for run in table["run"]] == order
    assert list(table["worst_top1"]) == pytest.approx(sorted(by_name.values()))
    assert list(table["rank"]) == [1, 2, 3]
    survivors = dict(zip(table["run"], table["survivor"]))
    assert survivors["seed=0,flavour=private"] is True and survivors["seed=0,flavour=leaky"] is False
    record = json.loads((tmp_path / "screen" / "screen.json").read_text())
    assert record["survivors"] == ["seed=0,flavour=private"] and len(record["runs"]) == 2  # hidden folder skipped
    assert (tmp_path / "screen" / "screen.md").is_file()
    loose = screen_sweep(sweep, tmp_path / "loose", ScreenConfig(judges=["j1", "j2"], max_identities=8, repeats=3,
                                                                 margin=1.0), cache_dir=str(tmp_path / "cache"),
                         device="cpu", quiet=True)
    assert all(s is not False for s in loose["survivor"])  # a margin of 1 lets every run through


def test_judges_must_be_held_out_and_bad_keys_fail_in_one_line(tmp_path: Path) -> None:
    sweep = toy_sweep(tmp_path / "sweep", attacker="facenet-casia,j2")
    with pytest.raises(CamproError, match="judge j2 is not held out: run 'seed=0,flavour=leaky'") as info:
        screen_sweep(sweep, tmp_path / "screen", CONFIG, cache_dir=str(tmp_path / "cache"), device="cpu", quiet=True)
    assert "\n" not in str(info.value)
    with pytest.raises(CamproError, match="unknown train screen key 'judge'"):
        ScreenConfig.from_dict({"judge": ["x"]})
    with pytest.raises(CamproError, match="key 'margin'"):
        ScreenConfig(margin=-0.1)
    with pytest.raises(CamproError, match="holds no run folder"):
        (tmp_path / "empty").mkdir()
        screen_sweep(tmp_path / "empty", tmp_path / "s2", CONFIG)


def test_cli_screen_writes_the_ranking(tmp_path: Path) -> None:
    sweep = toy_sweep(tmp_path / "sweep")
    result = CliRunner().invoke(app, ["train", "screen", str(sweep), "--judges", "j1,j2", "--conditions", "colour",
                                      "--set", "max_identities=8", "--set", "repeats=2", "--quiet", "--device", "cpu",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(open(tmp_path / "sweep-screen" / "screen.csv")))
    assert table[0]["run"] == "seed=0,flavour=private"  # the private run ranks first
    assert [c for c in table[0] if c.startswith("top1 ")] == ["top1 j1@colour", "top1 j2@colour"]
    again = CliRunner().invoke(app, ["train", "screen", str(sweep), "--judges", "j1,j2", "--quiet",
                                     "--cache-dir", str(tmp_path / "cache")])
    assert isinstance(again.exception, CamproError) and "already holds a screen" in str(again.exception)
    (sweep / "seed=0,flavour=leaky" / "isp.json").unlink()  # one run fewer, screened again over the first screen
    (sweep / "seed=0,flavour=leaky").rmdir()
    replaced = CliRunner().invoke(app, ["train", "screen", str(sweep), "--judges", "j1,j2", "--conditions", "colour",
                                        "--set", "max_identities=8", "--set", "repeats=2", "--quiet", "--device",
                                        "cpu", "--cache-dir", str(tmp_path / "cache"), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert [p.name for p in (tmp_path / "sweep-screen" / "params").iterdir()] == ["run00-seed_0_flavour_private.json"]
    assert len(list(csv.DictReader(open(tmp_path / "sweep-screen" / "screen.csv")))) == 2  # the run and the reference


def test_screen_refuses_bad_keys_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from campro_bench.cli.main import main

    status = main(["train", "screen", str(tmp_path), "--set", "repeat=3"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "unknown train screen key 'repeat'" in err, err

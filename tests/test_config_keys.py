"""Silent wrong runs: misspelt keys (--set, protocol files, nested tables, training configs) fail by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from campro_bench.cli.config_options import config_file_option, resolve_config, set_option
from campro_bench.cli.main import main
from campro_bench.config import option, parse_config
from campro_bench.errors import CamproError
from campro_bench.experiments.runner import check_protocol_keys
from campro_bench.experiments.spec import list_protocols, load_spec, protocols_dir
from campro_bench.registries import EXPERIMENTS


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("override, key, hint", [
    ("repeat=1", "repeat", "repeats"),
    ('protector=["raw"]', "protector", "protectors"),
    ("linear.tols=5", "linear.tols", "linear.tol"),
])
def test_misspelt_set_key_fails_naming_it(override: str, key: str, hint: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "e1", "--set", override, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = error_line(capsys)
    assert f"unknown e1 protocol key '{key}' (did you mean '{hint}'?)" in err and "known keys:" in err
    assert not (tmp_path / "o").exists()


def test_unknown_key_in_a_protocol_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = tmp_path / "mine.toml"
    protocol.write_text("max_identites = 3\n" + Path(load_spec("e1")["_source"]).read_text())
    assert main(["run", "e1", "--protocol", str(protocol), "--out", str(tmp_path / "o")]) == 2
    assert "'max_identites' (did you mean 'max_identities'?)" in error_line(capsys)


@pytest.mark.parametrize("protocol", list_protocols())
def test_every_shipped_protocol_passes_the_key_check(protocol: str) -> None:
    experiment = protocol if protocol in EXPERIMENTS else protocol.split("_")[0]
    check_protocol_keys(experiment, load_spec(protocol))


@pytest.mark.parametrize("override, message", [
    ("repeats=0", "protocol key 'repeats': input should be greater than or equal to 1, got 0"),
    ('repeats="3"', "protocol key 'repeats': input should be a valid integer, got '3'"),
    ("confidence=1.5", "protocol key 'confidence': input should be less than 1"),
    ("batch_size=0", "protocol key 'batch_size'"),
    ("linear.tol=2.0", "linear-classifier key 'tol': input should be less than or equal to 1"),
])
def test_out_of_range_protocol_values_fail_naming_the_key(override: str, message: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from campro_bench.experiments.spec import apply_overrides
    from campro_bench.privacy.classifiers import build_classifier
    from campro_bench.privacy.evaluate import ProtocolConfig

    with pytest.raises(CamproError) as info:
        cfg = ProtocolConfig.from_spec(apply_overrides(load_spec("e1"), [override]))
        for name in cfg.classifiers:
            build_classifier(name, cfg.classifier_options.get(name))
    assert message in str(info.value)


@dataclass(frozen=True)
class Toy:
    epochs: int = option(5, ge=1, le=100)
    lr: float = option(0.1, gt=0.0)
    name: str = "a"


def test_parse_config_checks_keys_types_and_ranges() -> None:
    assert parse_config(Toy, {"epochs": 7, "lr": 1}, "toy") == Toy(epochs=7, lr=1.0)
    for data, message in [({"epoch": 3}, "unknown toy key 'epoch' (did you mean 'epochs'?); known keys: epochs, lr, name"),
                          ({"epochs": 0}, "toy key 'epochs': input should be greater than or equal to 1"),
                          ({"epochs": True}, "toy key 'epochs': input should be a valid integer"),
                          ({"lr": "fast"}, "toy key 'lr': input should be a valid number")]:
        with pytest.raises(CamproError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            parse_config(Toy, data, "toy")


def _toy_app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def toy(ctx: typer.Context, epochs: int = typer.Option(5), config_file: Optional[Path] = config_file_option(),
            set_: list[str] = set_option()) -> None:
        print(resolve_config(ctx, Toy, "toy", config_file, set_))

    return app


def test_config_file_then_options_then_set(tmp_path: Path) -> None:
    config = tmp_path / "toy.toml"
    config.write_text('epochs = 9\nname = "b"\n')
    runner = CliRunner()
    assert "Toy(epochs=9, lr=0.1, name='b')" in runner.invoke(_toy_app(), ["--config", str(config)]).output
    assert "epochs=3" in runner.invoke(_toy_app(), ["--config", str(config), "--epochs", "3"]).output
    out = runner.invoke(_toy_app(), ["--config", str(config), "--epochs", "3", "--set", "epochs=4"]).output
    assert "epochs=4" in out and "name='b'" in out
    config.write_text("epohcs = 9\n")
    result = runner.invoke(_toy_app(), ["--config", str(config)])
    assert isinstance(result.exception, CamproError) and "did you mean 'epochs'" in str(result.exception)


@pytest.mark.parametrize("command", [["train", "isp"], ["train", "enhancer", "--isp", "standard"],
                                     ["train", "detector", "--protector", "raw"], ["train", "lensless"]])
def test_training_commands_refuse_misspelt_set_keys(command: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--out", str(tmp_path / "o"), "--set", "sed=1"]) == 2
    assert "key 'sed' (did you mean 'seed'?)" in error_line(capsys)


def test_train_lensless_takes_a_toml_config_and_checks_cross_field_rules(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lensless.toml"
    config.write_text("mask_size = 40\nimage_size = 33\n")
    assert main(["train", "lensless", "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "mask_size 40 must not exceed image_size 33" in error_line(capsys)
    assert main(["train", "lensless", "--out", str(tmp_path / "o"), "--set", "noise=-0.1"]) == 2
    assert "train lensless key 'noise': input should be greater than or equal to 0" in error_line(capsys)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_folder_named_like_a_protocol_does_not_hide_the_shipped_one(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e1").mkdir()  # an earlier `campro-bench run e1 --out e1`
    assert Path(load_spec("e1")["_source"]).parent == protocols_dir()
    (tmp_path / "mine").write_text(Path(load_spec("e1")["_source"]).read_text())
    assert load_spec("mine")["_source"] == "mine"  # an existing file is still read as a path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_config_floats_are_finite_even_without_a_range(value: float) -> None:
    @dataclass(frozen=True)
    class Loose:
        weight: float = option(1.0, help="no range declared")
        bounded: float = option(1.0, ge=0.0, help="only a lower bound")

    for key in ("weight", "bounded"):
        with pytest.raises(CamproError, match=f"loose key '{key}': input should be a finite number"):
            parse_config(Loose, {key: value}, "loose")
    assert parse_config(Loose, {"weight": -1e300, "bounded": 1e300}, "loose").bounded == 1e300

"""Usage errors (unknown option, missing argument, bad value) print the usage and exit 2, never a traceback."""

from __future__ import annotations

import pytest
import typer

from campro_bench.cli.main import app, main


def command_paths() -> list[list[str]]:
    """Every leaf command of the CLI, as the words that name it (``["train", "isp"]``)."""
    paths: list[list[str]] = []

    def walk(command, words: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, [*words, name])
        else:
            paths.append(words)

    walk(typer.main.get_command(app), [])
    return paths


def test_the_sweep_sees_the_commands() -> None:
    names = {" ".join(p) for p in command_paths()}
    assert {"run", "protect", "list"} <= names and len(names) >= 8


@pytest.mark.parametrize("words", command_paths(), ids=lambda w: " ".join(w))
def test_unknown_option_prints_usage_and_exits_2(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*words, "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "Usage:" in err and "No such option: --no-such-option" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["protect"], "Missing argument"),
    (["protect", "raw", "a", "b", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["protect", "raw", "a", "b", "--jpeg-quality", "many"], "Invalid value for '--jpeg-quality'"),
    (["run"], "Missing argument"),
    (["run", "e1", "--out"], "requires an argument"),
    (["no-such-command"], "No such command"),
])
def test_missing_and_bad_values_print_usage_and_exit_2(args: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and message in err and "Traceback" not in err

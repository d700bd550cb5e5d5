"""Output folders that never cost the user a file.

Every command that writes into a folder the user names (``run``/``audit --out``, ``protect``
OUTPUT, ``train ... --out``) checks it here first, so a bad place is refused in one line before
any work is done:

* :func:`check_output_location`: no existing part of the path is a file, the current folder is
  not the target or inside it (for commands that replace the target's contents), and the folder
  (or, when it does not exist yet, its nearest existing parent) is writable.

A training command writes only its own file names into its folder and refuses, without
``--resume``, a folder that already holds one of them (:func:`check_new_run`).

``run --overwrite`` then replaces an earlier result file by file (:func:`install_outputs`): only the
files that the earlier run's manifest lists (and the manifest itself) are replaced or removed;
anything else in the folder (notes, an analysis folder) stays where it is, untouched. The new files
are written in full beside the folder first and only renamed into it at the end; a failure while
renaming puts every earlier file back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import CamproError
from .atomic import _umask, process_alive


def check_output_location(out: Path, option: str = "--out", replaces: bool = True) -> None:
    """Refuse, in one line, an output folder that cannot be written or must not be written from here.

    ``option`` names the argument in the message (``--out``, ``output``); ``replaces``: the command
    may replace the folder's contents, so working inside it is refused (``protect`` only adds files)."""
    out = Path(out)
    for part in [out, *out.parents]:
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = "is a file" if part == out else f"is under {part}, which is a file"
                raise CamproError(f"{option} {out} {where}, not a folder; give another {option}")
            break
    if replaces and out.exists() and inside(Path("."), out):
        raise CamproError(f"{option} {out} is the current folder or holds it; run from outside it "
                          f"(e.g. cd to its parent) or give another {option}")
    check_writable(out, f"{option} {out}")


def check_new_run(out: Path, names: Iterable[str]) -> None:
    """Refuse (one line) a folder that already holds a file under a name a new training run writes:
    an earlier run's or the user's, it is not replaced without ``--resume`` (which continues the run)."""
    present = [name for name in names if (out / name).exists() or (out / name).is_symlink()]
    if present:
        raise CamproError(f"output folder {out} already holds {names_list(present)} (an earlier run's or yours); "
                          "pass --resume to continue that run, or give another --out")


def check_new_file(*files: Path) -> None:
    """Refuse (one line) to replace an existing file: a checkpoint or report written by an earlier run,
    or the user's own file under that name, is only replaced with ``--overwrite``."""
    present = [str(f) for f in files if Path(f).exists() or Path(f).is_symlink()]
    if present:
        raise CamproError(f"{names_list(present)} already exist{'s' if len(present) == 1 else ''}; "
                          "pass --overwrite to replace, or give another --out")


def check_writable(folder: Path, what: str) -> None:
    """Refuse a folder (or, when it does not exist, its nearest existing parent) that cannot be written."""
    existing = next(p for p in [Path(folder), *Path(folder).absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == Path(folder) else f"cannot be made: {existing} is not writable"
        raise CamproError(f"{what} {where} (read-only file system or no permission); choose a writable folder")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (links resolved)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except OSError:  # e.g. a current folder that was deleted: it holds nothing
        return False
    return path == folder or folder in path.parents


def clean_relative(name: object) -> str | None:
    """``name`` as a clean relative POSIX path inside a folder, or ``None`` when it is not one
    (absolute, ``..``, empty, not a string): a manifest is a file the user can edit."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    return str(path)


def files_under(folder: Path) -> list[str]:
    """Every file and link below ``folder`` as sorted relative POSIX paths (links are not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found += [(rel / name).as_posix() for name in files]
        found += [(rel / name).as_posix() for name in dirs if (Path(root) / name).is_symlink()]
    return sorted(found)


def _replaceable(out: Path, name: str) -> bool:
    """Whether ``out/name`` may be moved by us: a file or link reached through real folders of ``out``
    only (a folder the user swapped for a link leads outside and is left alone)."""
    parts = PurePosixPath(name).parts
    for i in range(1, len(parts)):
        parent = out.joinpath(*parts[:i])
        if parent.is_symlink() or not parent.is_dir():
            return False
    target = out / name
    return target.is_symlink() or target.is_file()


MANIFEST = "manifest.json"
"""The manifest of a run: always the run's own file, listed or not."""


def clashes(out: Path, new: Iterable[str], ours: Iterable[str]) -> list[str]:
    """New outputs whose place in ``out`` is taken by something we did not write (``ours`` and
    the manifest are ours)."""
    mine = {MANIFEST, *ours}
    found = []
    for name in new:
        parts = PurePosixPath(name).parts
        for i in range(1, len(parts) + 1):
            place = out.joinpath(*parts[:i])
            sub = "/".join(parts[:i])
            last = i == len(parts)
            if not (place.exists() or place.is_symlink()):
                break
            if last and not (sub in mine and _replaceable(out, sub)):
                found.append(name)
            elif not last and (place.is_symlink() or not place.is_dir()):
                found.append(name)
                break
    return found


def install_outputs(work: Path, out: Path, ours: list[str], partial_prefix: str) -> None:
    """Move every file of the finished ``work`` folder into the existing folder ``out``.

    The files in ``ours`` (relative paths an earlier run wrote there) are replaced or removed;
    nothing else in ``out`` is touched. ``manifest.json`` is taken out first and put in last, so a
    folder interrupted half-way claims no files. On an error every move is undone in reverse
    order. ``partial_prefix`` names the hidden folder beside ``out`` that holds the earlier files
    until the new ones are in (a run killed outright leaves it for the stale-folder sweep).
    """
    new = files_under(work)
    taken = clashes(out, new, ours)
    if taken:
        raise CamproError(f"{out} holds {names_list(taken)}, which campro-bench did not write, where new outputs go")
    old = [name for name in dict.fromkeys([MANIFEST, *ours]) if _replaceable(out, name)]
    new = sorted(new, key=lambda name: name == MANIFEST)  # the manifest last
    trash = Path(tempfile.mkdtemp(prefix=partial_prefix, dir=out.parent))
    done: list[tuple[Path, Path]] = []
    try:
        for name in old:
            _move(out / name, trash / name, done)
        for name in new:
            _move(work / name, out / name, done)
    except BaseException:
        for source, target in reversed(done):
            os.replace(target, source)  # if this fails too, the earlier files stay in the hidden folder
        shutil.rmtree(trash, ignore_errors=True)
        _remove_empty_parents(out, new)
        raise
    shutil.rmtree(trash, ignore_errors=True)
    _remove_empty_parents(out, old)
    shutil.rmtree(work, ignore_errors=True)


def _move(source: Path, target: Path, done: list[tuple[Path, Path]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    done.append((source, target))


def _remove_empty_parents(out: Path, names: Iterable[str]) -> None:
    """Remove the folders below ``out`` that held only files we removed (deepest first)."""
    parents = {p for name in names for p in PurePosixPath(name).parents if str(p) != "."}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        try:
            (out / parent).rmdir()
        except OSError:
            pass  # not empty: it holds the user's files or new outputs


PARTIAL = ".partial-"
"""Marks the hidden work folder of a run in progress: ``.<name>.partial-<pid>-<random>``."""


def partial_folder(out: Path, remove_stale: bool = True) -> Path:
    """A new hidden work folder ``.<name>.partial-<pid>-<random>`` beside ``out`` (made with the usual
    permissions), after removing (``remove_stale``) those of writers killed outright: outputs are
    written there in full and renamed into place at the end, so ``out`` never holds half a result.

    A process id names a process of one machine only: where writers may run on other machines
    (Ray tasks), the driver removes stale folders once before they start, and they pass ``False``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if remove_stale:
        remove_stale_partials(out.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL}{os.getpid()}-", dir=out.parent))
    work.chmod(0o777 & ~_umask())  # mkdtemp makes an owner-only folder; results are for sharing
    return work


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove the work folders of runs whose process is gone (killed outright); returns them."""
    removed = []
    for folder in parent.glob(f".*{PARTIAL}*"):
        pid = folder.name.rsplit(PARTIAL, 1)[1].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def names_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")

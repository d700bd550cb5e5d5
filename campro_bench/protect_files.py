"""Apply a protector to image files: what ``campro-bench protect`` does.

Images are decoded one by one, grouped into batches of equal size, protected on the chosen
device and written with the same file names (and format) into the output folder. Files that
cannot be decoded are reported by name and counted; every output file is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from .errors import CamproError, MissingFileError
from .io import IMAGE_SUFFIXES, load_image_tensor, save_image_tensor
from .io.outfolder import check_output_location, names_list
from .protectors import Protector


@dataclass
class ProtectReport:
    """What happened to each input file."""

    written: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_inputs(source: Path) -> list[Path]:
    """The files to protect: ``source`` itself, or every file directly inside a folder.

    Non-image files in a folder are returned too, so that they are reported rather than
    silently skipped; hidden files are ignored.
    """
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise MissingFileError(f"input {source} does not exist")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CamproError(f"input folder {source} holds no files")
    return files


def check_outputs(files: Iterable[Path], out_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is written, an output that would replace an input or a file already there.

    ``out_dir`` must be a folder (or not exist yet) that can be written and does not hold the
    current folder; no ``out_dir/<name>`` may be the input file it comes from (the input's own
    folder, the same folder through a link, a hard link), and none may exist already unless
    ``overwrite`` (protect keeps no record of what it wrote, so any file there may be the user's).
    """
    check_output_location(out_dir, "output", replaces=False)
    files = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]  # only these are written
    for path in files:
        if same_file(path, out_dir / path.name):
            raise CamproError(f"output {out_dir / path.name} would overwrite the input {path}; "
                              "give an output folder other than the input's folder")
    present = [path.name for path in files if (out_dir / path.name).exists() or (out_dir / path.name).is_symlink()]
    folders = [name for name in present if (out_dir / name).is_dir()]
    if folders:
        raise CamproError(f"output folder {out_dir} holds folders named like outputs ({names_list(folders)}); "
                          "give another output folder")
    if present and not overwrite:
        raise CamproError(f"output folder {out_dir} already holds {names_list(present)}; pass --overwrite to "
                          "replace what is there, or give another output folder")


def protect_files(
    protector: Protector,
    files: Iterable[Path],
    out_dir: Path,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    jpeg_quality: int = 95,
    on_progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> ProtectReport:
    """Protect ``files`` into ``out_dir`` (same names); never raises for one bad image.

    An output that would replace an input, or (without ``overwrite``) a file already in ``out_dir``,
    raises a :class:`CamproError` before anything is written.
    """
    files = list(files)
    check_outputs(files, out_dir, overwrite)
    report = ProtectReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    protector = protector.to(device).eval()
    pending: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([t for _, t in pending]).to(device)
        with torch.inference_mode():
            out = protector(batch).cpu()
        for (path, _), image in zip(pending, out):
            target = out_dir / path.name
            try:
                save_image_tensor(image, target, jpeg_quality=jpeg_quality)
                report.written.append(target)
            except OSError as exc:
                report.failed[path] = f"cannot write {target}: {exc}"
        if on_progress:
            on_progress(len(pending))
        pending.clear()

    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.failed[path] = f"not an image file (suffixes read: {' '.join(IMAGE_SUFFIXES)})"
            if on_progress:
                on_progress(1)
            continue
        try:
            tensor = load_image_tensor(path)
        except CamproError as exc:
            report.failed[path] = str(exc)
            if on_progress:
                on_progress(1)
            continue
        if pending and (pending[0][1].shape != tensor.shape or len(pending) >= batch_size):
            flush()
        pending.append((path, tensor))
    flush()
    return report


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same existing file or folder (links and ``..`` resolved)."""
    try:
        return os.path.samefile(a, b)
    except (FileNotFoundError, NotADirectoryError):
        return False


same_folder = same_file

"""Apply a protector to image files: what ``campro-bench protect`` does.

Images are decoded one by one, grouped into batches of equal size, protected on the chosen
device and written with the same file names (and format) into the output folder. Files that
cannot be decoded are reported by name and counted; every output file is written atomically.

Memory: before an image is decoded, its peak cost is estimated from its header's size and the
protector's working factor (:func:`image_bytes`). A batch holds only as many images as fit the
memory budget (``--memory-budget``; default: three quarters of the memory available when the command
starts, :func:`default_budget`), and an image that alone exceeds the budget is not decoded: it is
reported with its estimate, as any other file that cannot be protected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from PIL import Image

from .errors import CamproError, MissingFileError
from .io import IMAGE_SUFFIXES, load_image_tensor, save_image_tensor
from .io.outfolder import check_output_location, names_list
from .protectors import Protector

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}
FALLBACK_BUDGET = 4 * 10**9
"""The budget where the available memory cannot be read (no ``/proc/meminfo`` and no ``sysconf``)."""


def parse_size(text: str) -> int:
    """Bytes of a size such as ``6GB``, ``512MiB`` or ``2e9``; one error line otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS or float(match.group(1)) * _UNITS[match.group(2)] < 1:
        raise CamproError(f"memory budget must be a positive size such as 6GB, 512MB or auto, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_budget() -> int:
    """Three quarters of the memory available now (:data:`FALLBACK_BUDGET` when unknown)."""
    available = available_memory()
    return int(0.75 * available) if available else FALLBACK_BUDGET


def resolve_budget(text: str) -> int:
    """``auto`` (:func:`default_budget`) or a size (:func:`parse_size`)."""
    return default_budget() if text.strip().lower() == "auto" else parse_size(text)


PLANES = 9
"""Peak bytes of decoding, batching and encoding one image, in 8-bit RGB planes (``width x height x 3``
bytes), the protector's work aside: ``protect raw`` on a 64-megapixel JPEG peaked 7.8 planes above
the command's resident size before the image (docs/DEVELOPING.md, "Memory")."""


def image_bytes(protector: Protector, width: int, height: int) -> int:
    """Estimated peak bytes of protecting one ``width x height`` image: :data:`PLANES` 8-bit planes
    (the decoded copies, the float32 image, the float copy and 8-bit copies while encoding) plus the
    protector's working memory (its working factor times the 4-plane float32 image)."""
    plane = width * height * 3
    return int(plane * (PLANES + 4 * protector.working_memory_factor()))


def check_sizes(protector: Protector, files: Iterable[Path]) -> dict[Path, tuple[int, int] | None]:
    """Every image's ``(width, height)`` read from its header (None: not an image, or unreadable,
    reported per file later); an image whose size the protector's options do not fit (a defocus
    kernel far larger than the image) is refused before anything is written, naming the file."""
    sizes = {path: _size(path) if path.suffix.lower() in IMAGE_SUFFIXES else None for path in files}
    for path, size in sizes.items():
        if size is None:
            continue
        try:
            protector.check_image_size(size[1], size[0])
        except CamproError as exc:
            raise CamproError(f"{path}: {exc}") from None
    return sizes


def _size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header (no pixels decoded), or None when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # load_image names the reason


def _human(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


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
    memory_budget: int | None = None,
    overwrite: bool = False,
    sizes: dict[Path, tuple[int, int] | None] | None = None,
) -> ProtectReport:
    """Protect ``files`` into ``out_dir`` (same names); never raises for one bad image.

    An output that would replace an input, or (without ``overwrite``) a file already in ``out_dir``,
    raises a :class:`CamproError` before anything is written.
    ``memory_budget`` (bytes; None: :func:`default_budget`) bounds the estimated peak of one batch.
    ``sizes``: :func:`check_sizes`' answer when the caller has it already (headers are read once).
    """
    budget = default_budget() if memory_budget is None else int(memory_budget)
    files = list(files)
    check_outputs(files, out_dir, overwrite)
    sizes = check_sizes(protector, files) if sizes is None else sizes
    report = ProtectReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    protector = protector.to(device).eval()
    pending: list[tuple[Path, torch.Tensor]] = []
    pending_bytes = 0

    def flush() -> None:
        if not pending:
            return
        tensors = [t for _, t in pending]
        batch = (tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)).to(device)  # one image: no copy
        del tensors
        paths = [p for p, _ in pending]
        pending.clear()  # the decoded tensors live on in the batch only
        with torch.inference_mode():
            out = protector(batch).cpu()
        del batch  # kept by ``out`` only when the protector returned its input (raw)
        for path, image in zip(paths, out):
            target = out_dir / path.name
            try:
                save_image_tensor(image, target, jpeg_quality=jpeg_quality)
                report.written.append(target)
            except OSError as exc:
                report.failed[path] = f"cannot write {target}: {exc}"
        if on_progress:
            on_progress(len(paths))

    def skip(path: Path, reason: str) -> None:
        report.failed[path] = reason
        if on_progress:
            on_progress(1)

    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skip(path, f"not an image file (suffixes read: {' '.join(IMAGE_SUFFIXES)})")
            continue
        size = sizes[path]
        need = image_bytes(protector, *size) if size else 0
        if size is not None and need > budget:
            skip(path, f"{size[0]} x {size[1]} pixels need about {_human(need)} to protect with "
                       f"{protector.name}, more than the memory budget of {_human(budget)} "
                       "(raise --memory-budget, or reduce the image); not decoded")
            continue
        if pending and pending_bytes + need > budget:
            flush()
            pending_bytes = 0
        try:
            tensor = load_image_tensor(path)
        except CamproError as exc:
            skip(path, str(exc))
            continue
        if pending and (pending[0][1].shape != tensor.shape or len(pending) >= batch_size):
            flush()
            pending_bytes = 0
        pending.append((path, tensor))
        pending_bytes += need
    flush()
    return report


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same existing file or folder (links and ``..`` resolved)."""
    try:
        return os.path.samefile(a, b)
    except (FileNotFoundError, NotADirectoryError):
        return False


same_folder = same_file

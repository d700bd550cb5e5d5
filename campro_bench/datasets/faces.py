"""Face identity datasets: LFW, CelebA (full or the shipped subset) and generic identity folders.

Every dataset yields :class:`FaceItem` records (image id relative to the dataset folder, path,
identity name) grouped by identity in a deterministic order (identities sorted by name, images by
file name), and has a :meth:`~FaceDataset.fingerprint` that changes when a file is added,
removed, resized or relabelled. Datasets are registered in
:data:`~campro_bench.registries.DATASETS` and built by :func:`load_face_dataset` from a spec string
(``lfw``, ``celeba-subset``, ``identity-folder:folder=my_faces``) and the data root.

Layouts (under the data root):

* ``lfw/images/<Name>/<Name>_NNNN.jpg`` plus the official ``pairs.txt`` (10 folds x 300 matched +
  300 mismatched pairs) used by :func:`lfw_pairs`;
* ``celeba/`` (``celeba-subset/`` for the subset) with ``identity_CelebA.txt`` (``file identity``
  per line) and ``images/``;
* ``identity-folder``: ``<folder>/<identity>/<image>``, ``folder`` relative to the data root or
  absolute. Images in any format of :data:`~campro_bench.io.IMAGE_SUFFIXES` (JPEG, PNG, BMP, TIFF,
  WebP, PGM such as AT&T/ORL, ...). Files that cannot be read are skipped with a warning naming
  them; a folder with fewer than 2 identities of readable images fails naming the identity folders
  that hold none.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .. import paths
from ..errors import CamproError, EmptyDatasetError, InvalidFileError, MissingFileError
from ..io import IMAGE_SUFFIXES, unreadable_reason
from ..specs import parse_spec
from ..registries import DATASETS
from .fingerprint import fingerprint


@dataclass(frozen=True)
class FaceItem:
    """One image of a face dataset."""

    image_id: str  # path relative to the dataset folder, '/'-separated
    path: Path
    identity: str


class FaceDataset:
    """Base class of face identity datasets (subclasses implement :meth:`_scan`)."""

    name: ClassVar[str] = "face-dataset"
    kind: ClassVar[str] = "faces"
    default_folder: ClassVar[str] = ""
    layout: ClassVar[str] = ""

    def __init__(self, root: Path, folder: str | None = None) -> None:
        folder = folder or self.default_folder
        self.folder = Path(folder) if Path(folder).is_absolute() else Path(root) / folder
        self._items: list[FaceItem] | None = None
        self._fingerprint: dict[str, Any] | None = None

    def spec(self) -> str:
        return self.name

    def label_files(self) -> list[Path]:
        return []

    def _scan(self) -> list[FaceItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require_folder(self) -> None:
        if not self.folder.is_dir():
            raise MissingFileError(f"{self.name} dataset not found: expected {self.folder} laid out as {self.layout}")

    def items(self) -> list[FaceItem]:
        """All items, grouped by identity (sorted), images sorted within an identity."""
        if self._items is None:
            self._require_folder()
            items = sorted(self._scan(), key=lambda it: (it.identity, it.image_id))
            if not items:
                raise EmptyDatasetError(f"{self.name} dataset at {self.folder} holds no images (expected {self.layout})")
            self._items = items
        return self._items

    def fingerprint(self) -> dict[str, Any]:
        """The files' fingerprint, computed once per instance (like :meth:`items`, the scan it hashes)."""
        if self._fingerprint is None:
            files = [it.path for it in self.items()]
            self._fingerprint = {"dataset": self.spec(), **fingerprint(self.folder, files, self.label_files())}
        return dict(self._fingerprint)


def _scan_identity_folders(root: Path, prefix: str = "") -> list[FaceItem]:
    items = []
    with os.scandir(root) as people:
        for person in people:
            if not person.is_dir() or person.name.startswith("."):
                continue
            with os.scandir(person.path) as files:
                for f in files:
                    if f.is_file() and os.path.splitext(f.name)[1].lower() in IMAGE_SUFFIXES:
                        items.append(FaceItem(f"{prefix}{person.name}/{f.name}", Path(f.path), person.name))
    return items


@DATASETS.register("lfw", kind="faces", description="Labeled Faces in the Wild (13,233 images, 5,749 people)")
class LFW(FaceDataset):
    default_folder = "lfw"
    layout = "lfw/images/<Name>/<Name>_NNNN.jpg with pairs.txt and people.txt (the official LFW layout)"

    def _require_folder(self) -> None:
        super()._require_folder()
        if not (self.folder / "images").is_dir():
            raise MissingFileError(f"lfw dataset: no images/ folder in {self.folder}; expected {self.layout}")

    def _scan(self) -> list[FaceItem]:
        return _scan_identity_folders(self.folder / "images", "images/")

    def label_files(self) -> list[Path]:
        return [p for p in (self.folder / "pairs.txt", self.folder / "people.txt") if p.is_file()]

    def image_id(self, name: str, number: int) -> str:
        return f"images/{name}/{name}_{number:04d}.jpg"


@dataclass(frozen=True)
class Pair:
    """One verification pair of the LFW protocol."""

    fold: int
    first: str  # image ids
    second: str
    same: bool


def lfw_pairs(dataset: LFW) -> list[Pair]:
    """The official View 2 pairs: ``pairs.txt`` (first line ``folds pairs``, then per fold the matched
    pairs ``name n1 n2`` followed by the mismatched pairs ``name1 n1 name2 n2``)."""
    known = {it.image_id for it in dataset.items()}  # a missing dataset is reported first
    path = dataset.folder / "pairs.txt"
    if not path.is_file():
        raise MissingFileError(f"LFW pairs file not found: expected {path} (the official pairs.txt)")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError) as exc:
        raise InvalidFileError(f"{path}: first line must be '<folds> <pairs per fold>'") from exc
    if len(lines) - 1 != folds * 2 * per_fold:
        raise InvalidFileError(f"{path}: expected {folds * 2 * per_fold} pairs after the header, found {len(lines) - 1}")
    pairs = []
    for index, parts in enumerate(lines[1:]):
        fold = index // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(Pair(fold, dataset.image_id(parts[0], int(parts[1])), dataset.image_id(parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair(fold, dataset.image_id(parts[0], int(parts[1])), dataset.image_id(parts[2], int(parts[3])), False))
        else:
            raise InvalidFileError(f"{path}, line {index + 2}: expected 3 or 4 fields, got {len(parts)}")
    missing = sorted({i for p in pairs for i in (p.first, p.second)} - known)
    if missing:
        raise MissingFileError(f"{len(missing)} images named in {path} are missing, e.g. {dataset.folder / missing[0]}")
    return pairs


@DATASETS.register("celeba", kind="faces", description="CelebA in-the-wild images with identity_CelebA.txt")
class CelebA(FaceDataset):
    default_folder = "celeba"
    layout = "<folder>/identity_CelebA.txt ('file identity' per line) and <folder>/images/<file>"

    def label_files(self) -> list[Path]:
        return [self.folder / "identity_CelebA.txt"]

    def _scan(self) -> list[FaceItem]:
        labels = self.folder / "identity_CelebA.txt"
        if not labels.is_file():
            raise MissingFileError(f"{self.name} dataset: identity file {labels} not found; expected {self.layout}")
        items, missing = [], []
        for number, line in enumerate(labels.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise InvalidFileError(f"{labels}, line {number}: expected 'file identity', got {line!r}")
            path = self.folder / "images" / parts[0]
            if not path.is_file():
                missing.append(path)
            items.append(FaceItem(f"images/{parts[0]}", path, parts[1]))
        if missing:
            raise MissingFileError(
                f"{self.name}: {len(missing)} images listed in {labels.name} are missing, e.g. {missing[0]}"
            )
        return items

    def items(self) -> list[FaceItem]:
        if self._items is None:
            items = super().items()  # sorted by identity string; CelebA identities are numbers
            self._items = sorted(items, key=lambda it: (int(it.identity) if it.identity.isdigit() else -1, it.identity, it.image_id))
        return self._items


@DATASETS.register("celeba-subset", kind="faces", description="CelebA subset (folder celeba-subset/)")
class CelebASubset(CelebA):
    default_folder = "celeba-subset"


@DATASETS.register("identity-folder", kind="faces", description="generic <folder>/<identity>/<image> (option folder=)")
class IdentityFolder(FaceDataset):
    layout = "<folder>/<identity>/<image> (jpg, png, bmp, tif, webp, pgm, ...)"

    def __init__(self, root: Path | None, folder: str | None = None) -> None:
        if not folder:
            raise CamproError("identity-folder needs a folder: identity-folder:folder=PATH (relative to the data root or absolute)")
        super().__init__(root if root is not None else Path("."), folder)
        self._folder_option = folder

    def spec(self) -> str:
        return f"{self.name}:folder={self._folder_option}"

    def _scan(self) -> list[FaceItem]:
        items: list[FaceItem] = []
        skipped: list[str] = []
        without: list[str] = []
        with os.scandir(self.folder) as people:
            folders = sorted((p for p in people if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
        for person in folders:
            files = sorted((f for f in os.scandir(person.path) if f.is_file() and not f.name.startswith(".")),
                           key=lambda f: f.name)
            readable = []
            for f in files:
                reason = (unreadable_reason(f.path) if Path(f.name).suffix.lower() in IMAGE_SUFFIXES
                          else f"suffix {Path(f.name).suffix or '(none)'} is not an image suffix")
                if reason is None:
                    readable.append(FaceItem(f"{person.name}/{f.name}", Path(f.path), person.name))
                elif Path(f.name).suffix.lower() in IMAGE_SUFFIXES:
                    skipped.append(f"{person.name}/{f.name} ({reason})")
            items += readable
            if not readable:
                example = f", e.g. {files[0].name}" if files else ""
                without.append(f"{person.name} ({len(files)} files{example})")
        if skipped:
            warnings.warn(f"{self.spec()}: skipped {len(skipped)} unreadable images: " + "; ".join(skipped[:5])
                          + ("; ..." if len(skipped) > 5 else ""), stacklevel=2)
        if without and len({it.identity for it in items}) < 2:
            raise EmptyDatasetError(
                f"{self.spec()} at {self.folder}: {len({it.identity for it in items})} identity folder(s) hold "
                f"readable images; folders without readable images: {', '.join(without[:10])}"
                + (f" and {len(without) - 10} more" if len(without) > 10 else "")
                + f" (image suffixes read: {' '.join(IMAGE_SUFFIXES)})")
        return items


def load_face_dataset(spec: str | FaceDataset, data_root: str | os.PathLike[str] | None = None) -> FaceDataset:
    """Build a registered face dataset from ``name`` or ``name:key=value`` and the data root."""
    if isinstance(spec, FaceDataset):
        return spec
    name, options = parse_spec(spec, "dataset")
    factory = DATASETS.get(name)
    if not (isinstance(factory, type) and issubclass(factory, FaceDataset)):
        raise CamproError(f"dataset '{name}' is not a face identity dataset")
    unknown = set(options) - {"folder"}
    if unknown:
        raise CamproError(f"dataset '{name}' has no option '{sorted(unknown)[0]}'; its options: folder")
    folder = options.get("folder")
    root = None if (folder and Path(folder).is_absolute()) else paths.data_root(data_root)
    return factory(root, folder)

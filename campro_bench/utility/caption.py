"""Image captioning on (protected) COCO images, scored with CIDEr-D (Table V).

The paper captions with BLIP (LAVIS) and reports CIDEr against the COCO reference captions.
Here a captioner is any object with ``caption(images) -> list[str]`` (images: ``H x W x 3`` uint8
arrays or ``3 x H x W`` float tensors, any sizes), registered in
:data:`~campro_bench.registries.CAPTIONERS`. The built-in ``blip`` adapter runs Hugging Face
``transformers``' ``BlipForConditionalGeneration`` from a **local** folder: no captioning weights
can be downloaded at run time, so users save ``Salesforce/blip-image-captioning-base`` once
with ``save_pretrained`` and point ``--models-dir`` (``<models-dir>/blip``) or ``path=`` at it.

Scoring is pycocoevalcap's ``Cider`` (the COCO caption evaluation's CIDEr, which is CIDEr-D:
Gaussian length penalty, clipped n-gram counts, x10), with document frequencies from the
reference captions of the evaluated images. Captions are tokenised first, with pycocoevalcap's
Stanford PTB tokenizer (the jar in its wheel) when Java runs, otherwise with
:func:`simple_tokenize`; :func:`cider_d` reports which one it used.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from pydantic import Field

from ..errors import CamproError, EmptyDatasetError, InvalidFileError, MissingFileError
from ..io import load_image
from ..registries import CAPTIONERS
from .pose import as_uint8_image, build_plugin, read_coco_json

BLIP_HUB_NAME = "Salesforce/blip-image-captioning-base"
TOKENIZERS = ("auto", "ptb", "simple")


class Captioner(Protocol):
    """What a captioner provides: one caption per image."""

    def caption(self, images: Sequence[np.ndarray | torch.Tensor]) -> list[str]: ...


# ----------------------------------------------------------------------------------------
# tokenisation
# ----------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def simple_tokenize(text: str) -> str:
    """Lower-case, drop punctuation, split on anything that is not a letter or digit."""
    return " ".join(_WORD.findall(text.lower()))


def _ptb_jar() -> Path:
    from pycocoevalcap.tokenizer import ptbtokenizer

    return Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)


@functools.lru_cache(maxsize=1)
def ptb_available() -> bool:
    """Whether Java and pycocoevalcap's Stanford CoreNLP jar can tokenise here."""
    if shutil.which("java") is None or not _ptb_jar().is_file():
        return False
    try:
        return ptb_tokenize(["A test."]) == ["a test"]
    except (OSError, subprocess.SubprocessError, CamproError):
        return False


def ptb_tokenize(sentences: Sequence[str]) -> list[str]:
    """pycocoevalcap's PTB tokenisation (same jar, flags and punctuation list).

    pycocoevalcap's own wrapper writes its temporary file into its installed package folder;
    this one uses a private temporary folder, so it also works from a read-only install.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    if not sentences:
        return []
    with tempfile.TemporaryDirectory(prefix="campro-ptb-") as tmp:
        source = Path(tmp) / "sentences.txt"
        source.write_text("\n".join(s.replace("\n", " ") for s in sentences), encoding="utf-8")
        cmd = ["java", "-cp", str(_ptb_jar()), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", str(source)]
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise CamproError(f"PTB tokenizer failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(sentences):
        raise CamproError(f"PTB tokenizer returned {len(lines)} lines for {len(sentences)} captions")
    drop = set(PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in drop) for line in lines[: len(sentences)]]


def resolve_tokenizer(name: str = "auto") -> str:
    """``"ptb"`` or ``"simple"``: ``auto`` picks PTB when Java runs here."""
    if name not in TOKENIZERS:
        raise CamproError(f"unknown caption tokenizer '{name}'; known: {', '.join(TOKENIZERS)}")
    if name == "auto":
        return "ptb" if ptb_available() else "simple"
    if name == "ptb" and not ptb_available():
        raise CamproError("caption tokenizer 'ptb' needs Java on PATH (java -version); use 'simple'")
    return name


def tokenize_captions(captions: Mapping[Any, Sequence[str]], tokenizer: str) -> dict[Any, list[str]]:
    """Tokenise ``{id: [caption, ...]}`` with ``"ptb"`` or ``"simple"``, keeping the structure."""
    keys = list(captions)
    flat = [c for k in keys for c in captions[k]]
    tokens = ptb_tokenize(flat) if tokenizer == "ptb" else [simple_tokenize(c) for c in flat]
    out: dict[Any, list[str]] = {}
    it = iter(tokens)
    for key in keys:
        out[key] = [next(it) for _ in captions[key]]
    return out


# ----------------------------------------------------------------------------------------
# CIDEr-D
# ----------------------------------------------------------------------------------------
@dataclass
class CiderResult:
    """Corpus CIDEr-D, per-image scores and the tokenizer used."""

    score: float
    per_image: dict[Any, float]
    tokenizer: str


def cider_d(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    tokenizer: str = "auto",
) -> CiderResult:
    """CIDEr-D of one candidate caption per image against that image's reference captions.

    Needs at least two images: CIDEr's document frequencies are taken over the evaluated images
    and its IDF is undefined for one.
    """
    from pycocoevalcap.cider.cider import Cider

    ids = sorted(candidates)
    missing = [i for i in ids if not references.get(i)]
    if missing:
        raise CamproError(f"no reference captions for image id(s) {missing[:5]}")
    if len(ids) < 2:
        raise CamproError("CIDEr needs at least 2 images (its IDF is computed over the evaluated set)")
    used = resolve_tokenizer(tokenizer)
    gts = tokenize_captions({i: list(references[i]) for i in ids}, used)
    res = tokenize_captions({i: [candidates[i]] for i in ids}, used)
    score, scores = Cider().compute_score(gts, res)
    return CiderResult(float(score), {i: float(s) for i, s in zip(ids, scores)}, used)


# ----------------------------------------------------------------------------------------
# COCO reference captions
# ----------------------------------------------------------------------------------------
@dataclass
class CocoCaptions:
    """Reference captions and image files of a COCO split."""

    images_dir: Path
    annotation_file: Path
    files: dict[int, str] = field(default_factory=dict)
    references: dict[int, list[str]] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.references)

    def load(self, image_id: int) -> np.ndarray:
        return load_image(self.images_dir / self.files[image_id])


def load_coco_captions(dataset_dir: Path, split: str = "val2017", limit: int = 0) -> CocoCaptions:
    """Read ``<dataset_dir>/annotations/captions_<split>.json``; ``limit`` > 0 keeps the first ids."""
    data, annotation_file, images_dir = read_coco_json(dataset_dir, "captions", split, ("images", "annotations"))
    try:
        files = {int(img["id"]): str(img["file_name"]) for img in data["images"]}
        references: dict[int, list[str]] = {}
        for ann in sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"])):
            references.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidFileError(f"{annotation_file}: not a COCO captions file ({exc})") from exc
    references = {i: c for i, c in references.items() if i in files}
    if limit > 0:
        references = {i: references[i] for i in sorted(references)[:limit]}
    if not references:
        raise EmptyDatasetError(f"{annotation_file} holds no captioned image")
    return CocoCaptions(images_dir, annotation_file, files, references)


def caption_dataset(
    captioner: Captioner,
    data: CocoCaptions,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    images: Mapping[int, np.ndarray] | None = None,
    batch_size: int = 8,
    advance: Callable[[int], None] | None = None,
) -> dict[int, str]:
    """One caption per image of ``data``; ``transform`` (a protector's output) applied first."""
    out: dict[int, str] = {}
    ids = data.image_ids
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        batch = []
        for image_id in chunk:
            image = images[image_id] if images is not None and image_id in images else data.load(image_id)
            batch.append(transform(image) if transform is not None else image)
        captions = captioner.caption(batch)
        if len(captions) != len(chunk):
            raise CamproError(f"captioner returned {len(captions)} captions for {len(chunk)} images")
        out.update(zip(chunk, (str(c) for c in captions)))
        if advance is not None:
            advance(len(chunk))
    return out


# ----------------------------------------------------------------------------------------
# BLIP
# ----------------------------------------------------------------------------------------
def blip_folder(path: str | os.PathLike[str] | None = None, models_dir: Path | None = None) -> Path:
    """Where the BLIP model is read from: ``path``, else ``<models_dir>/blip``."""
    if path is not None and str(path):
        return Path(path).expanduser()
    if models_dir is None:
        from .. import paths

        models_dir = paths.models_dir()
    return Path(models_dir) / "blip"


def _missing_blip_message(folder: Path) -> str:
    return (
        f"BLIP model folder {folder} does not exist: on a machine with internet run "
        f"`BlipForConditionalGeneration.from_pretrained('{BLIP_HUB_NAME}').save_pretrained(DIR)` and "
        f"`BlipProcessor.from_pretrained('{BLIP_HUB_NAME}').save_pretrained(DIR)`, copy DIR to {folder} "
        "(or point --models-dir, or the captioner's path option, at such a folder)"
    )


@CAPTIONERS.register(
    "blip",
    description="BLIP captioning (transformers BlipForConditionalGeneration) from a local folder",
    weights=f"{BLIP_HUB_NAME}, saved with save_pretrained into <models-dir>/blip",
    image="H x W x 3 uint8 RGB or 3 x H x W float in [0, 1]; BlipProcessor resizes/normalises",
)
class BlipCaptioner:
    """BLIP image captioning; deterministic decoding (beam search, no sampling).

    Args:
        path: the folder holding ``config.json``, the weights and the processor files.
        models_dir: used when ``path`` is not given: ``<models_dir>/blip``.
        device: where the model runs.
        max_new_tokens, num_beams: decoding settings (LAVIS BLIP uses beam 3, max 30 tokens).
        prompt: optional text prefix for conditional captioning (stripped from the output).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        models_dir: Path | None = None,
        device: str | torch.device = "cpu",
        max_new_tokens: Annotated[int, Field(ge=1, le=512)] = 30,
        num_beams: Annotated[int, Field(ge=1, le=32)] = 3,
        prompt: str = "",
    ) -> None:
        folder = blip_folder(path, models_dir)
        if not folder.is_dir():
            raise MissingFileError(_missing_blip_message(folder))
        if not (folder / "config.json").is_file():
            raise InvalidFileError(f"{folder} holds no config.json: not a save_pretrained BLIP folder")
        try:
            from transformers import BlipForConditionalGeneration, BlipProcessor
        except ImportError as exc:
            raise CamproError(f"the blip captioner needs transformers: pip install transformers ({exc})") from exc
        try:
            self.processor = BlipProcessor.from_pretrained(str(folder), local_files_only=True)
            model = BlipForConditionalGeneration.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InvalidFileError(f"cannot load BLIP from {folder}: {str(exc).splitlines()[0]}") from exc
        self.folder = folder
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.prompt = prompt

    def config(self) -> dict[str, Any]:
        return {
            "name": "blip",
            "path": str(self.folder),
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "prompt": self.prompt,
        }

    def caption(self, images: Sequence[np.ndarray | torch.Tensor]) -> list[str]:
        arrays = [as_uint8_image(image) for image in images]
        if not arrays:
            return []
        kwargs: dict[str, Any] = {"images": arrays, "return_tensors": "pt"}
        if self.prompt:
            kwargs["text"] = [self.prompt] * len(arrays)
        inputs = self.processor(**kwargs).to(self.device)
        with torch.inference_mode():
            tokens = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False
            )
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        if self.prompt:
            texts = [t[len(self.prompt):] if t.lower().startswith(self.prompt.lower()) else t for t in texts]
        return [t.strip() for t in texts]


TINY_BLIP_WORDS = (
    "a", "an", "the", "man", "woman", "person", "people", "dog", "cat", "on", "in", "with", "of",
    "sitting", "standing", "riding", "holding", "table", "street", "field", "water", "and", "is",
)


def make_tiny_blip(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a tiny, randomly initialised BLIP (and processor) to ``folder``, offline.

    Its captions are random words: it exists to check the loading, captioning and scoring path
    end to end without the real weights (tests, smoke runs). Built from ``seed``.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
    vocab = specials + TINY_BLIP_WORDS
    with tempfile.TemporaryDirectory(prefix="tiny-blip-vocab-") as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer.from_pretrained(tmp, bos_token="[DEC]", model_max_length=32)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    text = {
        "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
        "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
        "encoder_hidden_size": 32, "bos_token_id": vocab.index("[DEC]"),
        "sep_token_id": vocab.index("[SEP]"), "pad_token_id": vocab.index("[PAD]"),
    }
    vision = {
        "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
    }
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


def build_captioner(name: str, **options: Any) -> Captioner:
    """The registered captioner ``name`` built with ``options``."""
    return build_plugin(CAPTIONERS, name, "caption", **options)

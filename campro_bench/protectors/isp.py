"""The CamPro ISP protector: the paper's virtual imaging pipeline (Sec. V-B, Eq. 1-2, Fig. 6a).

    y = LUT( clip_[0,1]( CCM @ x^gamma ) )

* de-gamma ``x^2.2`` undoes the unknown camera's gamma (fixed, not learned);
* a 3x3 colour-correction matrix (9 parameters), its result clipped to [0, 1] (Eq. 1);
* a piecewise-linear gamma look-up table of ``k = 32`` output values at inputs evenly spaced on
  [0, 1] (Eq. 2; 32 parameters, each within [0, 1]).

41 tunable parameters in all. Every operation is differentiable in the parameters, which is what
the adversarial training of :mod:`campro_bench.training` needs. Parameters are stored in a small
readable JSON file (:class:`ISPParams`), validated on load against the ranges declared below
(:data:`LutValue`, :data:`CcmValue`, :data:`Degamma`): exactly 32 finite LUT values in [0, 1],
nine finite CCM entries in [-1000, 1000] (training keeps them within ``ccm_bound``, at most 1000),
a finite de-gamma exponent in [0.1, 10]. A file outside them is refused with one line naming the
file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
import torch
from pydantic import Field
from torch import nn

from ..errors import InvalidFileError, UnknownNameError
from ..io.atomic import atomic_write_json
from ..io.hashing import sha256_json
from ..io.jsonfile import read_json
from ..registries import PROTECTORS
from ..specs import declared_range, range_text
from .base import Protector

FORMAT_NAME = "campro-isp"
FORMAT_VERSION = 1
DEFAULT_DEGAMMA = 2.2
DEFAULT_LUT_POINTS = 32
CCM_LIMIT = 1000.0
"""Largest CCM entry magnitude a file may hold (the training's ``ccm_bound`` is at most this)."""

# the ranges of the file's numbers, as data (pydantic constraints; checked by ISPParams.validate)
LutValue = Annotated[float, Field(ge=0.0, le=1.0, description="LUT output")]
CcmValue = Annotated[float, Field(ge=-CCM_LIMIT, le=CCM_LIMIT, description="CCM entry")]
Degamma = Annotated[float, Field(ge=0.1, le=10.0, description="de-gamma exponent (standard 2.2)")]


# ----------------------------------------------------------------------------------------
# functional form: plain functions of (images, parameters), as in kornia
# ----------------------------------------------------------------------------------------
def degamma(images: torch.Tensor, exponent: float = DEFAULT_DEGAMMA) -> torch.Tensor:
    """Undo a standard display gamma: ``x^exponent`` on values clamped to [0, 1]."""
    return images.clamp(0.0, 1.0).pow(exponent)


def apply_ccm(images: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Eq. 1: per-pixel ``ccm @ [R, G, B]`` then clip to [0, 1]."""
    out = torch.einsum("ij,njhw->nihw", ccm.to(images.dtype), images)
    return out.clamp(0.0, 1.0)


def piecewise_linear(values: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Eq. 2: interpolate ``lut`` (outputs at inputs evenly spaced on [0, 1]) at ``values``.

    Equals ``numpy.interp(values, linspace(0, 1, k), lut)`` for values in [0, 1]; values outside
    are clamped first. Differentiable in both ``values`` and ``lut``.
    """
    k = lut.shape[-1]
    if k < 2:
        raise ValueError("a LUT needs at least 2 points")
    lut = lut.to(values.dtype)
    pos = values.clamp(0.0, 1.0) * (k - 1)
    index = pos.detach().floor().clamp_(0, k - 2).long()
    frac = pos - index.to(values.dtype)
    lower = lut[index]
    upper = lut[index + 1]
    return lower + (upper - lower) * frac


def campro_isp(
    images: torch.Tensor,
    ccm: torch.Tensor,
    lut: torch.Tensor,
    degamma_exponent: float = DEFAULT_DEGAMMA,
) -> torch.Tensor:
    """The whole virtual imaging pipeline of Fig. 6(a): de-gamma, CCM + clip, gamma LUT."""
    return piecewise_linear(apply_ccm(degamma(images, degamma_exponent), ccm), lut)


# ----------------------------------------------------------------------------------------
# parameter file
# ----------------------------------------------------------------------------------------
@dataclass
class ISPParams:
    """The 41 (in general 9 + k) ISP parameters plus the fixed de-gamma exponent.

    JSON layout (``format_version`` 1)::

        {"format": "campro-isp", "format_version": 1, "degamma": 2.2,
         "ccm": [[a11, a12, a13], [a21, a22, a23], [a31, a32, a33]],
         "lut": [y_1, ..., y_k],            # outputs at inputs linspace(0, 1, k)
         "metadata": {...}}                 # free-form: how the parameters were made
    """

    ccm: list[list[float]]
    lut: list[float]
    degamma: float = DEFAULT_DEGAMMA
    metadata: dict[str, Any] = field(default_factory=dict)

    # constructors ---------------------------------------------------------------------
    @classmethod
    def identity(cls, points: int = DEFAULT_LUT_POINTS) -> "ISPParams":
        """Identity CCM and a linear LUT: the output is the de-gammed input ``x^2.2``."""
        lut = [i / (points - 1) for i in range(points)]
        return cls([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], lut)

    @classmethod
    def standard(cls, points: int = DEFAULT_LUT_POINTS) -> "ISPParams":
        """Identity CCM and a ``x^(1/2.2)`` LUT: approximately reproduces the input image."""
        lut = [(i / (points - 1)) ** (1.0 / DEFAULT_DEGAMMA) for i in range(points)]
        return cls([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], lut)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "ISPParams":
        if not isinstance(data, dict):
            raise InvalidFileError(f"{source}: ISP parameters must be a JSON object")
        if data.get("format", FORMAT_NAME) != FORMAT_NAME:
            raise InvalidFileError(f"{source}: format is {data.get('format')!r}, expected {FORMAT_NAME!r}")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InvalidFileError(
                f"{source}: format_version {version} is not supported (this version reads {FORMAT_VERSION})"
            )
        missing = [k for k in ("ccm", "lut") if k not in data]
        if missing:
            raise InvalidFileError(f"{source}: missing key(s) {', '.join(missing)}")
        unknown = sorted(set(data) - {"format", "format_version", "degamma", "ccm", "lut", "metadata"})
        if unknown:
            raise InvalidFileError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: format, "
                                   "format_version, degamma, ccm, lut, metadata")
        if not isinstance(data.get("metadata", {}), dict):
            raise InvalidFileError(f"{source}: 'metadata' must be a JSON object")
        params = cls(
            ccm=data["ccm"],
            lut=data["lut"],
            degamma=data.get("degamma", DEFAULT_DEGAMMA),
            metadata=dict(data.get("metadata", {})),
        )
        params.validate(source)
        params.ccm = [[float(v) for v in row] for row in params.ccm]
        params.lut = [float(v) for v in params.lut]
        params.degamma = float(params.degamma)
        return params

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ISPParams":
        return cls.from_dict(read_json(path, "ISP parameter file"), source=str(Path(path)))

    @classmethod
    def from_tensors(
        cls, ccm: torch.Tensor, lut: torch.Tensor, degamma: float = DEFAULT_DEGAMMA, **metadata: Any
    ) -> "ISPParams":
        return cls(
            ccm=[[float(v) for v in row] for row in ccm.detach().cpu().double().tolist()],
            lut=[float(v) for v in lut.detach().cpu().double().tolist()],
            degamma=float(degamma),
            metadata=metadata,
        )

    # checks and output ------------------------------------------------------------------
    def validate(self, source: str = "ISP parameters") -> None:
        """Shapes, finiteness and the declared ranges; one :class:`InvalidFileError` line naming the field."""
        values = {"ccm": _plain(self.ccm), "lut": _plain(self.lut), "degamma": _plain(self.degamma)}
        try:
            _ISP_VALUES.validate_python(values)
        except pydantic.ValidationError as exc:
            raise InvalidFileError(_isp_error(exc.errors()[0], source)) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "degamma": self.degamma,
            "ccm": [list(row) for row in self.ccm],
            "lut": list(self.lut),
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON file atomically (full float precision, so a round trip is exact)."""
        self.validate(str(path))
        atomic_write_json(path, self.to_dict())

    def ccm_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor(self.ccm, dtype=dtype)

    def lut_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor(self.lut, dtype=dtype)

    def digest(self) -> str:
        """Hash of the parameter values (not the metadata)."""
        return sha256_json([self.ccm, self.lut, self.degamma])[:16]


class _ISPValues(pydantic.BaseModel):
    """The numbers of an ISP file with their shapes and ranges (strict: numbers only, all finite)."""

    model_config = pydantic.ConfigDict(strict=True, allow_inf_nan=False)
    ccm: Annotated[list[Annotated[list[CcmValue], Field(min_length=3, max_length=3)]], Field(min_length=3, max_length=3)]
    lut: Annotated[list[LutValue], Field(min_length=DEFAULT_LUT_POINTS, max_length=DEFAULT_LUT_POINTS)]
    degamma: Degamma


_ISP_VALUES = pydantic.TypeAdapter(_ISPValues)
_ELEMENTS = {"ccm": CcmValue, "lut": LutValue, "degamma": Degamma}


def _plain(value: Any) -> Any:
    """Tuples as lists and numpy scalars as Python numbers, so that strict checking sees JSON's types."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (int, float, bool)):
        return value.item()
    return value


def _isp_error(error: Any, source: str) -> str:
    """One line for pydantic's first complaint: the file, the field (``ccm[1][2]``) and the rule."""
    loc = error["loc"]
    field = str(loc[0])
    where = field + "".join(f"[{i}]" for i in loc[1:])
    given = error.get("input")
    kind = error["type"]
    if kind in ("too_short", "too_long") or (kind == "list_type" and field in ("ccm", "lut")):
        size = f", got {len(given)} entries" if isinstance(given, list) else f", got {given!r}"
        if field == "ccm":
            return f"{source}: '{where}' must be a 3x3 list of numbers{size}"
        return f"{source}: 'lut' must be a list of exactly {DEFAULT_LUT_POINTS} numbers (the format's LUT size){size}"
    if kind == "finite_number":
        return f"{source}: '{where}' must be finite, got {given!r}"
    if kind.startswith(("greater_than", "less_than")):
        allowed = range_text(declared_range(_ELEMENTS[field]))
        return f"{source}: '{where}' must lie within {allowed}, got {given!r}"
    return f"{source}: '{where}' must hold numbers only, got {given!r}"


# ----------------------------------------------------------------------------------------
# presets shipped with the package
# ----------------------------------------------------------------------------------------
def _preset_root() -> Path:
    return Path(str(resources.files("campro_bench") / "presets" / "isp"))


def list_presets() -> list[str]:
    """Names of the ISP parameter presets shipped in the package."""
    root = _preset_root()
    builtin = ["identity", "standard"]
    # <name>.manifest.json beside a preset records how it was trained; it is not a preset
    files = sorted(p.stem for p in root.glob("*.json") if not p.name.endswith(".manifest.json")) if root.is_dir() else []
    return builtin + files


def preset_path(name: str) -> Path:
    path = _preset_root() / f"{name}.json"
    if not path.is_file():
        raise UnknownNameError(f"unknown ISP preset '{name}'; known presets: {', '.join(list_presets())}")
    return path


def load_preset(name: str) -> ISPParams:
    if name == "identity":
        return ISPParams.identity()
    if name == "standard":
        return ISPParams.standard()
    return ISPParams.load(preset_path(name))


# ----------------------------------------------------------------------------------------
# the protector module
# ----------------------------------------------------------------------------------------
@PROTECTORS.register(
    "campro-isp",
    description="CamPro ISP: de-gamma, 3x3 CCM + clip, 32-point gamma LUT (41 parameters)",
)
class CamproISP(Protector):
    """The CamPro camera: de-gamma, CCM and gamma LUT with learnable parameters.

    Build it from a parameter file (``campro-isp:params=path.json``), a shipped preset
    (``campro-isp:preset=NAME``; see :func:`list_presets`) or, in code, from :class:`ISPParams`.
    With no argument it is the ``identity`` preset (output = de-gammed input).
    """

    differentiable = True
    working_factor = 9.0

    def __init__(
        self,
        params: Path | None = None,
        preset: str | None = None,
        isp: ISPParams | None = None,
    ) -> None:
        super().__init__()
        if sum(x is not None for x in (params, preset, isp)) > 1:
            raise ValueError("give only one of params=, preset= or an ISPParams object")
        if isp is None:
            if params is not None:
                isp = ISPParams.load(params)
            else:
                isp = load_preset(preset or "identity")
        self._source: dict[str, Any] = (
            {"params": str(params)} if params is not None else {"preset": preset} if preset else {}
        )
        self.degamma_exponent = float(isp.degamma)
        self.metadata = dict(isp.metadata)
        self.ccm = nn.Parameter(isp.ccm_tensor())
        self.lut = nn.Parameter(isp.lut_tensor())

    @property
    def lut_points(self) -> int:
        return int(self.lut.shape[0])

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return campro_isp(images, self.ccm, self.lut, self.degamma_exponent)

    def params(self) -> dict[str, Any]:
        if self._source:
            return dict(self._source)
        return {"preset": "identity"} if self.to_params().digest() == ISPParams.identity().digest() else {}

    def fingerprint_payload(self) -> dict[str, Any]:
        isp = self.to_params()
        return {"name": self.name, "ccm": isp.ccm, "lut": isp.lut, "degamma": isp.degamma}

    def to_params(self, **metadata: Any) -> ISPParams:
        """Current parameter values as an :class:`ISPParams` (e.g. to save after training)."""
        return ISPParams.from_tensors(
            self.ccm, self.lut, self.degamma_exponent, **{**self.metadata, **metadata}
        )

    @torch.no_grad()
    def project_(self, ccm_bound: float = 8.0) -> None:
        """Put the parameters back into their valid ranges (LUT in [0,1], |CCM| <= bound)."""
        self.lut.clamp_(0.0, 1.0)
        self.ccm.clamp_(-ccm_bound, ccm_bound)

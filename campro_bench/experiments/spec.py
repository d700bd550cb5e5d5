"""Experiment specs: declarative TOML files under ``protocols/`` that the runner reads.

A spec reads like the paper's Sec. VI-A: datasets, models, protectors, classifiers, repeats and
seeds. ``campro-bench run e1 --set repeats=3 --set models='["sface"]'`` overrides any key; values
are parsed as TOML (strings may be given bare).
"""

from __future__ import annotations

import copy
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import CamproError, InvalidFileError, MissingFileError


def protocols_dir() -> Path:
    """The folder of shipped specs (``protocols/`` at the repository root links to it)."""
    return Path(str(resources.files("campro_bench") / "protocols"))


def list_protocols() -> list[str]:
    return sorted(p.stem for p in protocols_dir().glob("*.toml"))


def load_spec(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a spec by shipped name (``e1``) or by path (``my_protocols/e1_small.toml``)."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    else:
        path = protocols_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(list_protocols()) or "(none)"
            raise MissingFileError(f"no protocol named '{name_or_path}'; shipped protocols: {known}")
    if not path.is_file():
        raise MissingFileError(f"protocol file {path} does not exist")
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidFileError(f"{path}: invalid TOML ({exc})") from exc
    spec.setdefault("_source", str(path))
    return spec


def parse_value(text: str) -> Any:
    """Parse one override value as TOML; fall back to the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``spec`` with ``dotted.key=value`` overrides applied."""
    result = copy.deepcopy(spec)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CamproError(f"bad override '{item}': expected key=value, e.g. repeats=3")
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CamproError(f"bad override '{item}': '{part}' is not a table")
            node = child
        node[parts[-1]] = parse_value(value.strip())
    return result

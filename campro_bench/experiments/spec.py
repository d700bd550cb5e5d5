"""Experiment specs: declarative TOML files under ``protocols/`` that the runner reads.

A spec reads like the paper's Sec. VI-A: datasets, models, protectors, classifiers, repeats and
seeds. ``campro-bench run e1 --set repeats=3 --set models='["sface"]'`` overrides any key; values
are parsed as TOML (strings may be given bare).

Keys are checked before a run (:func:`check_keys`): the keys an experiment knows are those of its
shipped protocol (tables included, key by key) plus the ones it declares in its registry entry
(``extra_keys``); tables of free names (``free_tables``, e.g. ``paper_image_types``) are not
checked. An unknown key, from a file or from ``--set``, fails naming the key, a "did you mean"
and the known keys. Values are then checked by each experiment's typed configuration
(:mod:`campro_bench.config`).
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..config import apply_overrides as _apply_overrides
from ..config import parse_value as _parse_value
from ..config import parse_config, unknown_keys_error
from ..errors import InvalidFileError, MissingFileError

GENERAL_KEYS = ("description", "_source")
"""Keys every protocol may have."""


C = TypeVar("C")


def parse_protocol(cls: type[C], spec: dict[str, Any], experiment: str) -> C:
    """An experiment's typed configuration (:func:`~campro_bench.config.parse_config`) from its whole
    spec, less the keys every protocol may have (``description``)."""
    return parse_config(cls, {k: v for k, v in spec.items() if k not in GENERAL_KEYS}, f"{experiment} protocol")


def protocols_dir() -> Path:
    """The folder of shipped specs (``protocols/`` at the repository root links to it)."""
    return Path(str(resources.files("campro_bench") / "protocols"))


def list_protocols() -> list[str]:
    return sorted(p.stem for p in protocols_dir().glob("*.toml"))


def load_spec(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a spec by shipped name (``e1``) or by path (``my_protocols/e1_small.toml``).

    A folder of that name (an earlier ``--out e1``) does not hide the shipped protocol: only a
    ``.toml`` path or an existing file is read as a path.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
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
    return _parse_value(text)


def apply_overrides(spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``spec`` with ``dotted.key=value`` overrides applied."""
    return _apply_overrides(spec, overrides)


def check_keys(spec: dict[str, Any], schema: dict[str, Any], extra_keys: tuple[str, ...] = (),
               free_tables: tuple[str, ...] = (), what: str = "protocol") -> None:
    """Refuse keys of ``spec`` that ``schema`` (the shipped protocol) and ``extra_keys`` do not have.

    Tables are checked key by key (``linear.step`` is refused like ``repeat``); dotted names in
    ``extra_keys`` and ``free_tables`` address keys inside tables.
    """
    _check_table(spec, schema, set(extra_keys) | set(GENERAL_KEYS), set(free_tables), "", what)


def _check_table(spec: dict[str, Any], schema: dict[str, Any], extra: set[str], free: set[str], prefix: str,
                 what: str) -> None:
    known = set(schema) | {k[len(prefix):] for k in extra if k.startswith(prefix) and "." not in k[len(prefix):]}
    unknown = [k for k in spec if k not in known]
    if unknown:
        raise unknown_keys_error([prefix + k for k in unknown], [prefix + k for k in known], what)
    for key, value in spec.items():
        path = prefix + key
        if path in free or not isinstance(value, dict):
            continue
        sub_schema = schema.get(key)
        if isinstance(sub_schema, dict):
            _check_table(value, sub_schema, extra, free, path + ".", what)

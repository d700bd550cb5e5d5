"""The ``conditions`` axis of a protocol: every image type under every listed capture condition.

A protocol lists ``conditions = ["colour", "grey", "jpeg:quality=50", ...]`` (default ``["colour"]``).
:func:`expand` turns the image types x conditions into the protector specs an experiment runs
(``SPEC@CONDITION``; under ``colour`` the bare ``SPEC``, so the default run is today's run, cache
keys included), condition by condition. The galleries keep their meaning: a *raw* gallery is
enrolled from the unconditioned (colour, daylight) photographs an attacker already holds, a
*protected* (re-enrolled) gallery through the same camera under the same condition.
:func:`label` then splits the specs of a finished table back into ``image_type`` and a
``condition`` column; with the default conditions nothing is relabelled, so today's tables stay
byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from ..config import option, parse_config
from ..protectors.base import CONDITION_SEPARATOR
from .base import Condition, check_conditions

DEFAULT_CONDITIONS = ["colour"]
CONDITION_COLUMN = "condition"


@dataclass(frozen=True)
class ConditionsConfig:
    """The protocol key ``conditions``: capture-condition specs (``campro-bench list conditions``)."""

    conditions: list[str] = option(lambda: list(DEFAULT_CONDITIONS),
                                   help="capture conditions every image type is evaluated under")


@dataclass(frozen=True)
class Expansion:
    """The specs to run (condition-major) and, for each, its (image type, condition)."""

    conditions: list[Condition]
    specs: list[str]
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        """Whether tables get a ``condition`` column (any condition but the default alone)."""
        return [c.spec() for c in self.conditions] != DEFAULT_CONDITIONS

    def manifest(self) -> dict[str, Any]:
        """What a manifest records: each condition's config (seeds included), side and origin."""
        from ..registries import CONDITIONS

        return {c.spec(): {"config": c.config(), "side": c.side, "origin": CONDITIONS.origin(c.name)}
                for c in self.conditions}


def conditions_of(spec: dict[str, Any], where: str = "protocol") -> list[Condition]:
    """The built conditions of a protocol's ``conditions`` key (default ``["colour"]``); bad ones fail
    in one line before any work."""
    given = {"conditions": spec["conditions"]} if "conditions" in spec else {}
    if isinstance(given.get("conditions"), str):
        given["conditions"] = [given["conditions"]]
    return check_conditions(parse_config(ConditionsConfig, given, where).conditions)


def expand(image_types: list[str], conditions: list[Condition]) -> Expansion:
    """Every image type under every condition, condition by condition (``SPEC@CONDITION``; ``SPEC``
    under an identity condition)."""
    specs: list[str] = []
    origin: dict[str, tuple[str, str]] = {}
    for condition in conditions:
        for image_type in image_types:
            spec = image_type if condition.identity else f"{image_type}{CONDITION_SEPARATOR}{condition.spec()}"
            specs.append(spec)
            origin[spec] = (image_type, condition.spec())
    return Expansion(list(conditions), specs, origin)


def label(table: pd.DataFrame, expansion: Expansion, column: str = "image_type",
          display: Callable[[str], str] = str) -> pd.DataFrame:
    """``table`` with ``column`` split into the image type and a ``condition`` column after it (only
    when the expansion is labelled; otherwise ``table`` itself). ``display`` maps a spec to how the
    table shows it (Table I writes ``raw`` as ``Raw``)."""
    if not expansion.labelled or column not in table.columns:
        return table
    shown = {display(spec): (display(image_type), condition)
             for spec, (image_type, condition) in expansion.origin.items()}
    out = table.copy()
    pairs = [shown.get(value, (value, "")) for value in out[column]]
    out[column] = [p[0] for p in pairs]
    out.insert(out.columns.get_loc(column) + 1, CONDITION_COLUMN, [p[1] for p in pairs])
    return out

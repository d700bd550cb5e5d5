"""Capture conditions inside the training loops (``train isp``, ``train enhancer``).

A camera that ships meets scenes the training set never showed it: a monochrome (night, near-infrared)
sensor, dim light, faces far away. Both trainers take the typed option ``conditions``, a table of
capture-condition specs (``campro-bench list conditions``) and their probabilities per batch::

    conditions = {grey = 0.5}                                  # half of the batches grey
    conditions = {grey = 0.3, "low-light:exposure=0.1" = 0.2}  # 30 % grey, 20 % dim, 50 % colour

Every batch that goes through the camera draws one condition: a condition with its probability, or
none (the unconditioned colour scene) with the remaining probability. The condition acts where the
registry says a camera meets it, on the scene before the ISP (only :data:`~campro_bench.conditions.BEFORE`
conditions are allowed: a stream transform after the camera such as ``jpeg`` is not differentiable and
not what the ISP can learn to handle). The conditioned image is also what the restorer and the
enhancer learn to recover (the scene as the sensor recorded it: a grey camera's faithful output is grey).

Draws are stateless and seeded: the draw of batch ``step`` of role ``role`` in iteration (or epoch)
``t`` is ``numpy.random.default_rng([seed, STREAM, role, t, step]).random()`` against the cumulative
probabilities. Nothing is drawn from a shared generator, so the option with every probability 0
trains exactly (bit for bit) as a run without it, and a resumed run draws what the uninterrupted one
drew. The trainers record every draw in their logs and the counts in their manifests.

An empty table is the default and is left out of the configuration's dictionary (:func:`without_empty`),
so runs, checkpoints, cache keys and manifests made before the option existed are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..conditions import BEFORE, Condition, build_condition
from ..errors import CamproError

STREAM = 0xC0D
"""Seed stream of the condition draws (apart from every sampler's)."""
ROLES = {"attack": 0, "restore": 1, "protect": 2, "person": 3, "restore-warmup": 4, "enhancer": 5}
"""The batches that draw a condition, each with its own key in the draw's seed."""
COLOUR = "colour"
"""How the logs name a batch that drew no condition."""


@dataclass(frozen=True)
class TrainingConditions:
    """The built conditions of a ``conditions`` table, their probabilities and the seed of the draws."""

    conditions: tuple[Condition, ...]
    probabilities: tuple[float, ...]
    seed: int

    @classmethod
    def parse(cls, table: Mapping[str, float] | None, seed: int, where: str = "conditions") -> "TrainingConditions":
        """Build and check a ``conditions`` table; one error line for a bad spec, a condition that acts
        after the camera, a repeated condition, the identity (``colour`` is the remainder) or
        probabilities outside [0, 1] or summing above 1."""
        table = dict(table or {})
        built, probabilities = [], []
        for spec, p in table.items():
            condition = build_condition(spec)
            if condition.identity:
                raise CamproError(f"{where}: '{spec}' is the unconditioned camera; its probability is the remainder "
                                  "(1 minus the listed ones), do not list it")
            if condition.side != BEFORE:
                raise CamproError(f"{where}: '{spec}' acts after the camera ({condition.side}); training takes "
                                  "conditions the sensor meets (grey, low-light, distance)")
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) <= 1.0:
                raise CamproError(f"{where}: probability of '{spec}' must be a number in [0, 1], got {p!r}")
            built.append(condition)
            probabilities.append(float(p))
        specs = [c.spec() for c in built]
        if len(set(specs)) != len(specs):
            raise CamproError(f"{where}: a condition is listed twice: {specs}")
        if sum(probabilities) > 1.0 + 1e-9:
            raise CamproError(f"{where}: probabilities sum to {sum(probabilities):g} > 1")
        return cls(tuple(built), tuple(probabilities), int(seed))

    @property
    def active(self) -> bool:
        """Whether any batch can draw a condition."""
        return any(p > 0 for p in self.probabilities)

    def draw(self, role: str, t: int, step: int) -> Condition | None:
        """The condition of batch ``step`` of ``role`` in iteration / epoch ``t`` (None: unconditioned)."""
        if not self.active:
            return None
        u = np.random.default_rng([self.seed, STREAM, ROLES[role], int(t), int(step)]).random()
        edge = 0.0
        for condition, p in zip(self.conditions, self.probabilities):
            edge += p
            if u < edge:
                return condition
        return None

    @staticmethod
    def name(condition: Condition | None) -> str:
        """The spec of a drawn condition, :data:`COLOUR` for none."""
        return COLOUR if condition is None else condition.spec()

    def apply(self, condition: Condition | None, images: torch.Tensor) -> torch.Tensor:
        """``images`` as the sensor records them under ``condition`` (no gradient: the scene is data)."""
        if condition is None:
            return images
        with torch.no_grad():
            return condition(images)

    def manifest(self, counts: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, Any]:
        """What a manifest records: each condition's config and probability, the draw rule and the counts."""
        return {
            "conditions": [{"spec": c.spec(), "config": c.config(), "side": c.side, "probability": p}
                           for c, p in zip(self.conditions, self.probabilities)],
            "colour_probability": max(0.0, 1.0 - sum(self.probabilities)),
            "draws": f"per batch: numpy.random.default_rng([seed={self.seed}, {STREAM}, role, t, step]).random() "
                     f"against the cumulative probabilities; roles {ROLES}",
            "counts": {role: dict(c) for role, c in (counts or {}).items()},
        }


def count_draws(names: Sequence[str], into: dict[str, int] | None = None) -> dict[str, int]:
    """How many batches drew each condition (``into`` updated and returned)."""
    into = {} if into is None else into
    for name in names:
        into[name] = into.get(name, 0) + 1
    return into


def without_empty(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without an empty ``conditions`` table (runs without the option keep their dictionaries)."""
    return {k: v for k, v in config.items() if not (k == "conditions" and not v)}

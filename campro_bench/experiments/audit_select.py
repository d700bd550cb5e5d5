"""The audit's verdict without selection bias: choose the attack on SELECT, score it once on EVAL.

Today's audit reports the maximum over every attack row (rung, attack, model, classifier, gallery)
of the EVAL accuracy: that maximum is chosen by looking at EVAL, so it is biased upwards (with many
rows of similar accuracy, by roughly the spread of their noise). Here the attacker's identities are
split further: TRAIN (what restoration and re-training learn from) and SELECT (other identities on
which every row is scored to *choose* the attack). The chosen row's EVAL accuracy, with its
interval over draws, is the unbiased verdict: no EVAL number took part in choosing it. The max over
EVAL rows stays beside it, labelled as an upper bound.

TRAIN, SELECT and EVAL share no identity; :func:`check_disjoint_sets` asserts it before anything
is trained. SELECT = the first ``select_identities`` identities by name (with >= ``min_images``
images) that are neither EVAL nor TRAIN, capped at ``max_images_per_identity`` images like them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..errors import CamproError
from ..io.hashing import ids_digest
from ..privacy.evaluate import DatasetLayout, subset_image_ids
from ..privacy.splits import IdentificationSplits, sample_splits, select_identities

if TYPE_CHECKING:
    from ..conditions.axis import Expansion

ROW_KEY = ["rung", "attack", "model", "classifier", "gallery"]
"""What identifies an attack row: the same key on SELECT and on EVAL is the same attack."""
REFERENCE = "reference"


class IdentityLeakError(CamproError):
    """An attacker would see an evaluated identity (or a selection identity would be trained on)."""


def check_disjoint_sets(index: Sequence[tuple[str, str]], sets: dict[str, Sequence[str]]) -> None:
    """Raise :class:`IdentityLeakError` if two of the named image-id sets share an identity."""
    name_of = dict(index)
    names = {label: {name_of[i] for i in ids} for label, ids in sets.items()}
    for (a, first), (b, second) in itertools.combinations(names.items(), 2):
        shared = sorted(first & second)
        if shared:
            raise IdentityLeakError(f"{a} and {b} share {len(shared)} identit(ies), e.g. {shared[:3]}: the audit's "
                                    f"{', '.join(names)} identities must be disjoint")


@dataclass(frozen=True)
class SelectSplit:
    """The SELECT identities: their image ids, names and E1-style gallery/probe draws."""

    ids: list[str]
    names: list[str]
    splits: IdentificationSplits

    def manifest(self) -> dict[str, object]:
        return {"select_images": len(self.ids), "select_identities": len(self.names),
                "select_ids_sha": ids_digest(self.ids), "select_splits_identities": self.splits.n_identities}


def select_split(index: Sequence[tuple[str, str]], taken: Sequence[str], count: int, min_images: int,
                 max_images_per_identity: int, repeats: int, seed: int) -> SelectSplit:
    """SELECT: the first ``count`` identities by name outside ``taken`` (EVAL and TRAIN names),
    capped like them, with ``repeats`` seeded draws (seeds ``seed..``, E1's rule)."""
    excluded = set(taken)
    ids = subset_image_ids([(i, n) for i, n in index if n not in excluded], min_images, count,
                           max_images_per_identity, seed)
    names = {n for i, n in index if i in set(ids)}
    if len(names) < count:
        raise CamproError(f"the unbiased verdict needs {count} SELECT identities with >= {min_images} images that are "
                          f"neither EVAL nor TRAIN; only {len(names)} are left: lower select_identities, eval_identities "
                          "or train_identities (select_identities=0 gives only the max-over-rows upper bound)")
    layout = DatasetLayout.build(index, min_images, ids)
    kept = select_identities(layout.labels, layout.identity_names, min_images=min_images)
    splits = sample_splits(layout.labels, repeats=repeats, seed=seed, identities=kept)
    return SelectSplit(layout.image_ids, layout.identity_names, splits)


def unbiased_verdict(eval_rows: pd.DataFrame, select_rows: pd.DataFrame) -> pd.DataFrame:
    """Per protector: the attack row with the highest mean accuracy on SELECT (ties: the first, in
    ladder order), scored by its EVAL row. Columns ``verdict_top1`` / ``verdict_ci_low`` /
    ``verdict_ci_high`` / ``verdict_x_chance`` (EVAL), ``chosen_*`` (the attack), ``select_top1``
    (its SELECT accuracy) and ``select_rows`` (how many attacks were compared)."""
    out = []
    for protector, rows in eval_rows.groupby("protector", sort=False):
        candidates = select_rows[(select_rows["protector"] == protector) & (select_rows["rung"] != REFERENCE)]
        record: dict[str, object] = {"protector": protector}
        if len(candidates):
            chosen = candidates.loc[candidates["accuracy_mean"].idxmax()]
            match = rows[np.logical_and.reduce([rows[k] == chosen[k] for k in ROW_KEY])]
            if len(match) != 1:
                raise CamproError(f"audit of {protector}: the attack chosen on SELECT "
                                  f"({', '.join(str(chosen[k]) for k in ROW_KEY)}) has {len(match)} EVAL rows")
            scored = match.iloc[0]
            record.update({"verdict_top1": scored["accuracy_mean"], "verdict_ci_low": scored["ci_low"],
                           "verdict_ci_high": scored["ci_high"], "verdict_x_chance": scored["x_chance"],
                           **{f"chosen_{k}": chosen[k] for k in ROW_KEY},
                           "select_top1": chosen["accuracy_mean"], "select_rows": len(candidates)})
        out.append(record)
    return pd.DataFrame(out)


WORST = "worst over conditions"


def worst_rows(table: pd.DataFrame, keys: list[str], upper: str, carry: Sequence[str], attack: str, select: str,
               prefixes: tuple[str, ...]) -> list[dict[str, object]]:
    """One ``worst over conditions`` record per group of ``keys`` audited under several conditions
    (``table`` has a ``condition`` column): the ``carry`` columns of the row with the highest
    ``upper`` (its ``attack`` named with its condition) and, when the ``select`` column has values,
    the columns starting with ``prefixes`` of the row best on SELECT, with ``chosen_condition``."""
    extra: list[dict[str, object]] = []
    for group, rows in table.groupby(keys, sort=False):
        if len(rows) < 2 or upper not in rows or rows[upper].isna().all():
            continue
        worst = rows.loc[rows[upper].idxmax()]
        record: dict[str, object] = {**dict(zip(keys, group)), "condition": WORST, **{k: worst[k] for k in carry},
                                     attack: f"{worst[attack]} ({worst['condition']})"}
        if select in rows and rows[select].notna().any():
            chosen = rows.loc[rows[select].idxmax()]
            record.update({k: chosen[k] for k in rows.columns if k.startswith(prefixes)})
            record["chosen_condition"] = chosen["condition"]
        extra.append(record)
    return extra


def over_conditions(summary: pd.DataFrame, expansion: "Expansion") -> pd.DataFrame:
    """The summary with ``protector`` split into protector and ``condition`` and, per protector
    audited under several conditions, a ``worst over conditions`` row: the upper bound is the
    highest ``worst_case_top1``; the unbiased verdict is that of the condition whose chosen attack
    was best on SELECT (the condition is an attack choice like any other, made on SELECT).
    With the default conditions the summary is returned as it is."""
    from ..conditions.axis import label

    if not expansion.labelled:
        return summary
    table = label(summary, expansion, column="protector")
    extra = worst_rows(table, ["protector"], "worst_case_top1", ["worst_case_top1", "ci_low", "ci_high", "rung"],
                       "attack", "select_top1", ("verdict_", "chosen_", "select_"))
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table

"""Video privacy attacks: actor classifiers re-trained from scratch on encoded clips.

The attacker knows the encoder (white box: it encodes its own labelled clips with it) and trains an
actor classifier on them; :func:`actor_attack` reports the accuracy of one such classifier and of an
ensemble of differently initialised ones (averaged probabilities), the stronger of the two being the
privacy figure. The attacker's training clips are the earlier frames of every clip and its test clips
the later ones (:func:`~campro_bench.video.data.time_split`), so it is scored on frames it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import accuracy, predict_proba, train_classifier


@dataclass(frozen=True)
class AttackConfig:
    """How the attacker trains (the same for every protector)."""

    members: int = 3
    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    width: int = 8
    pool: int = 4


def actor_attack(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_actors: int, config: AttackConfig, seed: int) -> dict[str, float]:
    """``{"single": %, "ensemble": %}``: one re-trained attacker (member 0) and the ensemble of
    ``config.members`` attackers initialised from seeds ``seed*100 + m``."""
    probas = []
    for member in range(config.members):
        model = train_classifier(train_x, train_y, num_actors, steps=config.steps, batch_size=config.batch_size,
                                 lr=config.lr, width=config.width, seed=seed * 100 + member,
                                 pool=config.pool)
        probas.append(predict_proba(model, test_x))
    return {"single": accuracy(probas[0], test_y), "ensemble": accuracy(torch.stack(probas).mean(0), test_y)}

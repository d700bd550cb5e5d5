"""Attacks on protectors for the worst-case privacy audit (``campro-bench audit``).

* :mod:`.base`: the :class:`ImageAttack` contract, :class:`Attacked` (protector, 8-bit rounding,
  attack as one protector instance) and the ``restored`` protector (protector + restoration U-Net);
* :mod:`.cheap`: blind attacks (grayscale, histogram equalisation, CLAHE, gamma, permutations);
* :mod:`.inverses`: parameter-aware analytic inverses, a registry keyed by protector name.

All are registered in :data:`campro_bench.registries.ATTACKS` (entry-point group
``campro_bench.attacks``); ``campro-bench list attacks`` shows them.
"""

from .base import ATTACK_KINDS, Attacked, ImageAttack, Restored, build_attack, inverses_for, quantize

__all__ = ["ATTACK_KINDS", "Attacked", "ImageAttack", "Restored", "build_attack", "inverses_for", "quantize"]

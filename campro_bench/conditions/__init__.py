"""Capture conditions: how the scene reaches a protected camera (lighting, sensor, distance, stream).

A condition is a registered, seeded, documented image transform that acts on one side of the
protector, as a real camera would: ``grey``, ``low-light`` and ``distance`` change what the sensor
records (``before`` the protector), ``jpeg`` the stream the camera sends (``after`` it); ``colour``
is the identity (today's numbers). ``PROTECTOR@CONDITION`` is a protector spec
(``campro-isp:preset=casia-adv@grey``) that any command taking protector specs understands.
See docs/conditions.md.
"""

from .base import AFTER, BEFORE, Condition, Captured, build_condition, captured_protector, check_conditions

__all__ = ["AFTER", "BEFORE", "Captured", "Condition", "build_condition", "captured_protector", "check_conditions"]

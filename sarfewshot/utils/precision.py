"""Numeric precisions of evaluation (config ``MODEL.PRECISION``, ``eval --precision``).

A constant of the lowest floor: the config checks it and the models floor runs it, so neither
imports the other for it.
"""

from __future__ import annotations

#: ``fp32`` is the release's precision and the default; ``bf16`` runs under bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")

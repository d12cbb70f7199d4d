"""One spelling of a backbone everywhere results are printed and read back.

A backbone is a registry name, plus the weights file when one name has several:
``NAME@HASH`` with the first :data:`SHA_CHARS` hex digits of ``weights_sha256`` (``NAME@none``
for a weight-less run beside checkpointed ones). Tables, plots and ``compare`` print that form,
and ``compare --a/--b`` accepts it back, with a hash prefix of any length. Weight-less grid
labels such as ``random@irpe_vit_micro_patch8`` are whole names: their tail is not hex.
"""

from __future__ import annotations

import re

__all__ = ["SHA_CHARS", "backbone_label", "parse_backbone_label"]

SHA_CHARS = 12
NO_WEIGHTS = "none"
_HEX = re.compile(r"[0-9a-f]+")
# the table spelling before this module: ``sarjepa [06d78786189d]``
_OLD_TABLE = re.compile(r"(?P<name>.+?) \[(?P<sha>[0-9a-f]+|none)\]")


def backbone_label(name: str, weights_sha256: str | None, show_weights: bool) -> str:
    """``name``, or ``name@<first 12 hex of weights_sha256>`` when ``show_weights``."""
    if not show_weights:
        return name
    return f"{name}@{(weights_sha256 or NO_WEIGHTS)[:SHA_CHARS]}"


def parse_backbone_label(text: str) -> tuple[str, str | None]:
    """Split a label into (name, weights prefix); the prefix is None when none is given.

    Accepts ``NAME``, ``NAME@HEXPREFIX``, ``NAME@none`` and the older table form
    ``NAME [HEXPREFIX]``. A tail after the last ``@`` that is neither hex nor ``none`` belongs
    to the name (``random@vit_tiny``).
    """
    old = _OLD_TABLE.fullmatch(text.strip())
    if old:
        return old["name"], old["sha"]
    name, sep, tail = text.rpartition("@")
    tail = tail.lower()
    if sep and name and (tail == NO_WEIGHTS or _HEX.fullmatch(tail)):
        return name, tail
    return text, None


def weights_match(weights_sha256: str | None, prefix: str | None) -> bool:
    """Whether a record's weights hash fits a label's prefix (None: any; ``none``: no file)."""
    if prefix is None:
        return True
    if prefix == NO_WEIGHTS:
        return weights_sha256 is None
    return (weights_sha256 or "").startswith(prefix)

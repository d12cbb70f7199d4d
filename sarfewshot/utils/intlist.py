"""Integer lists as flags write them (``--seeds 1-5``, ``--shots 1,5,10``, ``--exclude-seeds``)."""

from __future__ import annotations

import re

from sarfewshot.errors import ConfigError


def parse_ints(text: str, flag: str) -> list[int]:
    """``"1,5,10"`` or ranges ``"1-5"`` (inclusive) -> ints >= 0, order kept, duplicates dropped.

    Raises:
        ConfigError: naming ``flag``: not integers, a negative value, a reversed range
            (``3-1``), or nothing given. Checked before any folder is created.
    """
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if re.fullmatch(r"-\s*\d+", part):
            raise ConfigError(f"{flag} {text!r}: {part} is negative; values start at 0")
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if span and int(span[1]) > int(span[2]):
            raise ConfigError(
                f"{flag} {text!r}: the range {part} is reversed; write {span[2]}-{span[1]}"
            )
        try:
            out += list(range(int(span[1]), int(span[2]) + 1)) if span else [int(part)]
        except ValueError:
            raise ConfigError(f"{flag} {text!r}: expected integers such as 1,5,10 or 1-5") from None
    if not out:
        raise ConfigError(f"{flag} {text!r}: give at least one integer")
    return list(dict.fromkeys(out))

"""Sizes as people write them: `2G`, `500M`, `1.5TiB`, `750MB`, or a plain number of bytes."""

from __future__ import annotations

import re

from domain.errors import InvalidInput

# K, M, G, T and KiB... are powers of 1024, as disks are shown by `df -h` and `du -h`;
# KB, MB... powers of 1000, as disk makers sell them.
_BINARY = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(I?B?)$")
MAX_SIZE = 1 << 62


def parse_size(text: str) -> int:
    """A number of bytes from `text` (`2G`, `500M`, `1.5TiB`, `750MB`, `1048576`); InvalidInput
    saying how to write it otherwise."""
    raw = text.strip()
    match = _SIZE.match(raw.upper())
    if match is None:
        raise InvalidInput(
            f"{text!r} is not a size",
            hint="write a number of bytes, or one with a unit: 500M, 2G, 1.5T (powers of"
            " 1024, also written MiB, GiB, TiB) or 500MB, 2GB (powers of 1000)",
        )
    number, prefix, suffix = match.groups()
    if suffix == "I" or (suffix == "IB" and not prefix):
        raise InvalidInput(f"{text!r} is not a size", hint="write 2GiB, 2G or 2GB, for example")
    base = 1000 if suffix == "B" and prefix else 1024
    value = float(number) * base ** _BINARY[prefix]
    if value != int(value) and not prefix:
        raise InvalidInput(f"{text!r}: a number of bytes is a whole number")
    if value > MAX_SIZE:
        raise InvalidInput(f"{text!r} is larger than any disk", hint="check the unit")
    return int(value)

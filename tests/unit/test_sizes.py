"""Sizes as people write them."""

import pytest

from domain.errors import InvalidInput
from domain.sizes import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("500M", 500 << 20),
        ("1.5T", int(1.5 * (1 << 40))),
        ("2GiB", 2 << 30),
        ("64KiB", 64 << 10),
        ("750MB", 750_000_000),
        ("2GB", 2_000_000_000),
        (" 3 G ", 3 << 30),
        ("12B", 12),
    ],
)
def test_sizes_with_and_without_units(text: str, expected: int) -> None:
    # Given a size as a person writes it
    # When it is read
    # Then it is that many bytes (K/M/G/T and KiB... in powers of 1024, KB... of 1000)
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "2 GiBs", "1.5", "two", "2iB", "9" * 30])
def test_what_is_no_size_says_how_to_write_one(text: str) -> None:
    # Given text that is no size
    # When it is read
    # Then the error says so, and how to write one
    with pytest.raises(InvalidInput) as caught:
        parse_size(text)
    said = str(caught.value)
    assert "size" in said or "disk" in said or "whole" in said

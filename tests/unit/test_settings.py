"""Settings: every bad value is refused with the variable's name and what it must be."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from ops.settings import Settings, flag
from web.settings import WebSettings


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IMAGECACHE_PORT", "99999", "from 1 to 65535"),
        ("IMAGECACHE_PORT", "0", "from 1 to 65535"),
        ("IMAGECACHE_CACHE_QUALITY", "500", "from 1 to 100"),
        ("IMAGECACHE_THUMBNAIL_QUALITY", "0", "from 1 to 100"),
        ("IMAGECACHE_CACHE_SIZE", "-5", "from 16 to 16384"),
        ("IMAGECACHE_BATCH_SIZE", "0", "from 1 to 1000"),
        ("IMAGECACHE_BATCH_SIZE", "-4", "from 1 to 1000"),
        ("IMAGECACHE_WORKER_THREADS", "0", "from 1 to 256"),
        ("IMAGECACHE_WORKER_PROCESSES", "0", "from 1 to 256"),
        ("IMAGECACHE_GAP_TIMEOUT", "-1", "at least 0.1"),
        ("IMAGECACHE_GAP_TIMEOUT", "nan", "not a finite number"),
        ("IMAGECACHE_STALE_AFTER", "inf", "not a finite number"),
        ("IMAGECACHE_ALERT_THRESHOLD", "2", "from 0 to 1"),
        ("IMAGECACHE_CACHE_CAPACITY", "-1", "at least 0"),
        ("IMAGECACHE_QUARANTINE_AFTER", "0", "at least 1"),
        ("IMAGECACHE_ORPHAN_DAYS", "-3", "at least 0"),
        ("IMAGECACHE_BATCH_SIZE", "abc", "not a whole number"),
        ("IMAGECACHE_FORMAT", "gif", "use jpeg, webp, avif"),
        ("IMAGECACHE_CONFIRM_DELIVERY", "maybe", "not a yes/no value"),
        ("IMAGECACHE_MAX_SOURCE_BYTES", "1000", "from 1048576 to 1099511627776"),
        ("IMAGECACHE_MAX_SOURCE_BYTES", "2e9", "not a whole number"),
    ],
)
def test_a_bad_setting_names_the_variable_and_what_it_must_be(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings.from_env({name: value})
    assert f"{name}={value!r}" in str(refused.value)
    assert says in str(refused.value)


def test_good_settings_are_taken_as_given() -> None:
    s = Settings.from_env(
        {
            "IMAGECACHE_PORT": "65535",
            "IMAGECACHE_CACHE_QUALITY": "100",
            "IMAGECACHE_FORMAT": " WebP ",
            "IMAGECACHE_BATCH_SIZE": "16",
            "IMAGECACHE_ALERT_THRESHOLD": "0",
            "IMAGECACHE_CONFIRM_DELIVERY": "yes",
            "IMAGECACHE_GAP_TIMEOUT": "",  # empty: the default
        }
    )
    assert (s.port, s.batch_size, s.alert_threshold) == (65535, 16, 0.0)
    assert s.specs["cache"].quality == 100 and s.specs["cache"].format == "webp"
    assert s.confirm_delivery is True and s.gap_timeout == 5.0


@pytest.mark.parametrize(
    ("raw", "want"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False), ("", False)],
)
def test_yes_no_settings(raw: str, want: bool) -> None:
    assert flag({"X": raw}, "X") is want
    assert WebSettings.from_env({"IMAGECACHE_OPEN_READS": raw}, "t").open_reads is want


def test_a_yes_no_setting_refuses_anything_else() -> None:
    with pytest.raises(InvalidInput, match="IMAGECACHE_OPEN_READS='yes please'"):
        WebSettings.from_env({"IMAGECACHE_OPEN_READS": "yes please"}, "t")


def test_the_source_size_limit_follows_the_pixel_limit_unless_given() -> None:
    # Given no limit of its own, 8 bytes a pixel (a 16-bit RGBA picture, uncompressed)
    assert Settings.from_env({}).max_source_bytes == 800_000_000
    assert Settings.from_env({"IMAGECACHE_MAX_PIXELS": "25000000"}).max_source_bytes == 200_000_000
    # and never below 1 MiB, however low the pixel limit
    assert Settings.from_env({"IMAGECACHE_MAX_PIXELS": "1"}).max_source_bytes == 1 << 20
    # Given one, it is taken as it is
    given = Settings.from_env({"IMAGECACHE_MAX_SOURCE_BYTES": str(5 << 20)})
    assert given.max_source_bytes == 5 << 20

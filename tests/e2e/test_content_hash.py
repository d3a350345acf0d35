"""Content hashes on request: an in-place edit that keeps size and mtime is found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import Imagecache

pytestmark = pytest.mark.e2e


def _summary(ic: Imagecache, lib: Path) -> dict[str, int]:
    done = ic.run("up", str(lib), "--no-serve", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def _scan(ic: Imagecache, *extra: str) -> list[dict[str, int]]:
    done = ic.run("collections", "scan", "--json", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    return list(json.loads(done.stdout))


def test_hashed_scan_finds_an_edit_that_kept_size_and_mtime(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given three generated images (BMP: bytes can change without breaking the file)
    album = tmp_path / "library" / "album"
    album.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (400, 300), (60 * i, 120, 200)).save(album / f"{i}.bmp")
    assert _summary(embedded, tmp_path / "library")["generated"] == 6
    # And a first hashed scan, which records hashes but changes nothing
    (first,) = _scan(embedded, "--hash")
    assert first["changed"] == 0
    assert _summary(embedded, tmp_path / "library")["generated"] == 0

    # When one image is edited in place, keeping its size and mtime
    edited = album / "1.bmp"
    st = edited.stat()
    data = bytearray(edited.read_bytes())
    data[-3000:] = bytes(255 - b for b in data[-3000:])
    edited.write_bytes(bytes(data))
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert edited.stat().st_size == st.st_size and edited.stat().st_mtime_ns == st.st_mtime_ns

    # Then a plain scan cannot see it, and nothing is regenerated
    (plain,) = _scan(embedded)
    assert plain["changed"] == 0
    assert _summary(embedded, tmp_path / "library")["generated"] == 0
    # But a hashed scan finds it, and exactly its two renditions are made again
    (hashed,) = _scan(embedded, "--hash")
    assert hashed["changed"] == 1
    again = _summary(embedded, tmp_path / "library")
    assert again["generated"] == 2 and again["skipped"] == 4
    assert embedded.run("replay", "verify").returncode == 0

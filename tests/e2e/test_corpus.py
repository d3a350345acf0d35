"""Real camera files and hostile input, end to end through the main job."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from domain.errors import ERROR_CLASSES
from tests.e2e.conftest import Imagecache, outcomes_by_image

pytestmark = pytest.mark.e2e

BOX = {"cache": 1920, "thumbnail": 300}


def _up(ic: Imagecache, *paths: Path) -> dict[str, int]:
    result = ic.run("up", *map(str, paths), "--no-serve", "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_exif_samples_each_get_one_outcome_per_rendition(
    shared_corpus: Path, embedded: Imagecache
) -> None:
    # Given the real camera files: EXIF, orientations, HEIC, TIFF, invalid and corrupted files
    corpus = shared_corpus / "exif-samples"

    # When the main job processes them all
    summary = _up(embedded, corpus)

    # Then every image has exactly one terminal outcome for each rendition
    outcomes = outcomes_by_image(embedded.env)
    images = {path for path, _ in outcomes}
    assert len(images) == summary["images"] > 80
    for (path, kind), found in outcomes.items():
        assert len(found) == 1, f"{path} {kind}: {len(found)} outcomes"
    for path in images:
        assert {k for p, k in outcomes if p == path} == {"cache", "thumbnail"}

    # And each generated file has the right size and is upright; failures have a known class
    for (path, kind), (outcome,) in outcomes.items():
        if outcome["type"] == "RenditionFailed":
            assert outcome["error_class"] in ERROR_CLASSES and outcome["message"]
            continue
        with Image.open(path) as src:
            upright = ImageOps.exif_transpose(src).size if src.format != "HEIF" else src.size
        with Image.open(str(outcome["file"])) as out:
            scale = min(BOX[kind] / max(upright), 1.0)
            expected = (round(upright[0] * scale), round(upright[1] * scale))
            assert abs(out.size[0] - expected[0]) <= 1 and abs(out.size[1] - expected[1]) <= 1, (
                f"{path} {kind}: {out.size} != {expected}"
            )
            name = Path(path).name
            if name.startswith("landscape_"):
                assert out.size[0] > out.size[1], f"{name} is not upright"
            if name.startswith("portrait_"):
                assert out.size[1] > out.size[0], f"{name} is not upright"

    # And the files that are no images at all fail as such, not as crashes
    corrupted = outcomes[(str(corpus / "jpg" / "corrupted.jpg"), "cache")][0]
    assert corrupted["type"] in ("RenditionFailed", "RenditionGenerated")
    if corrupted["type"] == "RenditionFailed":
        assert corrupted["error_class"] == "corrupt"
    assert summary["generated"] + summary["failed"] == 2 * summary["images"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_hostile_input_fails_clearly_and_loses_nothing_else(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a library with a bomb, an empty file, a truncated JPEG, a ZIP with `..` and
    # absolute members, and symlinks that leave the library root, next to good images
    lib = tmp_path / "library"
    album = lib / "album"
    album.mkdir(parents=True)
    good = io.BytesIO()
    Image.new("RGB", (1200, 900), (10, 120, 200)).save(good, "JPEG", quality=90)
    (album / "good.jpg").write_bytes(good.getvalue())
    (album / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))
    (album / "empty.jpg").write_bytes(b"")
    (album / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.new("RGB", (50, 50)).save(outside / "private.jpg")
    os.symlink(outside / "private.jpg", album / "link.jpg")
    os.symlink(outside, lib / "linked-dir")
    with zipfile.ZipFile(lib / "evil.cbz", "w") as zf:
        zf.writestr("page-1.jpg", good.getvalue())
        zf.writestr("../escape.jpg", good.getvalue())
        zf.writestr("/absolute.jpg", good.getvalue())

    # When the main job runs
    summary = _up(embedded, lib)

    # Then each bad file failed with its class, the good ones were made, nothing escaped
    outcomes = outcomes_by_image(embedded.env)
    by_name = {(Path(p).name, k): v[0] for (p, k), v in outcomes.items()}
    assert by_name[("bomb.png", "cache")]["error_class"] == "too_many_pixels"
    assert by_name[("empty.jpg", "cache")]["error_class"] == "corrupt"
    assert by_name[("truncated.jpg", "thumbnail")]["error_class"] == "corrupt"
    assert by_name[("good.jpg", "cache")]["type"] == "RenditionGenerated"
    assert by_name[("page-1.jpg", "cache")]["type"] == "RenditionGenerated"
    names = {n for n, _ in by_name}
    assert not names & {"escape.jpg", "absolute.jpg", "private.jpg", "link.jpg"}
    assert summary["generated"] == 4 and summary["failed"] == 6
    # And a scan says which members it refused and why
    rescan = embedded.run("collections", "scan")
    assert rescan.returncode == 0, rescan.stderr
    assert "../escape.jpg: refused, an absolute or '..' name" in rescan.stderr
    assert "/absolute.jpg: refused" in rescan.stderr
    assert "link.jpg: refused, a symlink that leaves its collection" in rescan.stderr
    assert not list((tmp_path / "var" / "cache").rglob("*tmp-imagecache"))

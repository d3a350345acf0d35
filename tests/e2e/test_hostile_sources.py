"""Hostile sources end to end: bad archive members, symlink loops, files swapped for links
after the scan, and an archive of 100,000 members behind a running `serve`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.archives import hostile_archive, picture
from tests.e2e.conftest import Imagecache, outcomes_by_image

pytestmark = pytest.mark.e2e

LIMIT = 4 << 20  # IMAGECACHE_MAX_SOURCE_BYTES here: a bomb member is cheap to make


def _up(ic: Imagecache, *paths: Path) -> tuple[dict[str, object], str]:
    done = ic.run("up", *map(str, paths), "--no-serve", "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return dict(json.loads(done.stdout)), done.stderr


def _by_name(env: dict[str, str]) -> dict[tuple[str, str], list[dict[str, object]]]:
    """Outcomes by (collection name / member, kind)."""
    return {
        (f"{Path(p).parent.name}/{Path(p).name}", kind): found
        for (p, kind), found in outcomes_by_image(env).items()
    }


def test_a_hostile_archive_is_failed_member_by_member_and_the_rest_made(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a library: a folder of good pictures, and a CBZ of good pages mixed with encrypted,
    # Deflate64, corrupt-deflate, CRC-broken and bomb members
    lib = tmp_path / "library"
    (lib / "album").mkdir(parents=True)
    for n in range(3):
        (lib / "album" / f"good-{n}.jpg").write_bytes(picture(colour=(n * 60, 90, 90)))
    expected = hostile_archive(lib / "hostile.cbz", bomb_bytes=LIMIT)
    # (batches of 16: the archive's good and bad members travel in one message)
    ic = Imagecache(
        dict(embedded.env, IMAGECACHE_MAX_SOURCE_BYTES=str(LIMIT), IMAGECACHE_BATCH_SIZE="16")
    )

    # When the main job runs
    summary, _ = _up(ic, lib)

    # Then it finished, with exactly one outcome per image and rendition: the good members
    # and pictures made, each bad member failed with its class and a one-line message
    found = _by_name(ic.env)
    assert len(found) == 2 * (3 + len(expected))
    assert all(len(outcomes) == 1 for outcomes in found.values())
    for (name, kind), (outcome,) in found.items():
        collection, member = name.split("/", 1)
        bad = expected.get(member) if collection == "hostile.cbz" else ""
        if bad:
            assert (outcome["type"], outcome["error_class"]) == ("RenditionFailed", bad), name
            message = str(outcome["message"])
            assert message and "\n" not in message and "b'" not in message
        else:
            assert outcome["type"] == "RenditionGenerated", (name, kind, outcome)
    bad_members = sum(1 for cls in expected.values() if cls)
    assert summary["failed"] == 2 * bad_members
    assert summary["generated"] == 2 * (3 + len(expected) - bad_members)
    # And both jobs (the folder's, the archive's) reached their end: nothing left to resume
    jobs = json.loads(ic.run("jobs", "list", "--json").stdout)["jobs"]
    assert [j["status"] for j in jobs] == ["finished", "finished"]
    assert _up(ic, lib)[0]["resumed_jobs"] == 0


def test_symlink_loops_are_refused_and_the_rest_of_the_root_is_made(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given loops of one link and of two, at the root and in a folder, next to good pictures
    lib = tmp_path / "library"
    album = lib / "album"
    album.mkdir(parents=True)
    for folder in (lib, album):
        (folder / "good.jpg").write_bytes(picture())
        os.symlink("self.jpg", folder / "self.jpg")
        os.symlink("two.jpg", folder / "one.jpg")
        os.symlink("one.jpg", folder / "two.jpg")
    os.symlink("loop-dir", lib / "loop-dir")
    os.symlink("loop.cbz", lib / "loop.cbz")

    # When the main job runs
    summary, stderr = _up(embedded, lib)

    # Then it finished, made both good pictures, and named each loop as a refused member
    found = _by_name(embedded.env)
    assert sorted(found) == [
        (f"{c}/good.jpg", k) for c in ("album", "library") for k in ("cache", "thumbnail")
    ]
    assert all(o[0]["type"] == "RenditionGenerated" for o in found.values())
    assert summary["generated"] == 4 and summary["failed"] == 0
    for name in ("self.jpg", "one.jpg", "two.jpg", "loop-dir", "loop.cbz"):
        assert f"{name}: refused, a symbolic link loop" in stderr, name
    assert stderr.count("refused, a symbolic link loop") == 8

    # And registering a loop says what it is, without a traceback
    ic = Imagecache(dict(embedded.env, IMAGECACHE_LIBRARY_ROOTS=str(lib)))
    added = ic.run("collections", "add", str(lib / "loop-dir"))
    assert added.returncode == 1 and "is a symbolic link loop" in added.stderr
    assert "Traceback" not in added.stderr


def test_a_source_swapped_for_a_link_after_the_scan_is_not_rendered(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a scanned library: a folder, a second folder, an archive
    lib = tmp_path / "library"
    for folder, names in (("album", ["a.jpg", "b.jpg"]), ("second", ["c.jpg"])):
        (lib / folder).mkdir(parents=True)
        for name in names:
            (lib / folder / name).write_bytes(picture())
    with zipfile.ZipFile(lib / "book.cbz", "w") as archive:
        archive.writestr(zipfile.ZipInfo("p.jpg", (2024, 5, 1, 12, 0, 0)), picture())
    ic = Imagecache(dict(embedded.env, IMAGECACHE_LIBRARY_ROOTS=str(lib)))
    added = ic.run("collections", "add", str(lib))
    assert added.returncode == 0, added.stderr

    # When, before anything is rendered, a picture, a folder and the archive are each swapped
    # for a link to a private copy (same bytes, size and mtime) outside the library
    private = tmp_path / "private"
    shutil.copytree(lib, private)
    (lib / "album" / "a.jpg").unlink()
    os.symlink(private / "album" / "a.jpg", lib / "album" / "a.jpg")
    shutil.rmtree(lib / "second")
    os.symlink(private / "second", lib / "second")
    (lib / "book.cbz").unlink()
    os.symlink(private / "book.cbz", lib / "book.cbz")
    done = ic.run("regenerate", "--all", "--wait", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    # Then none of them was rendered: each failed, saying it is a link now and to scan again;
    # the picture left alone was made
    found = _by_name(ic.env)
    assert found[("album/b.jpg", "cache")][0]["type"] == "RenditionGenerated"
    for name in ("album/a.jpg", "second/c.jpg", "book.cbz/p.jpg"):
        for kind in ("cache", "thumbnail"):
            (outcome,) = found[(name, kind)]
            assert outcome["type"] == "RenditionFailed", (name, outcome)
            assert outcome["error_class"] == "source_missing"
            assert "symbolic link" in str(outcome["message"]), outcome
            assert "scan the collection again" in str(outcome["message"])
    files = [p for p in (tmp_path / "var" / "cache").rglob("*.jpg")]
    assert len(files) == 2  # b.jpg's cache image and thumbnail, nothing of the private files

    # And a scan now names what it refuses
    rescan = ic.run("collections", "scan")
    assert "a.jpg: refused, a symlink that leaves its collection" in rescan.stderr
    assert "second is a symbolic link now, not followed" in rescan.stderr
    assert "book.cbz is a symbolic link now, not followed" in rescan.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_keeps_answering_and_stops_at_once_while_it_works_through_a_huge_archive(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given an archive of 100,000 members: 1,000 pictures spread among 99,000 AppleDouble
    # entries ("._page.png", which a scan leaves out), planned but not yet run.
    # (Registering 100,000 images costs its projection minutes, archive or not: the 1,000
    # stand for them here; that a member's cost does not grow with its archive is
    # test_sources.py's, and `imagecache bench archive` measures all 100,000.)
    lib = tmp_path / "library"
    lib.mkdir()
    page = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(page, "PNG")
    with zipfile.ZipFile(lib / "huge.cbz", "w") as archive:
        for n in range(100_000):
            name = f"p{n:06d}.png" if n % 100 == 0 else f"._p{n}.png"
            archive.writestr(f"{n // 1000:03d}/{name}", page.getvalue())
    env = dict(embedded.env, IMAGECACHE_LIBRARY_ROOTS=str(lib), IMAGECACHE_SCAN_EVERY="0")
    ic = Imagecache(env)
    assert ic.run("collections", "add", str(lib)).returncode == 0
    planned = ic.run("regenerate", "--all", "--json")
    assert planned.returncode == 0, planned.stderr
    (job,) = json.loads(planned.stdout)["jobs"]
    assert job["to_process"] == 1000

    # When serve runs it
    port = _free_port()
    server = ic.start("serve", "--port", str(port))
    health = f"http://127.0.0.1:{port}/api/v1/health"
    cache = tmp_path / "var" / "cache"
    answered = 0
    try:
        # Half the job within 2 minutes: re-reading the archive for every member (0.66 s
        # each, on two processes) would take 3 times as long
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(cache.rglob("*.jpg"))) < 1000:
            try:
                with urllib.request.urlopen(health, timeout=10) as answer:
                    assert answer.status == 200
                    answered += 1
            except urllib.error.URLError:
                # Only while it starts: once it has answered, every call must be answered
                assert answered == 0 and server.poll() is None, "serve stopped answering"
            time.sleep(0.2)
        made = len(list(cache.rglob("*.jpg")))
        # Then it works through the archive at the pace of its members (the archive parsed
        # once, not once a member), answering health all the while
        assert made >= 1000, f"only {made} files after 120 s"
        assert answered > 0
        # And SIGTERM in the middle of the job ends it promptly and cleanly
        server.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = server.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if server.poll() is None:  # a failed check above: stop it, and keep its message
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.communicate(timeout=30)
    assert server.returncode == 0, out[-3000:]
    assert took < 10, f"serve took {took:.1f} s to stop"
    assert "Traceback" not in out
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == ""

    # And the next run finishes exactly what was left: one outcome per image and rendition
    resumed = ic.run("regenerate", "--all", "--wait", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = outcomes_by_image(ic.env)
    assert len(found) == 2000 and all(len(o) == 1 for o in found.values())
    assert all(o[0]["type"] == "RenditionGenerated" for o in found.values())

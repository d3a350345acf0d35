"""Several worker processes on one job: every planned image gets exactly one outcome per kind."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pymongo
import pytest
from PIL import Image

from tests.e2e.conftest import Imagecache

pytestmark = pytest.mark.e2e


def _album(tmp_path: Path, count: int, width: int) -> Path:
    """tmp_path/library/album with `count` distinct JPEGs, `width` + i pixels wide."""
    album = tmp_path / "library" / "album"
    album.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (width + i, width * 3 // 4), (i, 255 - i, 90)).save(album / f"{i:03}.jpg")
    return album


def test_two_worker_processes_share_one_job_exactly_once(
    tmp_path: Path, distributed: Imagecache
) -> None:
    # Given one collection of 120 images and a worker supervisor with two processes
    _album(tmp_path, 120, 640)
    env = dict(distributed.env, IMAGECACHE_BATCH_SIZE="2")
    workers = Imagecache(env).start("worker", "--processes", "2", "--threads", "2")
    try:
        # When the main job plans it and leaves the work to the workers
        result = Imagecache(env).run(
            "up", str(tmp_path / "library"), "--no-serve", "--no-worker", "--json"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(result.stdout)
    finally:
        workers.send_signal(signal.SIGTERM)
        out, _ = workers.communicate(timeout=60)
    assert workers.returncode == 0, out[-3000:]

    # Then both processes worked, and each (image, kind) has exactly one outcome
    assert summary["generated"] == 240 and summary["failed"] == 0
    db = pymongo.MongoClient(env["MONGODB_URI"])[env["IMAGECACHE_DB"]]
    terminal = ["RenditionGenerated", "RenditionSkipped", "RenditionFailed"]
    outcomes = Counter(
        (e["data"]["image_id"], e["data"]["kind"])
        for e in db.events.find({"type": {"$in": terminal}})
    )
    assert len(outcomes) == 240
    assert set(outcomes.values()) == {1}
    workers_seen = {e["data"]["worker"] for e in db.events.find({"type": "JobHeartbeat"})}
    assert len(workers_seen) == 2, f"expected both processes to work, saw {workers_seen}"


def test_workers_keep_folder_statistics_current_with_no_other_projector(
    tmp_path: Path, distributed: Imagecache
) -> None:
    # Given workers, and a collection registered and planned by short commands only: no
    # serve, no scheduler, no waiting command drives the projector
    album = _album(tmp_path, 30, 800)
    env = dict(distributed.env, IMAGECACHE_LIBRARY_ROOTS=str(tmp_path / "library"))
    ic = Imagecache(env)
    workers = ic.start("worker", "--processes", "1", "--threads", "2")
    try:
        assert ic.run("collections", "add", str(album)).returncode == 0
        planned = ic.run("regenerate", "--all")
        assert planned.returncode == 0, planned.stderr[-3000:]
        db = pymongo.MongoClient(env["MONGODB_URI"])[env["IMAGECACHE_DB"]]

        # When the workers have written every rendition
        import time

        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and db.events.count_documents({"type": "RenditionGenerated"}) < 60
        ):
            time.sleep(0.2)
        cache = Path(env["IMAGECACHE_DATA"]) / "cache"
        on_disk = sum(p.stat().st_size for p in cache.rglob("*.jpg"))

        # Then folder_stats, which the workers choose folders by, catches up with the disk
        # (their own projector: nothing else runs one here)
        while time.monotonic() < deadline:
            (stats,) = list(db.folder_stats.find())
            if stats.get("bytes") == on_disk:
                break
            time.sleep(0.2)
        assert stats.get("bytes") == on_disk and stats.get("files") == 60
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.communicate(timeout=60)

"""Maintenance against the real MongoDB-wire server: alerts, quarantine, eviction."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pymongo
import pytest
from PIL import Image

from domain.errors import InvalidInput
from domain.ownership import MARKER_NAME
from ops import control, library, maintenance, replay
from ops.bootstrap import App, bootstrap
from ops.settings import Settings

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, mongodb_uri: str, **more: str) -> dict[str, str]:
    """A fresh database on the test server, data in tmp_path, actors in process."""
    return {
        "MONGODB_URI": mongodb_uri,
        "IMAGECACHE_DB": f"t_{uuid.uuid4().hex[:12]}",
        "IMAGECACHE_DATA": str(tmp_path / "var"),
        "IMAGECACHE_WORKER_PROCESSES": "1",
        **more,
    }


@pytest.fixture
def app(tmp_path: Path, mongodb_uri: str) -> Iterator[App]:
    env = _env(tmp_path, mongodb_uri, IMAGECACHE_QUARANTINE_AFTER="2")
    name = env["IMAGECACHE_DB"]
    with bootstrap(Settings.from_env(env)) as wired:
        wired.start_worker(2)
        yield wired
    pymongo.MongoClient(mongodb_uri).drop_database(name)


def _library(root: Path, good: int, corrupt: int) -> Path:
    album = root / "album"
    album.mkdir(parents=True)
    for i in range(good):
        Image.new("RGB", (900, 600), (i * 20 % 256, 80, 160)).save(album / f"g{i:02}.jpg")
    for i in range(corrupt):
        (album / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    return root


def _generate(app: App, lib: Path, *, force: bool = False) -> list[dict[str, Any]]:
    library.ensure_default_folder(app)
    library.add_root(app, lib)
    ids = library.add_collections(app, lib)
    library.scan_collections(app, ids)
    bulk = library.regenerate(app, ids, force=force)
    return library.wait_for(app, [j.job_id for j in bulk.jobs], timeout=120)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_failure_rate_alert_is_raised_once_and_posted(app: App, tmp_path: Path) -> None:
    # Given a job where 3 of 10 images fail (30% > the 10% threshold)
    (job,) = _generate(app, _library(tmp_path / "lib", 7, 3))
    assert job["failed"] == 6
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        # When alerts run twice
        first = maintenance.failure_alerts(app, threshold=0.10, webhook=url)
        second = maintenance.failure_alerts(app, threshold=0.10, webhook=url)
    finally:
        server.shutdown()
    # Then one AlertRaised event, one webhook POST naming the job and its failure classes
    assert [a["job_id"] for a in first] == [job["id"]] and second == []
    assert app.db.events.count_documents({"type": "AlertRaised"}) == 1
    assert _Hook.received[-1]["job_id"] == job["id"]
    assert _Hook.received[-1]["failed_by_class"] == {"corrupt": 6}
    app.projector.catch_up()
    assert app.read.job(job["id"]) is not None


def test_an_image_failing_the_same_way_twice_is_quarantined(app: App, tmp_path: Path) -> None:
    # Given corrupt images that failed once, and fail again on a retry
    lib = _library(tmp_path / "lib", 2, 2)
    (first,) = _generate(app, lib)
    retry = control.retry_failed(app, first["id"])
    library.wait_for(app, [retry["id"]], timeout=60)
    view = app.read.job(retry["id"])
    assert view is not None and view["failed"] == 4 and view["retry_of"] == first["id"]

    # When "regenerate missing" runs again, the quarantined images are not planned
    ids = [c["_id"] for c in app.read.collections()]
    bulk = library.regenerate(app, ids)
    assert bulk.quarantined == 2 and bulk.jobs == []
    # And retry-failed refuses, saying why; --force still plans them
    with pytest.raises(InvalidInput, match="quarantined"):
        control.retry_failed(app, retry["id"])
    forced = library.regenerate(app, ids, force=True)
    assert [j.to_process for j in forced.jobs] == [4]
    library.wait_for(app, [j.job_id for j in forced.jobs], timeout=60)


def test_eviction_frees_an_over_full_folder_least_recently_served_first(
    app: App, tmp_path: Path
) -> None:
    # Given a folder holding 20 renditions, then a capacity just below what it holds
    _generate(app, _library(tmp_path / "lib", 10, 0))
    (folder,) = app.read.folders()
    library.change_folder(app, folder["id"], int(folder["bytes"] * 0.9), 0)
    served = sorted(app.read.renditions_in(folder["id"]), key=lambda d: d["_id"])[:4]
    for doc in served:
        app.read.touch_served(doc["image_id"], doc["kind"], 4e9)  # served "now", far future

    # When capacity is enforced
    report = maintenance.enforce_capacity(app)

    # Then the folder is under the low-water mark, the recently served stayed, and every
    # eviction is an event with its reason; projections still equal a replay
    (after,) = app.read.folders()
    assert report["folders"][0]["evicted"] > 0
    assert after["bytes"] <= after["capacity_bytes"] * 0.85
    kept = {d["_id"] for d in app.read.renditions_in(folder["id"])}
    assert {d["_id"] for d in served} <= kept
    evicted = list(app.db.events.find({"type": "RenditionDeleted", "data.reason": "evicted"}))
    assert len(evicted) == report["folders"][0]["evicted"]
    for e in evicted:
        assert not (Path(folder["path"]) / e["data"]["path"]).exists()
    _position, diffs = replay.verify(app)
    assert diffs == [], diffs[:5]


def test_a_batch_never_fills_a_folder_past_its_capacity(tmp_path: Path, mongodb_uri: str) -> None:
    # Given a small high-priority cache folder and one message carrying every image
    env = _env(tmp_path, mongodb_uri, IMAGECACHE_BATCH_SIZE="50")
    name = env["IMAGECACHE_DB"]
    try:
        with bootstrap(Settings.from_env(env)) as app:
            app.start_worker(1)
            library.ensure_default_folder(app)
            small = tmp_path / "small"
            fid = library.add_folder(app, small, capacity=60_000, priority=10)

            # When 12 images (24 renditions, ~10 KB each) are generated in one batch
            views = _generate(app, _library(tmp_path / "lib", 12, 0))

            # Then the small folder took what fits and no more; the rest went elsewhere
            assert sum(v["generated"] for v in views) == 24
            on_disk = sum(
                p.stat().st_size for p in small.rglob("*") if p.is_file() and p.name != MARKER_NAME
            )
            assert 0 < on_disk <= 60_000
            folder = app.read.folder(fid)
            assert folder is not None and folder["bytes"] == on_disk
            _position, diffs = replay.verify(app)
            assert diffs == [], diffs[:5]
    finally:
        pymongo.MongoClient(mongodb_uri).drop_database(name)


def test_writing_back_over_an_orphan_in_another_folder_counts_it_once(
    app: App, tmp_path: Path
) -> None:
    # Given renditions generated into the default folder, then (forced) into a preferred one:
    # the first copies stay on disk, counted, as orphans until cleanup
    lib = _library(tmp_path / "lib", good=3, corrupt=0)
    _generate(app, lib)
    (first,) = app.read.folder_docs()
    other = library.add_folder(app, tmp_path / "other", priority=10)
    _generate(app, lib, force=True)

    # When the first folder is preferred again and everything is written back into it,
    # over those orphans
    library.change_folder(app, first["_id"], priority=20)
    _generate(app, lib, force=True)

    # Then each folder's statistics equal its disk: no file was counted twice
    report = maintenance.reconcile(app)
    by_id = {f["id"]: f for f in report["folders"]}
    assert by_id[first["_id"]]["measured_files"] == 6
    assert by_id[other]["measured_files"] == 6
    assert [f for f in report["folders"] if f["drift"]] == []

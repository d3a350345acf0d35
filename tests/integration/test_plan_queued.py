"""Planning twice does the work once: images an unfinished job will make are left to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from PIL import Image

from domain import events as ev
from domain.specs import DEFAULT_SPECS
from ops import control, library, maintenance, replay
from ops.bootstrap import App, bootstrap
from ops.settings import Settings
from tests.integration.test_maintenance import _env, _library

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str) -> Iterator[Settings]:
    """A fresh database on the test server, actors in process; dropped afterwards."""
    env = _env(tmp_path, mongodb_uri)
    yield Settings.from_env(env)
    pymongo.MongoClient(mongodb_uri).drop_database(env["IMAGECACHE_DB"])


def _generated(app: App, lib: Path) -> list[str]:
    """Register the library, generate everything with a worker; return the collection ids."""
    app.start_worker(2)
    library.ensure_default_folder(app)
    library.add_root(app, lib)
    ids = library.add_collections(app, lib)
    library.scan_collections(app, ids)
    library.wait_for(app, [j.job_id for j in library.regenerate(app, ids).jobs], timeout=120)
    return ids


def test_a_second_request_leaves_queued_images_to_the_job_that_has_them(
    tmp_path: Path, settings: Settings
) -> None:
    # Given a library of six images, planned once while no worker runs
    lib = _library(tmp_path / "lib", good=6, corrupt=0)
    with bootstrap(settings) as app:
        library.ensure_default_folder(app)
        library.add_root(app, lib)
        ids = library.add_collections(app, lib)
        library.scan_collections(app, ids)
        first = library.regenerate(app, ids)
        app.projector.catch_up()
        (job,) = first.jobs

        # When it is requested again, then once more after one image changed on disk,
        # and once with force
        second = library.regenerate(app, ids)
        changed = lib / "album" / "g03.jpg"
        Image.new("RGB", (700, 500), (250, 10, 10)).save(changed)
        os.utime(changed, (1_800_000_000, 1_800_000_000))
        library.scan_collections(app, ids)
        third = library.regenerate(app, ids)
        forced = library.regenerate(app, ids, force=True)

        # Then the second plans nothing: the first job has every image
        assert (second.jobs, second.queued, second.queued_in) == ([], 6, [job.job_id])
        # And the changed image is planned again (the first job knew its old bytes), alone
        (again,) = third.jobs
        assert (again.to_process, third.queued, third.queued_in) == (1, 5, [job.job_id])
        # And force plans every image whatever is queued
        assert (forced.jobs[0].to_process, forced.queued) == (6, 0)

        # And when a worker runs them, the first job makes the five images it knew and
        # fails the changed one (its bytes are no longer those it was planned for: never a
        # render of what is there now under the old fingerprint), the third makes the
        # changed one, and nothing is left to plan
        app.start_worker(2)
        views = library.wait_for(app, [job.job_id, again.job_id], timeout=120)
        assert [(v["status"], v["generated"], v["failed"]) for v in views] == [
            ("finished", 10, 2),
            ("finished", 2, 0),
        ]
        assert views[0]["failed_by_class"] == {"source_missing": 2}
        library.wait_for(app, [j.job_id for j in forced.jobs], timeout=120)
        last = library.regenerate(app, ids)
        assert (last.jobs, last.current, last.queued) == ([], 6, 0)


def test_repair_twice_before_its_job_ran_plans_one_job(tmp_path: Path, settings: Settings) -> None:
    # Given a generated library, one of whose cache files is lost
    lib = _library(tmp_path / "lib", good=3, corrupt=0)
    with bootstrap(settings) as app:
        _generated(app, lib)
        (folder,) = app.read.folder_docs()
    next(p for p in Path(folder["path"], "cache").rglob("*.*") if p.is_file()).unlink()

    # When repair runs twice, with no worker (a nightly one, while the first job still waits)
    with bootstrap(settings) as app:
        first = maintenance.repair_missing(app)
        second = maintenance.repair_missing(app)

    # Then the first plans a job, and the second leaves the file to that job
    assert (first["found_now"], first["missing"], len(first["jobs"])) == (1, 1, 1)
    assert (second["found_now"], second["missing"], second["jobs"]) == (0, 1, [])
    assert second["queued_in"] == first["jobs"]


def test_the_scan_task_keeps_up_with_the_library(tmp_path: Path, settings: Settings) -> None:
    # Given a generated library
    lib = _library(tmp_path / "lib", good=4, corrupt=0)
    with bootstrap(settings) as app:
        _generated(app, lib)
        events_before = app.events.head()
        idle = library.refresh(app)
        registered_again = [
            s for s in app.events.read(events_before, 10_000) if s.type == "CollectionRegistered"
        ]

    # When a new album appears, one image changes and one goes, and the scan task runs twice
    # (the second time before any worker ran the first one's jobs)
    new = lib / "new-album"
    new.mkdir()
    for i in range(3):
        Image.new("RGB", (640, 480), (10, 20 * i, 200)).save(new / f"n{i}.jpg")
    Image.new("RGB", (700, 500), (250, 10, 10)).save(lib / "album" / "g01.jpg")
    os.utime(lib / "album" / "g01.jpg", (1_800_000_000, 1_800_000_000))
    (lib / "album" / "g02.jpg").unlink()
    with bootstrap(settings) as app:
        first = library.refresh(app)
        second = library.refresh(app)

    # Then nothing was planned or registered again while the library stood still
    assert (idle["collections"], idle["new_collections"], idle["to_process"]) == (1, 0, 0)
    assert registered_again == []
    # And the first run found the new album and every change, and planned exactly those
    assert (first["collections"], first["new_collections"]) == (2, 1)
    assert (first["added"], first["changed"], first["removed"]) == (3, 1, 1)
    assert (first["to_process"], len(first["jobs"]), first["problems"]) == (4, 2, [])
    # And the second left them to the first one's jobs
    assert (second["to_process"], second["jobs"], second["queued"]) == (0, [], 4)


def test_a_removed_collection_is_left_out_until_its_path_is_added_again(
    tmp_path: Path, settings: Settings
) -> None:
    # Given two generated albums, and a job of the first still queued (no worker runs it)
    lib = _library(tmp_path / "lib", good=3, corrupt=0)
    other = lib / "other"
    other.mkdir()
    Image.new("RGB", (640, 480), (1, 2, 3)).save(other / "o.jpg")
    with bootstrap(settings) as app:
        ids = _generated(app, lib)
    album = next(c for c in ids if c != library.folder_id(str(other)))
    with bootstrap(settings) as app:
        (queued,) = library.regenerate(app, [album], force=True).jobs

        # When the album is removed, then the library is scanned and planned again
        removed = library.remove_collection(app, album)
        refreshed = library.refresh(app)
        up_again = library.add_collections(app, lib)  # what `up LIBRARY` does
        cleaned = maintenance.cleanup(app, dry_run=False, older_than_days=0)
        listed = [c["_id"] for c in app.read.collections()]
        job = app.read.job(queued.job_id)

        # Then its job is cancelled, its images are gone, and scans leave it out
        assert (removed["images"], removed["cancelled_jobs"]) == (3, [queued.job_id])
        assert job is not None and job["status"] == "cancelled"
        assert album not in listed and album not in up_again and refreshed["collections"] == 1
        assert refreshed["to_process"] == 0 and refreshed["problems"] == []
        # And cleanup deleted its six cache files, and nothing of the other album
        (folder,) = cleaned["folders"]
        assert folder["files"] == 6 and folder["by_reason"] == {"source_removed": 6}

        # When its path is added again
        again = library.add_collections(app, lib / "album", revive=True)
        library.scan_collections(app, again)
        bulk = library.regenerate(app, again)

        # Then it is back, with its three images to make again
        assert again == [album] and album in [c["_id"] for c in app.read.collections()]
        assert [j.to_process for j in bulk.jobs] == [3]
        _, diffs = replay.verify(app)
        assert diffs == [], diffs[:5]


def test_a_pause_stops_a_batch_between_images_and_resume_does_the_rest(
    tmp_path: Path, settings: Settings
) -> None:
    # Given one message carrying a job's four images, and no worker
    lib = _library(tmp_path / "lib", good=4, corrupt=0)
    with bootstrap(settings) as app:
        sent: list[dict[str, Any]] = []
        app.actors.publish = sent.extend  # type: ignore[method-assign]
        library.ensure_default_folder(app)
        library.add_root(app, lib)
        ids = library.add_collections(app, lib)
        library.scan_collections(app, ids)
        (job,) = library.regenerate(app, ids).jobs
        app.projector.catch_up()
        (message,) = sent
        sent.clear()

        # When the job is paused while the first image renders
        render = app.generator.renderer

        def render_then_pause(*args: Any) -> Any:
            out = render(*args)
            if not app.read.job_doc(job.job_id).get("paused"):  # type: ignore[union-attr]
                control.pause(app, job.job_id, "by hand")
                app.projector.catch_up()
            return out

        app.generator.renderer = render_then_pause
        app.generator.control_every = 0.0
        counts = app.generator.run(message)
        app.projector.catch_up()
        paused = app.read.job(job.job_id)

        # Then the batch stopped after that image, not at its end
        assert counts["generated"] == 2 and paused is not None
        assert (paused["status"], paused["generated"], paused["remaining"]) == ("paused", 2, 6)

        # And resume re-sends exactly the three images left, which finish the job once each
        app.generator.renderer = render
        control.resume(app, job.job_id)
        assert sorted(i for m in sent for i in m["ids"]) == sorted(
            i for i in control.remaining_images(app, job.job_id)
        )
        for m in sent:
            app.generator.run(m)
        app.projector.catch_up()
        done = app.read.job(job.job_id)
        assert done is not None
        assert (done["status"], done["generated"], done["skipped"]) == ("finished", 8, 0)


def test_a_removed_root_collection_stays_out_of_scans_and_up(
    tmp_path: Path, settings: Settings
) -> None:
    # Given a library root that holds its images itself: the root is the collection
    root = tmp_path / "shelf"
    root.mkdir()
    for i in range(2):
        Image.new("RGB", (640, 480), (i, 2, 3)).save(root / f"p{i}.jpg")
    with bootstrap(settings) as app:
        library.ensure_default_folder(app)
        library.add_root(app, root)
        (cid,) = library.add_collections(app, root)
        library.scan_collections(app, [cid])
        (job,) = library.regenerate(app, [cid]).jobs

        # When it is removed (its job never ran), then the scan task and `up ROOT` run,
        # and a pick-up pass finds a job planned for it after the removal
        library.remove_collection(app, cid)
        late = library.regenerate(app, [], everything=True)
        refreshed = library.refresh(app)
        up_again = library.add_collections(app, root)
        spec = DEFAULT_SPECS["cache"]
        app.events.append_many(
            [
                ev.JobPlanned(
                    "late-job",
                    "b",
                    cid,
                    ["cache"],
                    {"cache": spec.to_dict()},
                    {"cache": spec.hash},
                    1,
                    0,
                    1,
                ),
                ev.JobImagesPlanned("late-job", 0, ["x"]),
            ]
        )
        app.projector.catch_up()
        resumed = maintenance.resume_left(app, busy=lambda doc: False)
        app.projector.catch_up()

        # Then it stays removed, and the orphan job is cancelled, not a crash
        assert (late.jobs, refreshed["collections"], up_again) == ([], 0, [])
        assert app.read.job(job.job_id)["status"] == "cancelled"  # type: ignore[index]
        assert "late-job" not in resumed
        assert app.read.job("late-job")["status"] == "cancelled"  # type: ignore[index]

        # And adding exactly its path (`collections add`) brings it back
        assert library.add_collections(app, root, revive=True) == [cid]

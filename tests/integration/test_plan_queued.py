"""Planning twice does the work once: images an unfinished job will make are left to it."""

from __future__ import annotations

import os
from pathlib import Path

import pymongo
import pytest
from PIL import Image

from ops import library, maintenance
from ops.bootstrap import bootstrap
from ops.settings import Settings
from tests.integration.test_maintenance import _env, _library

pytestmark = pytest.mark.integration


def test_a_second_request_leaves_queued_images_to_the_job_that_has_them(
    tmp_path: Path, mongodb_uri: str
) -> None:
    # Given a library of six images, planned once while no worker runs
    env = _env(tmp_path, mongodb_uri)
    lib = _library(tmp_path / "lib", good=6, corrupt=0)
    with bootstrap(Settings.from_env(env)) as app:
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

        # And when a worker runs them, the first job makes all six images once, the third
        # makes the changed one, and nothing is left to plan
        app.start_worker(2)
        views = library.wait_for(app, [job.job_id, again.job_id], timeout=120)
        assert [(v["status"], v["generated"], v["failed"]) for v in views] == [
            ("finished", 12, 0),
            ("finished", 2, 0),
        ]
        library.wait_for(app, [j.job_id for j in forced.jobs], timeout=120)
        last = library.regenerate(app, ids)
        assert (last.jobs, last.current, last.queued) == ([], 6, 0)
    pymongo.MongoClient(mongodb_uri).drop_database(env["IMAGECACHE_DB"])


def test_repair_twice_before_its_job_ran_plans_one_job(tmp_path: Path, mongodb_uri: str) -> None:
    # Given a generated library, one of whose cache files is lost
    env = _env(tmp_path, mongodb_uri)
    lib = _library(tmp_path / "lib", good=3, corrupt=0)
    with bootstrap(Settings.from_env(env)) as app:
        app.start_worker(1)
        library.ensure_default_folder(app)
        library.add_root(app, lib)
        ids = library.add_collections(app, lib)
        library.scan_collections(app, ids)
        library.wait_for(app, [j.job_id for j in library.regenerate(app, ids).jobs], timeout=120)
        (folder,) = app.read.folder_docs()
    next(p for p in Path(folder["path"]).rglob("*.*") if p.is_file()).unlink()

    # When repair runs twice, with no worker (a nightly one, while the first job still waits)
    with bootstrap(Settings.from_env(env)) as app:
        first = maintenance.repair_missing(app)
        second = maintenance.repair_missing(app)

    # Then the first plans a job, and the second leaves the file to that job
    assert (first["found_now"], first["missing"], len(first["jobs"])) == (1, 1, 1)
    assert (second["found_now"], second["missing"], second["jobs"]) == (0, 1, [])
    assert second["queued_in"] == first["jobs"]
    pymongo.MongoClient(mongodb_uri).drop_database(env["IMAGECACHE_DB"])

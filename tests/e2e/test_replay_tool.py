"""The event-replay tool, end to end through the CLI in embedded mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Imagecache, make_library

pytestmark = pytest.mark.e2e


def _json(ic: Imagecache, *args: str) -> object:
    done = ic.run(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_history_state_at_export_import_and_rebuild(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library
    lib = tmp_path / "library"
    make_library(lib, folders=2, per_folder=2)
    assert embedded.run("up", str(lib), "--no-serve", "--json").returncode == 0
    jobs = _json(embedded, "jobs", "list", "--json")
    assert isinstance(jobs, dict)
    job = next(j for j in jobs["jobs"] if j["failed"])  # the folder with the corrupt file

    # When a job's history is asked: planned first, then one outcome per image and kind
    history = _json(embedded, "replay", "history", "--job", job["id"], "--json")
    assert isinstance(history, list)
    types = [e["type"] for e in history]
    assert types[0] == "JobImagesPlanned" and "JobPlanned" in types
    outcomes = [e for e in history if e["type"].startswith("Rendition")]
    assert len(outcomes) == job["total"]
    # And an image's history holds its outcomes
    image = outcomes[0]["data"]["image_id"]
    of_image = _json(embedded, "replay", "history", "--image", image, "--json")
    assert isinstance(of_image, list) and {e["data"]["image_id"] for e in of_image} == {image}

    # When the state is asked as of the position just before the job's last outcome
    last = max(e["seq"] for e in outcomes)
    before = _json(embedded, "replay", "at", str(last - 1), "--json")
    now = _json(embedded, "replay", "at", str(last), "--json")
    assert isinstance(before, dict) and isinstance(now, dict)
    then_job = next(j for j in before["jobs"] if j["id"] == job["id"])
    now_job = next(j for j in now["jobs"] if j["id"] == job["id"])
    assert then_job["remaining"] == 1 and now_job["remaining"] == 0

    # When the log is exported and imported into a fresh data folder
    export = tmp_path / "events.jsonl"
    assert embedded.run("replay", "export", str(export)).returncode == 0
    fresh = Imagecache(dict(embedded.env, IMAGECACHE_DATA=str(tmp_path / "other")))
    assert fresh.run("replay", "import", str(export)).returncode == 0
    # Then the projections built from it equal the original's
    assert _json(fresh, "jobs", "list", "--json") == jobs
    # And importing into a log that is not empty is refused, clearly
    again = fresh.run("replay", "import", str(export))
    assert again.returncode == 1 and "not empty" in again.stderr

    # When every projection is rebuilt from seq 0, they equal a fresh replay and the old state
    assert embedded.run("replay", "rebuild").returncode == 0
    assert _json(embedded, "jobs", "list", "--json") == jobs
    assert embedded.run("replay", "verify").returncode == 0

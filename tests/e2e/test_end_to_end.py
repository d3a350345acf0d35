"""End to end: the real command, the real broker and MongoDB-wire server."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
from PIL import Image

from domain.ownership import MARKER_NAME
from tests.e2e.conftest import Imagecache, make_library

pytestmark = pytest.mark.e2e


def _summary(result: object) -> dict[str, int]:
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_cache_files(cache: Path, expected: int) -> None:
    files = [p for p in cache.rglob("*") if p.is_file() and p.name != MARKER_NAME]
    assert len(files) == expected
    assert not [p for p in files if "tmp-imagecache" in p.name], "a temporary file was left"
    for p in files:
        kind, a, b, name = p.relative_to(cache).parts
        assert kind in ("cache", "thumbnail") and name.startswith(a + b)
        with Image.open(p) as img:
            box = 1920 if kind == "cache" else 300
            assert max(img.size) <= box


def test_generate_through_rabbitmq_verify_and_skip_on_second_run(
    tmp_path: Path, distributed: Imagecache
) -> None:
    # Given a library and a worker process consuming from the real RabbitMQ
    lib = tmp_path / "library"
    counts = make_library(lib)
    worker = distributed.start("worker", "--threads", "2")
    try:
        # When the main job runs without its own worker
        first = _summary(distributed.run("up", str(lib), "--no-serve", "--no-worker", "--json"))

        # Then every valid image has both renditions and the corrupt one failed, both kinds
        assert first["collections"] == 3
        assert first["images"] == counts["valid"] + counts["corrupt"]
        assert first["generated"] == 2 * counts["valid"]
        assert first["failed"] == 2 * counts["corrupt"]
        assert first["skipped"] == 0
        assert first["bytes"] > 0
        _check_cache_files(tmp_path / "var" / "cache", 2 * counts["valid"])

        # And the projections equal a fresh replay of the log
        verify = distributed.run("replay", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # When it runs again, everything current is skipped and nothing is generated
        second = _summary(distributed.run("up", str(lib), "--no-serve", "--no-worker", "--json"))
        assert second["generated"] == 0
        assert second["skipped"] == 2 * counts["valid"]
        assert second["already_current"] == counts["valid"]
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out[-3000:]


def test_embedded_mode_needs_no_services(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a library and no MONGODB_URI nor RABBITMQ_URL
    lib = tmp_path / "library"
    counts = make_library(lib, folders=2, per_folder=2)

    # When the main job runs
    first = _summary(embedded.run("up", str(lib), "--no-serve", "--json"))

    # Then it generated everything with its own database and in-process actors
    assert first["generated"] == 2 * counts["valid"]
    assert first["failed"] == 2 * counts["corrupt"]
    second = _summary(embedded.run("up", str(lib), "--no-serve", "--json"))
    assert second["generated"] == 0
    assert embedded.run("replay", "verify").returncode == 0


def test_clear_errors_for_bad_paths_and_ports(tmp_path: Path, embedded: Imagecache) -> None:
    # A missing library path
    missing = embedded.run("up", str(tmp_path / "nope"), "--no-serve")
    assert missing.returncode == 1
    assert "no such folder" in missing.stderr
    # A port in use
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = embedded.run("serve", "--port", str(port))
    assert busy.returncode == 1
    assert f"port {port}" in busy.stderr and "in use" in busy.stderr


def test_cache_folders_stay_apart_from_the_library(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library
    lib = tmp_path / "library"
    make_library(lib, folders=2, per_folder=2)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0

    # When cache folders are added inside the library, under a missing parent, or on a file
    inside = embedded.run("folders", "add", str(lib / "album-0" / "cache"))
    typo = embedded.run("folders", "add", str(tmp_path / "no" / "such" / "cache"))
    (tmp_path / "a-file").write_text("x")
    on_file = embedded.run("folders", "add", str(tmp_path / "a-file"))
    # And a library is given that holds the cache folder
    around = embedded.run("up", str(tmp_path), "--no-serve")
    # And folders inside the cache folder, or holding someone's files, are offered
    nested = embedded.run("folders", "add", str(tmp_path / "var" / "cache" / "more"))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"a picture")
    foreign = embedded.run("folders", "add", str(photos))

    # Then each is refused with what was wrong, and nothing was created
    assert inside.returncode == 1 and "overlaps the library root" in inside.stderr
    assert not (lib / "album-0" / "cache").exists()
    assert typo.returncode == 1 and "does not exist" in typo.stderr
    assert not (tmp_path / "no").exists()
    assert on_file.returncode == 1 and "is a file, not a folder" in on_file.stderr
    assert around.returncode == 1 and "overlaps the cache folder" in around.stderr
    assert nested.returncode == 1 and "overlaps the cache folder" in nested.stderr
    assert foreign.returncode == 1 and "already holds files imagecache did not write" in (
        foreign.stderr
    )
    # (the error counts what is there, and names nothing: the API must not list a folder)
    assert "1 entries" in foreign.stderr and "IMG_0001" not in foreign.stderr
    assert (photos / "IMG_0001.jpg").exists()
    # And a folder apart from the library is added, and removed while it is empty
    added = embedded.run("folders", "add", str(tmp_path / "second"), "--json")
    assert added.returncode == 0, added.stderr
    fid = json.loads(added.stdout)["id"]
    removed = embedded.run("folders", "remove", fid)
    assert removed.returncode == 0 and "removed" in removed.stdout
    for done in (inside, typo, on_file, around, nested, foreign, added, removed):
        assert "Traceback" not in done.stderr


def test_bad_settings_and_targets_are_clear_errors(tmp_path: Path, embedded: Imagecache) -> None:
    port = Imagecache({**embedded.env, "IMAGECACHE_PORT": "99999"}).run("serve")
    data = Imagecache({**embedded.env, "IMAGECACHE_DATA": "/proc/imagecache"}).run("jobs", "list")
    export = embedded.run("replay", "export", str(tmp_path / "no-such-dir" / "log.jsonl"))
    history = embedded.run("replay", "history", "--job", "no-such-job")
    assert port.returncode == 1 and "IMAGECACHE_PORT='99999' is out of range" in port.stderr
    assert data.returncode == 1 and "cannot create the data folder" in data.stderr
    assert "IMAGECACHE_DATA" in data.stderr
    assert export.returncode == 1 and "cannot write" in export.stderr
    assert not (tmp_path / "no-such-dir").exists()
    assert history.returncode == 1 and "no events for job no-such-job" in history.stderr
    for done in (port, data, export, history):
        assert "Traceback" not in done.stderr

    # And an export that works leaves the whole file and no partial one
    out = tmp_path / "log.jsonl"
    assert embedded.run("replay", "export", str(out)).returncode == 0
    assert out.exists() and not (tmp_path / "log.jsonl.part").exists()


def test_a_broker_that_does_not_answer_is_a_clear_error(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a RABBITMQ_URL where nothing listens (with a password in it)
    env = dict(embedded.env, RABBITMQ_URL="amqp://guest:hunter2@127.0.0.1:1/%2F")
    ic = Imagecache(env)
    result = ic.run("up", "--no-serve")
    # Then one clear line says what and what to do, without the password or a traceback
    assert result.returncode == 1
    assert "RabbitMQ at amqp://guest:***@127.0.0.1:1/%2F did not answer" in result.stderr
    assert "correct RABBITMQ_URL" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr

    # And commands that only read still work while the broker is down
    for args in (("jobs", "list"), ("folders", "list"), ("collections", "list")):
        read = ic.run(*args)
        assert read.returncode == 0, read.stderr[-2000:]
    # And one that must publish says the broker failed, and that nothing planned is lost
    lib = tmp_path / "library"
    make_library(lib)
    ic = Imagecache(dict(env, IMAGECACHE_LIBRARY_ROOTS=str(lib)))
    added = ic.run("collections", "add", str(lib))
    assert added.returncode == 0, added.stderr[-2000:]
    publish = ic.run("regenerate", "--all")
    assert publish.returncode == 1
    assert "the message broker failed" in publish.stderr and "imagecache recover" in publish.stderr
    assert "hunter2" not in publish.stderr and "Traceback" not in publish.stderr


def test_failed_and_held_back_images_are_visible(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a library with one corrupt file, generated, with quarantine after one failure
    lib = tmp_path / "library"
    make_library(lib)
    ic = Imagecache(dict(embedded.env, IMAGECACHE_QUARANTINE_AFTER="1"))
    first = json.loads(ic.run("up", str(lib), "--no-serve", "--json").stdout)
    assert first["failed"] == 2 and first["quarantined"] == 0

    # When the failures of the job are asked for, and up runs again
    jobs = json.loads(ic.run("jobs", "list", "--json").stdout)["jobs"]
    (job,) = [j for j in jobs if j["failed"]]
    failures = ic.run("jobs", "failures", job["id"])
    again = ic.run("up", str(lib), "--no-serve")

    # Then each failed image is listed with its class and message
    assert failures.returncode == 0, failures.stderr
    assert failures.stdout.count("broken.jpg") == 2 and "corrupt" in failures.stdout
    # And the second run says the corrupt image is held back, and how to try it again
    assert again.returncode == 0, again.stderr
    assert "1 images held back" in again.stdout and "regenerate --force" in again.stdout
    assert "everything else was already current" in again.stdout


def test_folders_change_and_output_into_a_closed_pipe(tmp_path: Path, embedded: Imagecache) -> None:
    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    (folder,) = json.loads(embedded.run("folders", "list", "--json").stdout)

    # When a folder's priority changes, its capacity stays
    changed = embedded.run("folders", "change", folder["id"], "--priority", "5", "--json")
    assert changed.returncode == 0, changed.stderr
    view = json.loads(changed.stdout)
    assert view["priority"] == 5 and view["capacity_bytes"] == folder["capacity_bytes"]

    # When a long listing is cut short by its reader (`| head -1`), no traceback follows
    import subprocess
    import sys

    from PIL import Image

    from tests.e2e.conftest import REPO

    many = lib / "many"
    many.mkdir()
    for i in range(1500):  # ~150 KB of listing: more than a pipe holds
        Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(many / f"picture-{i:05}.jpg")
    ic = Imagecache(dict(embedded.env, IMAGECACHE_LIBRARY_ROOTS=str(lib)))
    (added,) = json.loads(ic.run("collections", "add", str(many), "--json").stdout)
    piped = subprocess.run(
        f"{sys.executable} -m ops.cli collections images {added['id']} | head -1",
        shell=True, cwd=REPO, env=ic.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.stdout.count("\n") == 1
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


def test_embedded_serve_runs_the_work_its_api_plans(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library and `serve` in embedded mode, started without --worker
    import urllib.request

    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    (cid, *_) = [c["id"] for c in json.loads(embedded.run("collections", "list", "--json").stdout)]
    port = _free_port()
    server = embedded.start("serve", "--port", str(port))
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        token_file = tmp_path / "var" / "api-token"

        def call(path: str, body: dict[str, object] | None = None) -> dict[str, object]:
            request = urllib.request.Request(
                f"{base}{path}", method="POST" if body is not None else "GET",
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": f"Bearer {token_file.read_text().strip()}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as answer:
                return dict(json.loads(answer.read()))

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                call("/health")
                break
            except OSError:
                time.sleep(0.2)

        # When the API plans a forced regenerate of one collection
        planned = call("/cache/regenerate", {"collections": [cid], "force": True})
        (job,) = planned["jobs"]  # type: ignore[misc]
        job_id = job["job_id"]

        # Then this server runs it to the end: nothing else could, in embedded mode
        status = ""
        while time.monotonic() < deadline and status != "finished":
            status = str(call(f"/cache/processing-jobs/{job_id}")["status"])
            time.sleep(0.2)
        assert status == "finished"
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)

    # And SIGTERM stops it cleanly: its database and render processes with it, nothing leaked
    assert server.returncode == 0, out[-3000:]
    assert "leaked" not in out and "Traceback" not in out
    import subprocess

    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_regenerate_wait_says_how_its_jobs_ended(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library whose only cache folder is then made full
    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    (folder,) = json.loads(embedded.run("folders", "list", "--json").stdout)
    assert embedded.run("folders", "change", folder["id"], "--capacity", "1").returncode == 0

    # When a forced regenerate waits for its jobs
    done = embedded.run("regenerate", "--all", "--force", "--wait")

    # Then it says each job paused, and why, and exits 1
    assert done.returncode == 1, done.stdout + done.stderr
    assert ": paused (no_space: every cache folder is full" in done.stdout
    jobs = json.loads(embedded.run("jobs", "list", "--status", "paused", "--json").stdout)
    assert jobs["jobs"] and all(j["pause_reason"].startswith("no_space") for j in jobs["jobs"])


def test_maintenance_commands_speak_plainly(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library, one of whose cache files is then lost
    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    (folder,) = json.loads(embedded.run("folders", "list", "--json").stdout)
    lost = next(p for p in Path(folder["path"], "cache").rglob("*") if p.is_file())
    lost.unlink()

    # When the maintenance tasks run from the command line, without --json
    repair = embedded.run("repair")
    again = embedded.run("repair")
    alerts = embedded.run("alerts")
    verbose = embedded.run("-v", "folders", "list")
    jobs = embedded.run("jobs", "list")
    embedded.run("up", str(lib), "--no-serve")  # runs the repair's job: the folder is whole
    assert embedded.run("folders", "change", folder["id"], "--capacity", "1").returncode == 0
    evict = embedded.run("evict")
    idle = embedded.run("evict")

    # Then each says what it did in words, not JSON
    for r in (repair, again, alerts, evict, idle):
        assert r.returncode == 0, r.stderr[-2000:]
        assert "{" not in r.stdout, r.stdout
    assert (
        "1 rendition has lost its file and is not made again yet (1 found now, 0 earlier)"
        in repair.stdout
    )
    (job,) = [ln.split()[2] for ln in repair.stdout.splitlines() if ln.startswith("planned job")]
    # A second repair before that job ran plans nothing new: the job will make the file
    assert "(0 found now, 1 earlier)" in again.stdout
    assert f"already queued in unfinished job {job}" in again.stdout
    assert "planned job" not in again.stdout
    assert "no new alert" in alerts.stdout
    # And jobs are listed with their collection's name
    assert jobs.stdout.split()[:3] == ["ID", "STATUS", "COLLECTION"] and "album-0" in jobs.stdout
    # And -v adds our own lines, not every command pymongo sends (160 lines for this one)
    assert verbose.returncode == 0 and "imagecache.embedded" in verbose.stderr
    assert "pymongo" not in verbose.stderr and len(verbose.stderr.splitlines()) < 10
    files = len([p for p in Path(folder["path"]).rglob("*.*") if p.name != MARKER_NAME])
    assert files == 0 and f"{folder['path']}: evicted " in evict.stdout
    assert "no cache folder is over 95% of its capacity" in idle.stdout


def test_regenerate_wait_runs_the_job_an_earlier_regenerate_left(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given an embedded library with a job planned by a regenerate that did not wait for it
    lib = tmp_path / "library"
    make_library(lib)
    embedded = Imagecache({**embedded.env, "IMAGECACHE_LIBRARY_ROOTS": str(lib)})
    assert embedded.run("collections", "add", str(lib)).returncode == 0
    planned = json.loads(embedded.run("regenerate", "--all", "--json").stdout)
    first = [j["job_id"] for j in planned["jobs"]]
    assert first and planned["queued"] == 0

    # When the same request is made again, waiting
    again = embedded.run("regenerate", "--all", "--wait", "--json")

    # Then it plans nothing new: it runs the earlier jobs, to an outcome for every image
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout)
    assert result["jobs"] == [] and sorted(result["queued_in"]) == sorted(first)
    assert result["queued"] == sum(j["to_process"] for j in planned["jobs"])
    final = {v["id"]: v for v in result["final"]}
    assert set(final) == set(first)
    for job in planned["jobs"]:
        view = final[job["job_id"]]
        assert view["status"] == "finished"
        assert view["generated"] + view["failed"] == 2 * job["to_process"]


def test_the_scheduler_repairs_a_lost_file_once_and_stops_cleanly(
    tmp_path: Path, distributed: Imagecache
) -> None:
    # Given a library generated through RabbitMQ, one of whose cache files is then lost
    lib = tmp_path / "library"
    make_library(lib)
    worker = distributed.start("worker", "--threads", "2")
    scheduler = None
    try:
        _summary(distributed.run("up", str(lib), "--no-serve", "--no-worker", "--json"))
        jobs_before = json.loads(distributed.run("jobs", "list", "--json").stdout)["total"]
        cache = tmp_path / "var" / "cache"
        lost = next(p for p in sorted(cache.rglob("*.jpg")))
        lost.unlink()

        # When the scheduler runs, with repair every 2 s and the other tasks off but recover
        every = {f"IMAGECACHE_{t}_EVERY": "0" for t in ("ALERTS", "CAPACITY", "RECONCILE")}
        scheduler = Imagecache(
            {
                **distributed.env,
                **every,
                "IMAGECACHE_REPAIR_EVERY": "2",
                "IMAGECACHE_CLEANUP_EVERY": "0",
            }
        ).start("scheduler")
        deadline = time.monotonic() + 90
        while not lost.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(4.5)  # two more repairs, which find nothing
    finally:
        if scheduler is not None:
            scheduler.send_signal(signal.SIGTERM)
            log, _ = scheduler.communicate(timeout=30)
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)

    # Then the workers made the file again, from one job: repairs while it ran planned no other
    assert lost.exists()
    jobs_after = json.loads(distributed.run("jobs", "list", "--json").stdout)["total"]
    assert jobs_after == jobs_before + 1
    # And the scheduler said what it runs and what it did, and stopped cleanly on SIGTERM
    assert scheduler.returncode == 0, log[-3000:]
    assert "imagecache.scheduler: maintenance: recover every 60 s, repair every 2 s," in log
    assert "off: alerts (IMAGECACHE_ALERTS_EVERY=0)" in log
    assert log.count("repair done: {'missing': 1, 'found_now': 1") == 1, log[-3000:]
    assert "Traceback" not in log


def test_commands_beside_an_embedded_serve_leave_the_work_to_it(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a generated library and an embedded serve: the runner of this data folder
    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    port = _free_port()
    server = Imagecache({**embedded.env, "IMAGECACHE_SCAN_EVERY": "3"}).start(
        "serve", "--port", str(port)
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "var" / "embedded.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # serve has its worker once it printed; the CLI finds its database

        # When another command plans work without waiting, one waits, and one recovers
        planned = json.loads(embedded.run("regenerate", "--all", "--force", "--json").stdout)
        waited = embedded.run("regenerate", "--all", "--force", "--wait")
        recover = embedded.run("recover")
        jobs = [j["job_id"] for j in planned["jobs"]]
        views: dict[str, str] = {}
        while time.monotonic() < deadline and set(views.values()) != {"finished"}:
            listed = json.loads(embedded.run("jobs", "list", "--json").stdout)["jobs"]
            views = {j["id"]: j["status"] for j in listed if j["id"] in jobs}
            time.sleep(0.5)

        # And when a new album appears in the library while serve runs
        album = lib / "new-album"
        album.mkdir()
        for i in range(3):
            Image.new("RGB", (640, 480), (10, 40 * i, 200)).save(album / f"n{i}.jpg")
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline + 30 and not found:
            listed = json.loads(embedded.run("collections", "list", "--json").stdout)
            found = [c for c in listed if c["path"] == str(album) and c["images"] == 3]
            time.sleep(0.5)
        assert found, "serve's scan task did not find the new album"
        images: list[dict[str, object]] = []
        while time.monotonic() < deadline + 60:
            shown = embedded.run("collections", "images", str(found[0]["id"]), "--json")
            images = json.loads(shown.stdout)
            statuses = {str(r["status"]) for i in images for r in i["renditions"].values()}  # type: ignore[attr-defined]
            if statuses == {"current"}:
                break
            time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)

    # Then serve ran them all: the first command's jobs (its messages never left it), and the
    # second's, which waited for serve, saying so
    assert len(views) == len(jobs) > 0 and set(views.values()) == {"finished"}, views
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert "waiting for imagecache process " in waited.stderr
    assert waited.stdout.count(": finished:") == len(jobs)
    assert recover.returncode == 0 and "runs the work of this data folder" in recover.stderr
    assert server.returncode == 0, out[-3000:]
    assert "picked up" in out
    # And serve ran the scan task itself, which made the new album's renditions
    assert "scan every 3 s" in out and "imagecache.scheduler: maintenance:" in out
    assert len(images) == 3 and statuses == {"current"}, images


def test_an_embedded_scheduler_alone_runs_the_work_its_tasks_plan(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given an embedded library, one of whose cache files is lost, and nothing running
    lib = tmp_path / "library"
    make_library(lib)
    assert embedded.run("up", str(lib), "--no-serve").returncode == 0
    lost = next(p for p in sorted((tmp_path / "var" / "cache").rglob("*.jpg")))
    lost.unlink()

    # When the scheduler runs alone, with repair every 2 s
    off = {f"IMAGECACHE_{t}_EVERY": "0" for t in ("ALERTS", "CAPACITY", "RECONCILE", "SCAN")}
    env = {**embedded.env, **off, "IMAGECACHE_REPAIR_EVERY": "2", "IMAGECACHE_CLEANUP_EVERY": "0"}
    scheduler = Imagecache(env).start("scheduler")
    try:
        deadline = time.monotonic() + 90
        while not lost.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        log, _ = scheduler.communicate(timeout=60)

    # Then it ran the repair's job itself (it became the runner: nothing else would), and
    # left recover to its own pick-up
    assert lost.exists(), log[-3000:]
    assert scheduler.returncode == 0, log[-3000:]
    assert "recover every" not in log and "repair every 2 s" in log

"""Chaos: kill workers, restart the broker and the database, fill a disk, plant debris.

Each test runs against the real RabbitMQ and MongoDB-wire server started by
./ops/test, with real worker processes, and is bounded in time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import check_invariants, small_library, stop, wait_for_progress
from tests.e2e.conftest import REPO, Imagecache

pytestmark = pytest.mark.e2e


def _worker(ic: Imagecache) -> subprocess.Popen[str]:
    return ic.start("worker", "--processes", "1", "--threads", "2")


def _up_background(ic: Imagecache, lib: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ic_cmd(), "up", str(lib), "--no-serve", "--no-worker", "--json"],
        cwd=REPO, env=ic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def ic_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "ops.cli"]


def _finish(up: subprocess.Popen[str], timeout: float = 300) -> dict[str, int]:
    out, err = up.communicate(timeout=timeout)
    assert up.returncode == 0, err[-3000:]
    return dict(json.loads(out))


def test_kill_worker_twenty_times_mid_job(tmp_path: Path, distributed: Imagecache) -> None:
    # Given a job of 2,000 images and one worker process
    lib = small_library(tmp_path / "library", 2000)
    ic = Imagecache(dict(distributed.env, IMAGECACHE_BATCH_SIZE="4"))
    worker = _worker(ic)
    up = _up_background(ic, lib)
    rng = random.Random(7)
    try:
        wait_for_progress(ic.env, 1)
        # When the worker is killed with SIGKILL 20 times at random moments, restarted each time
        for _ in range(20):
            time.sleep(rng.uniform(0.3, 1.2))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            worker = _worker(ic)
        # (the kills really were mid-job: work was still left after the last one)
        assert wait_for_progress(ic.env, 0) < 4000
        summary = _finish(up)
    finally:
        out = stop(worker)
    # Then the job finished, nothing was lost or counted twice, nothing half-written remains
    assert summary["generated"] == 4000 and summary["failed"] == 0, out[-2000:]
    jobs = check_invariants(ic, tmp_path / "var" / "cache")
    assert [j["status"] for j in jobs["jobs"]] == ["finished"]


@pytest.mark.parametrize("service", ["rabbitmq", "mongo"])
def test_restart_a_service_mid_job(
    tmp_path: Path, distributed: Imagecache, services_dir: Path, service: str
) -> None:
    # Given a job under way
    lib = small_library(tmp_path / "library", 600)
    ic = Imagecache(dict(distributed.env, IMAGECACHE_BATCH_SIZE="4"))
    worker = _worker(ic)
    up = _up_background(ic, lib)
    try:
        wait_for_progress(ic.env, 100)
        # When the service restarts
        restart = subprocess.run(
            [str(REPO / "ops" / "services" / service), "restart", str(services_dir / service)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert restart.returncode == 0, restart.stderr
        # Then the workers reconnect and the job finishes exactly once
        summary = _finish(up)
    finally:
        out = stop(worker)
    assert summary["generated"] == 1200 and summary["failed"] == 0, out[-3000:]
    check_invariants(ic, tmp_path / "var" / "cache")


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        if os.environ.get("IMAGECACHE_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
            pytest.fail(f"cannot mount a small filesystem: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")


def test_cache_folder_out_of_space_pauses_then_completes(
    tmp_path: Path, distributed: Imagecache
) -> None:
    # Given the only cache folder is a 1 MiB filesystem, too small for the job
    small = tmp_path / "small"
    _mount_tmpfs(small, "1m")
    try:
        lib = small_library(tmp_path / "library", 80, size=(1600, 1200))
        ic = Imagecache(dict(distributed.env, IMAGECACHE_CACHE_DIR=str(small)))
        worker = _worker(ic)
        try:
            # When the job runs, the folder fills: the job pauses, nothing is half-written
            summary = json.loads(
                ic.run("up", str(lib), "--no-serve", "--no-worker", "--json").stdout
            )
            jobs = json.loads(ic.run("jobs", "list", "--json").stdout)["jobs"]
            assert [j["status"] for j in jobs] == ["paused"]
            assert summary["generated"] < 160
            assert not [p for p in small.rglob("*") if p.name.endswith(".tmp-imagecache")]

            # When space is freed (the filesystem grows), recovery resumes the job
            subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
            assert ic.run("recover").returncode == 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                jobs = json.loads(ic.run("jobs", "list", "--json").stdout)["jobs"]
                if jobs[0]["status"] == "finished":
                    break
                time.sleep(1)
        finally:
            stop(worker)
        # Then it completes, exactly once
        assert jobs[0]["status"] == "finished", jobs
        assert jobs[0]["generated"] == 160 and jobs[0]["failed"] == 0
        check_invariants(ic, small)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_cleanup_and_reconcile_fix_planted_debris(tmp_path: Path, embedded: Imagecache) -> None:
    # Given a generated library
    lib = small_library(tmp_path / "library", 30)
    cache = tmp_path / "var" / "cache"
    assert embedded.run("up", str(lib), "--no-serve", "--json").returncode == 0
    # And planted files imagecache never wrote (old; one with a layout-looking name), and
    # deleted rendition files, and so wrong statistics
    old = time.time() - 10 * 86_400
    stray = cache / "cache" / "ab" / "cd" / ("abcd" + "0" * 28 + ".jpg")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x" * 1000)
    junk = cache / "notes.txt"
    junk.write_bytes(b"y" * 500)
    for p in (stray, junk):
        os.utime(p, (old, old))
    files = sorted(p for p in (cache / "thumbnail").rglob("*.jpg"))
    for p in files[:3]:
        p.unlink()

    # When reconcile runs, the missing files are recorded one by one; the planted files are
    # not imagecache's: they are counted as foreign, not measured as cache files
    report = json.loads(embedded.run("reconcile", "--json").stdout)
    before = report["folders"][0]
    assert report["missing_files"] == 3
    assert not before["drift"] and before["foreign"] == 2
    # And cleanup, dry or not, deletes neither of them: it reports them as foreign
    dry = json.loads(embedded.run("cleanup", "--dry-run", "--json").stdout)
    done = json.loads(embedded.run("cleanup", "--json").stdout)
    for report in (dry, done):
        assert report["folders"][0]["files"] == 0 and report["foreign"] == 2
    assert stray.exists() and junk.exists()
    # And repair re-plans the missing files
    repaired = json.loads(embedded.run("repair", "--json").stdout)
    assert repaired["missing"] == 3
    assert embedded.run("up", str(lib), "--no-serve", "--json").returncode == 0

    # Then the files are back, statistics match the disk and equal a fresh replay
    assert all(p.exists() for p in files[:3])
    after = json.loads(embedded.run("reconcile", "--json").stdout)["folders"][0]
    assert not after["drift"]
    assert embedded.run("replay", "verify").returncode == 0


def test_cleanup_keeps_the_only_copy_of_a_changed_spec_until_it_is_replaced(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a generated library
    lib = small_library(tmp_path / "library", 12)
    cache = tmp_path / "var" / "cache"
    assert embedded.run("up", str(lib), "--no-serve", "--json").returncode == 0
    made = sorted(cache.rglob("*.jpg"))
    assert len(made) == 24

    # When cleanup runs under another cache quality than the files were made with
    changed = Imagecache({**embedded.env, "IMAGECACHE_CACHE_QUALITY": "84"})
    report = json.loads(changed.run("cleanup", "--older-than-days", "0", "--json").stdout)
    plain = changed.run("cleanup", "--dry-run", "--older-than-days", "0").stdout

    # Then it deletes nothing: the 12 cache images are stale but the only copies there are
    assert report["folders"][0]["files"] == 0 and report["stale_kept"] == 12
    assert "imagecache regenerate" in report["hint"] and "imagecache regenerate" in plain
    assert sorted(cache.rglob("*.jpg")) == made

    # And once a regenerate has made them at a new name (WebP), the old files are orphans
    webp = Imagecache({**embedded.env, "IMAGECACHE_FORMAT": "webp"})
    assert webp.run("up", str(lib), "--no-serve", "--json").returncode == 0
    assert len(list(cache.rglob("*.webp"))) == 24
    done = json.loads(webp.run("cleanup", "--older-than-days", "0", "--json").stdout)
    assert done["folders"][0]["by_reason"] == {"orphan": 24} and done["stale_kept"] == 0
    assert not list(cache.rglob("*.jpg")) and len(list(cache.rglob("*.webp"))) == 24
    assert webp.run("replay", "verify").returncode == 0


def test_ctrl_c_stops_up_at_once_and_the_next_run_finishes(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given the main job in embedded mode, started from a terminal (its own process group)
    from tests.e2e.conftest import outcomes_by_image

    lib = small_library(tmp_path / "library", 300, size=(1600, 1200))
    cache = tmp_path / "var" / "cache"
    first = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "up", str(lib), "--no-serve"], cwd=REPO,
        env=embedded.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.jpg"))) < 40:
        time.sleep(0.1)

    # When Ctrl-C is pressed: SIGINT to the whole foreground process group
    os.killpg(first.pid, signal.SIGINT)
    pressed = time.monotonic()
    out, _ = first.communicate(timeout=60)
    took = time.monotonic() - pressed

    # Then up stops within seconds, says what to do, prints no traceback, leaves no process
    assert first.returncode == 130, out[-3000:]
    assert took < 10, f"took {took:.1f} s to stop"
    assert "interrupted; the next `imagecache up` finishes what is left" in out
    assert "Traceback" not in out
    assert len(list(cache.rglob("*.jpg"))) < 600, "Ctrl-C must land mid-job"
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "no render or database process outlives up"

    # And the next run finishes exactly what was left
    again = embedded.run("up", str(lib), "--no-serve", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    outcomes = outcomes_by_image(embedded.env)
    assert len(outcomes) == 600 and all(len(v) == 1 for v in outcomes.values())


def test_an_unreadable_archive_is_reported_and_the_rest_of_the_library_processed(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a library with a good folder and an archive that is not a ZIP
    lib = small_library(tmp_path / "library", 6)
    (lib / "broken.cbz").write_bytes(b"not a zip at all")

    # When up runs, and then a scan of every collection
    done = embedded.run("up", str(lib), "--no-serve", "--json")
    scan = embedded.run("collections", "scan")

    # Then the folder is generated, and the archive reported as unreadable, with what to do
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["generated"] == 12 and summary["failed"] == 0
    (error,) = summary["unreadable_collections"].values()
    assert (
        "broken.cbz is not a readable ZIP archive" in error
        and "imagecache collections remove" in error
    )
    assert "broken.cbz is not a readable ZIP archive" in done.stderr
    # And a scan says so too, exits 1, and still scans the other collection
    assert scan.returncode == 1 and "not a readable ZIP archive" in scan.stderr
    assert "Traceback" not in scan.stderr + done.stderr
    assert len(scan.stdout.strip().splitlines()) >= 3  # header + both collections

    # And once the user removes that collection, up and scans leave it out
    (broken_id,) = summary["unreadable_collections"]
    removed = embedded.run("collections", "remove", broken_id)
    again = embedded.run("up", str(lib), "--no-serve", "--json")
    rescan = embedded.run("collections", "scan")
    assert removed.returncode == 0 and f"removed collection {broken_id}" in removed.stdout
    assert again.returncode == 0 and json.loads(again.stdout)["unreadable_collections"] == {}
    assert rescan.returncode == 0, rescan.stderr[-2000:]


def test_embedded_up_killed_mid_job_resumes_only_what_is_left(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given the main job in embedded mode, killed with SIGKILL while generating
    from tests.e2e.conftest import outcomes_by_image

    lib = small_library(tmp_path / "library", 400)
    first = embedded.start("up", str(lib), "--no-serve", "--json")
    cache = tmp_path / "var" / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.jpg"))) < 100:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    made_before = len(list(cache.rglob("*.jpg")))
    assert 100 <= made_before < 800, "the kill must land mid-job"
    logged = outcomes_by_image(embedded.env)
    logged_before = len(logged)
    # A write the kill cut short, as the killed process names it (whether or not the kill
    # happened to land in one): a rendition of an image the log knows
    host = socket.gethostname().replace(".", "_")
    image = str(next(iter(logged.values()))[0]["image_id"])
    cut = (
        cache / "cache" / image[:2] / image[2:4]
        / f".{image}.jpg.{host}.{first.pid}.1.tmp-imagecache"
    )  # fmt: skip
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(b"half a picture")

    # When it runs again
    again = embedded.run("up", str(lib), "--no-serve", "--json")

    # Then the interrupted job is resumed (not planned again) and every image has exactly one
    # outcome per rendition, across both runs
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert summary["jobs"] == 0, "nothing is left for a new job: the old one was resumed"
    # And its summary counts what this run did for the resumed job
    assert summary["resumed_jobs"] == 1
    assert summary["generated"] == 800 - logged_before and summary["failed"] == 0
    outcomes = outcomes_by_image(embedded.env)
    assert len(outcomes) == 800 and all(len(v) == 1 for v in outcomes.values())
    assert all(v[0]["type"] == "RenditionGenerated" for v in outcomes.values())
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp-imagecache")]
    assert embedded.run("replay", "verify").returncode == 0
    reconcile = json.loads(embedded.run("reconcile", "--json").stdout)
    assert not [f for f in reconcile["folders"] if f["drift"]]

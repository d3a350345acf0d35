"""Helpers for the chaos tests: libraries, waiting, and the invariant checks."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pymongo
from PIL import Image

from tests.e2e.conftest import Imagecache, distributed, embedded

__all__ = ["distributed", "embedded"]  # the fixtures, shared with the e2e tests

TERMINAL = ["RenditionGenerated", "RenditionSkipped", "RenditionFailed"]


def small_library(root: Path, count: int, size: tuple[int, int] = (320, 240)) -> Path:
    """One collection of `count` small, distinct JPEGs."""
    album = root / "album"
    album.mkdir(parents=True)
    base = Image.new("RGB", size)
    for i in range(count):
        base.paste((i % 256, (i * 7) % 256, (i * 13) % 256), (0, 0, size[0], size[1]))
        base.save(album / f"{i:05}.jpg", quality=80)
    return root


def wait_for_progress(env: dict[str, str], at_least: int, timeout: float = 120) -> int:
    """Wait until the log holds at least `at_least` outcomes; return how many."""
    db = pymongo.MongoClient(env["MONGODB_URI"])[env["IMAGECACHE_DB"]]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = db.events.count_documents({"type": {"$in": TERMINAL}})
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} outcomes after {timeout}s")


def check_invariants(ic: Imagecache, cache: Path, *, kinds: int = 2) -> dict[str, Any]:
    """Exactly one outcome per planned (job, image, kind); projections equal a replay;
    folder statistics equal the disk; no partial file. Returns the job views."""
    db = pymongo.MongoClient(ic.env["MONGODB_URI"])[ic.env["IMAGECACHE_DB"]]
    planned: dict[str, set[str]] = {}
    for e in db.events.find({"type": "JobImagesPlanned"}):
        planned.setdefault(e["data"]["job_id"], set()).update(e["data"]["image_ids"])
    outcomes = Counter(
        (e["data"]["job_id"], e["data"]["image_id"], e["data"]["kind"])
        for e in db.events.find({"type": {"$in": TERMINAL}})
    )
    assert set(outcomes.values()) <= {1}, "an outcome was counted twice"
    for job, images in planned.items():
        got = {(i, k) for (j, i, k) in outcomes if j == job}
        assert len(got) == len(images) * kinds, f"job {job}: {len(got)} of {len(images) * kinds}"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp-imagecache")]
    verify = ic.run("replay", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    reconcile = ic.run("reconcile", "--json")
    assert reconcile.returncode == 0, reconcile.stderr
    drift = [f for f in json.loads(reconcile.stdout)["folders"] if f["drift"]]
    assert not drift, f"folder statistics differ from the disk: {drift}"
    jobs = ic.run("jobs", "list", "--json")
    return dict(json.loads(jobs.stdout))


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=timeout)
    return out

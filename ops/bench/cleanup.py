"""`imagecache bench cleanup`: the orphan-cleanup scan of a folder of --files files.

A cache folder of --files small files in the rendition layout, each written by imagecache
as the log says (a `RenditionGenerated` of that folder and path): half of them still
referenced, the other half orphans (their image was generated again under another name);
timed: `cleanup --dry-run` (walk, compare, classify, and the log lookup that proves each
orphan is imagecache's). Baseline in the same run: a bare walk with stat of the same tree
(os.walk + stat, what any scan must at least do).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from domain import events as ev
from domain.events import StoredEvent, stored
from domain.ids import rendition_relpath
from ops import maintenance
from ops.bench.common import embedded_env, report
from ops.bootstrap import bootstrap
from ops.library import add_folder
from ops.settings import Settings


def _make_tree(root: Path, count: int) -> list[tuple[str, str]]:
    """`count` one-byte files in the layout, a month old: (image id, relpath) of each."""
    made = []
    old = time.time() - 30 * 86_400
    for n in range(count):
        image = uuid.uuid4().hex
        rel = rendition_relpath("thumbnail", image, "jpg")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (old, old))
        made.append((image, rel))
        if n % 50_000 == 0 and n:
            print(f"  {n:,} files made", flush=True)
    return made


def _log_writes(app: Any, fid: str, made: list[tuple[str, str]]) -> None:
    """The log of those files, as generation writes it (stored in bulk, then projected): a
    `RenditionGenerated` each; for the second half another one under a WebP name, which
    makes the first an orphan."""
    spec = app.settings.specs["thumbnail"].hash
    seq = app.events.head()
    now = time.time()
    records: list[StoredEvent] = []

    def generated(job: str, image: str, rel: str) -> ev.RenditionGenerated:
        return ev.RenditionGenerated(job, image, "bench", "thumbnail", fid, rel, 1, 1, 1, 1, spec,
                                     1, 1.0)  # fmt: skip

    for n, (image, rel) in enumerate(made):
        events = [generated("bench", image, rel)]
        if n >= len(made) // 2:  # made again in WebP, by a later job
            webp = rendition_relpath("thumbnail", image, "webp")
            events.append(generated("bench-webp", image, webp))
        for e in events:
            seq += 1
            records.append(stored(e, seq, now))
        if len(records) >= 10_000:
            app.db.events.insert_many([{"_id": r.seq, **r.to_record()} for r in records])
            records = []
    if records:
        app.db.events.insert_many([{"_id": r.seq, **r.to_record()} for r in records])
    app.db.counters.update_one({"_id": "events"}, {"$max": {"n": seq}}, upsert=True)
    app.projector.catch_up()


def _bare_walk(root: Path) -> int:
    n = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(dirpath, name))
            n += 1
    return n


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench cleanup")
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="icbench-") as data:
        env = embedded_env(data)
        folder = Path(data) / "cache"
        with bootstrap(Settings.from_env(env)) as app:
            # Added empty, then filled: a folder holding files it did not write is refused.
            fid = add_folder(app, folder)
            made = _make_tree(folder, args.files)
            _log_writes(app, fid, made)
            started = time.perf_counter()
            walked = _bare_walk(folder)
            bare = walked / (time.perf_counter() - started)
            started = time.perf_counter()
            result = maintenance.cleanup(app, dry_run=True, older_than_days=7)
            seconds = time.perf_counter() - started
    found = result["folders"][0]["files"]
    figures = {
        "files": len(made),
        "orphans_found": found,
        "cleanup_files_per_s": round(walked / seconds),
        "bare_walk_files_per_s": round(bare),
        "ratio": round((walked / seconds) / bare, 3),
        "seconds": round(seconds, 2),
    }
    rows = [
        (
            f"cleanup --dry-run, {walked:,} files",
            f"{walked / seconds:,.0f} files/s",
            f"{found:,} orphans found in {seconds:.1f} s",
        ),
        ("bare os.walk + stat", f"{bare:,.0f} files/s", "baseline"),
        ("ratio", f"{(walked / seconds) / bare:.2f}", ""),
    ]
    report(rows, figures, args.json)
    return 0

"""`imagecache bench cleanup`: the orphan-cleanup scan of a folder of --files files.

A cache folder of --files small files in the rendition layout, half of them referenced
by the `renditions` read model, the other half orphans; timed: `cleanup --dry-run`
(walk, compare, classify). Baseline in the same run: a bare walk with stat of the same
tree (os.walk + stat, what any scan must at least do).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from domain.ids import rendition_relpath
from ops import maintenance
from ops.bench.common import embedded_env, report
from ops.bootstrap import bootstrap
from ops.library import add_folder
from ops.settings import Settings


def _make_tree(root: Path, count: int) -> list[tuple[str, str]]:
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
        made = _make_tree(folder, args.files)
        with bootstrap(Settings.from_env(env)) as app:
            fid = add_folder(app, folder)
            app.projector.catch_up()
            docs: list[dict[str, Any]] = [
                {"_id": f"{image}:thumbnail", "image_id": image, "kind": "thumbnail",
                 "folder_id": fid, "path": rel, "bytes": 1, "spec_hash": app.settings.specs[
                     "thumbnail"].hash, "collection_id": "c", "deleted": False}
                for image, rel in made[: len(made) // 2]
            ]  # fmt: skip
            for n in range(0, len(docs), 10_000):
                app.db.renditions.insert_many(docs[n : n + 10_000])
            started = time.perf_counter()
            walked = _bare_walk(folder)
            bare = walked / (time.perf_counter() - started)
            started = time.perf_counter()
            result = maintenance.cleanup(app, dry_run=True, older_than_days=7)
            seconds = time.perf_counter() - started
    found = result["folders"][0]["files"]
    figures = {
        "files": walked,
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

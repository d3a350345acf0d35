"""`imagecache bench pipeline`: the whole pipeline against the raw kernel, in one run.

Three figures on the same 12-megapixel set (ops/bench/make_12mp.py):

- raw kernel, two processes: render cache + thumbnail of every image in a pool of two
  processes, nothing else (the baseline);
- RabbitMQ: `imagecache worker` with two processes, then `imagecache up --no-worker`:
  scan, plan, publish, generate, outcomes in the log, projections caught up;
- embedded: `imagecache up --no-serve` with its own database and in-process actors.

Each pipeline figure is a ratio of the baseline (targets: 90% and 80%): images over the
time from planning to every outcome in the log and projected (what `up` reports as
`pipeline_seconds`), as the baseline counts a pool already started. The whole command,
interpreter and database start-up, scan and shutdown included, is reported beside it.
The RabbitMQ run needs RABBITMQ_URL; MongoDB is MONGODB_URI, or a temporary SecantusDB
daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from actors.pool import render_member, tune_process
from actors.sources import MAX_SOURCE_BYTES, SourceRef
from domain.specs import DEFAULT_SPECS
from ops.bench.common import embedded_env, report
from ops.bench.make_12mp import bench_dir, make_set

REPO = Path(__file__).resolve().parents[2]


def _render_one(path: str) -> int:
    ref = SourceRef(str(Path(path).parent), "folder", Path(path).name)
    out = render_member(ref, list(DEFAULT_SPECS.values()), 100_000_000, MAX_SOURCE_BYTES)
    return sum(len(r.data) for r in out)


def raw_kernel(paths: list[Path], processes: int) -> float:
    """Images per second of the render kernel alone in `processes` processes."""
    context = multiprocessing.get_context("forkserver")
    with context.Pool(processes, initializer=tune_process) as pool:
        pool.map(_render_one, [str(p) for p in paths[:processes]])  # warm up
        started = time.perf_counter()
        pool.map(_render_one, [str(p) for p in paths], chunksize=1)
        return len(paths) / (time.perf_counter() - started)


@contextlib.contextmanager
def mongo_uri() -> Iterator[str]:
    """MONGODB_URI, or a temporary SecantusDB daemon (its own process, like production)."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    with tempfile.TemporaryDirectory(prefix="icbench-db-") as tmp:
        done = subprocess.run([str(REPO / "ops/services/mongo"), "start", tmp],
                              capture_output=True, text=True, check=True)  # fmt: skip
        env = dict(line.split("=", 1) for line in Path(tmp, "mongo.env").read_text().split()
                   if "=" in line and not line.startswith("#"))  # fmt: skip
        try:
            yield env["MONGODB_URI"]
        finally:
            subprocess.run([str(REPO / "ops/services/mongo"), "stop", tmp], capture_output=True)
            del done


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops.cli", *args]


@dataclass(frozen=True)
class Run:
    """One `imagecache up --no-serve` of the set."""

    images: int
    wall: float  # the whole command: interpreter start, database start, scan ... exit
    pipeline: float  # plan, publish, render, write, outcomes in the log, projections caught up

    @property
    def ips(self) -> float:
        return self.images / self.pipeline

    @property
    def wall_ips(self) -> float:
        return self.images / self.wall


def _up(env: dict[str, str], library: Path, images: int, *extra: str) -> Run:
    started = time.perf_counter()
    done = subprocess.run(_cli("up", str(library), "--no-serve", "--json", *extra), env=env,
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"imagecache up failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    if summary["images"] != images or summary["generated"] != 2 * images:
        raise RuntimeError(f"not everything was generated: {summary}")
    return Run(images, seconds, float(summary["pipeline_seconds"]))


def through_rabbitmq(library: Path, images: int, rabbitmq_url: str) -> Run:
    """`up --no-worker` with two worker processes on RabbitMQ."""
    with mongo_uri() as uri, tempfile.TemporaryDirectory(prefix="icbench-") as data:
        name = uuid.uuid4().hex[:8]
        env = dict(os.environ, MONGODB_URI=uri, RABBITMQ_URL=rabbitmq_url, IMAGECACHE_DATA=data,
                   IMAGECACHE_DB=f"bench_{name}", IMAGECACHE_QUEUE=f"bench-{name}",
                   PYTHONPATH=str(REPO))  # fmt: skip
        worker = subprocess.Popen(_cli("worker", "--processes", "2", "--threads", "2"), env=env,
                                  cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(4)  # both processes connected and consuming
            return _up(env, library, images, "--no-worker")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)


def embedded(library: Path, images: int) -> Run:
    """`imagecache up --no-serve` in embedded mode, from a cold start."""
    with tempfile.TemporaryDirectory(prefix="icbench-") as data:
        env = embedded_env(data, drop=("MONGODB_", "RABBITMQ_", "IMAGECACHE_"))
        env.update(PYTHONPATH=str(REPO), IMAGECACHE_WORKER_PROCESSES="2")
        return _up(env, library, images)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench pipeline")
    parser.add_argument("--count", type=int, default=48, help="12 MP images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    paths = make_set(bench_dir() / "12mp", args.count)
    with tempfile.TemporaryDirectory(prefix="icbench-lib-") as lib:
        library = Path(lib)
        (library / "set").mkdir()
        for p in paths:
            # Hard links (or copies): a symlink leaving its collection is refused by the scanner.
            try:
                os.link(p, library / "set" / p.name)
            except OSError:
                shutil.copyfile(p, library / "set" / p.name)
        base = raw_kernel(paths, 2)
        rabbit_url = os.environ.get("RABBITMQ_URL")
        rabbit = through_rabbitmq(library, len(paths), rabbit_url) if rabbit_url else None
        emb = embedded(library, len(paths))
    figures: dict[str, object] = {"images": len(paths), "kernel_2proc_ips": base}
    rows = [("raw kernel, 2 processes", f"{base:.2f} img/s", "baseline")]
    for name, label, result, target in (
        ("rabbitmq", "RabbitMQ, 2 worker processes", rabbit, 0.9),
        ("embedded", "embedded `up --no-serve`", emb, 0.8),
    ):
        if result is None:
            rows.append((label, "skipped", "set RABBITMQ_URL to measure"))
            figures.update({f"{name}_ips": None, f"{name}_ratio": None})
            continue
        figures.update({
            # Unrounded, so that each ratio can be checked against its two figures.
            f"{name}_ips": result.ips,
            f"{name}_ratio": result.ips / base,
            f"{name}_wall_ips": result.wall_ips,
            f"{name}_wall_ratio": result.wall_ips / base,
        })  # fmt: skip
        rows += [
            (label, f"{result.ips:.2f} img/s",
             f"{100 * result.ips / base:.0f}% of baseline (target >= {100 * target:.0f}%)"),
            ("  whole command, start to exit", f"{result.wall_ips:.2f} img/s",
             f"{100 * result.wall_ips / base:.0f}% ({result.wall:.1f} s; start-up, scan and"
             " shutdown included)"),
        ]  # fmt: skip
    report(rows, figures, args.json)
    return 0

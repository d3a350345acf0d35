"""`imagecache bench pipeline`: the whole pipeline against the raw kernel, in one run.

Three figures on the same 12-megapixel set (ops/bench/make_12mp.py):

- raw kernel, two processes: render cache + thumbnail of every image in a pool of two
  processes, nothing else (the baseline);
- RabbitMQ: `imagecache worker` with two processes, then `imagecache up --no-worker`:
  scan, plan, publish, generate, outcomes in the log, projections caught up;
- embedded: `imagecache up --no-serve` with its own database and in-process actors.

Each pipeline figure is a ratio of the baseline (targets: 90% and 80%). The RabbitMQ run
needs RABBITMQ_URL; MongoDB is MONGODB_URI, or a temporary SecantusDB daemon.
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
from pathlib import Path

from actors.pool import render_member, tune_process
from domain.specs import DEFAULT_SPECS
from ops.bench.common import report
from ops.bench.make_12mp import make_set

REPO = Path(__file__).resolve().parents[2]
SET = REPO / "var" / "bench" / "12mp"


def _render_one(path: str) -> int:
    out = render_member(str(Path(path).parent), "folder", Path(path).name,
                        list(DEFAULT_SPECS.values()), 100_000_000)  # fmt: skip
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


def _up(env: dict[str, str], library: Path, images: int, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(_cli("up", str(library), "--no-serve", "--json", *extra), env=env,
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"imagecache up failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    if summary["images"] != images or summary["generated"] != 2 * images:
        raise RuntimeError(f"not everything was generated: {summary}")
    return seconds


def through_rabbitmq(library: Path, images: int, rabbitmq_url: str) -> float:
    """Images per second end to end with two worker processes on RabbitMQ."""
    with mongo_uri() as uri, tempfile.TemporaryDirectory(prefix="icbench-") as data:
        name = uuid.uuid4().hex[:8]
        env = dict(os.environ, MONGODB_URI=uri, RABBITMQ_URL=rabbitmq_url, IMAGECACHE_DATA=data,
                   IMAGECACHE_DB=f"bench_{name}", IMAGECACHE_QUEUE=f"bench-{name}",
                   PYTHONPATH=str(REPO))  # fmt: skip
        worker = subprocess.Popen(_cli("worker", "--processes", "2", "--threads", "2"), env=env,
                                  cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(4)  # both processes connected and consuming
            return images / _up(env, library, images, "--no-worker")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)


def embedded(library: Path, images: int) -> float:
    """Images per second of `imagecache up --no-serve` in embedded mode, from a cold start."""
    with tempfile.TemporaryDirectory(prefix="icbench-") as data:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MONGODB_", "RABBITMQ_", "IMAGECACHE_"))}  # fmt: skip
        env.update(IMAGECACHE_DATA=data, PYTHONPATH=str(REPO), IMAGECACHE_WORKER_PROCESSES="2")
        return images / _up(env, library, images)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench pipeline")
    parser.add_argument("--count", type=int, default=48, help="12 MP images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    paths = make_set(SET, args.count)
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
    figures = {
        "images": len(paths),
        "kernel_2proc_ips": round(base, 2),
        "rabbitmq_ips": round(rabbit, 2) if rabbit else None,
        "rabbitmq_ratio": round(rabbit / base, 3) if rabbit else None,
        "embedded_ips": round(emb, 2),
        "embedded_ratio": round(emb / base, 3),
    }
    rows = [
        ("raw kernel, 2 processes", f"{base:.2f} img/s", "baseline"),
        (
            "RabbitMQ, 2 worker processes",
            f"{rabbit:.2f} img/s" if rabbit else "skipped",
            f"{100 * rabbit / base:.0f}% of baseline (target >= 90%)"
            if rabbit
            else "set RABBITMQ_URL to measure",
        ),
        (
            "embedded `up --no-serve`",
            f"{emb:.2f} img/s",
            f"{100 * emb / base:.0f}% of baseline (target >= 80%)",
        ),
    ]
    report(rows, figures, args.json)
    return 0

"""Benchmark: serving thumbnails and the jobs list, against a static file server, same run.

`imagecache bench serve [--images N] [--jobs N] [--seconds S] [--connections C]
[--tool auto|wrk|python] [--json]`

Setup: a fresh random-named database (on MONGODB_URI, else a SecantusDB daemon
started for the run by ops/services/mongo), a library of N pictures whose
thumbnails are generated for real, and N jobs planned directly in the log.
Then the API runs in its own process (uvicorn, one worker) and
`python -m http.server` serves the same cache folder, plus the jobs page saved
as a JSON file. A load generator on loopback (wrk when installed, else a
bounded Python one) runs for S seconds per scenario after a warm-up pass:
thumbnails rotate over every generated image, so both servers read the same
files from a warm page cache.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-" + uuid.uuid4().hex
Result = dict[str, Any]


# -- set-up ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mongodb(tmp: Path) -> Iterator[str]:
    """MONGODB_URI, or a SecantusDB daemon of our own for the run (its own process)."""
    given = os.environ.get("MONGODB_URI")
    if given:
        yield given
        return
    script, folder = REPO / "ops" / "services" / "mongo", tmp / "mongo"
    subprocess.run([str(script), "start", str(folder)], check=True, capture_output=True)
    try:
        env = dict(
            line.split("=", 1)
            for line in (folder / "mongo.env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        yield env["MONGODB_URI"]
    finally:
        subprocess.run([str(script), "stop", str(folder)], check=False, capture_output=True)


def make_library(root: Path, images: int) -> None:
    from PIL import Image

    album = root / "album"
    album.mkdir(parents=True)
    base = Image.linear_gradient("L").resize((1200, 800))
    for i in range(images):
        Image.merge(
            "RGB", (base, base.rotate(i), base.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        ).save(album / f"img-{i:05d}.jpg", quality=85)


def seed_jobs(app: Any, collection_ids: Sequence[str], count: int) -> None:
    """`count` planned jobs (a few images each) appended to the log in batches."""
    from domain import events as ev

    specs = app.settings.specs
    batch: list[ev.Event] = []
    bulk = uuid.uuid4().hex
    for n in range(count):
        job = uuid.uuid4().hex
        images = [uuid.uuid4().hex for _ in range(1 + n % 4)]
        batch.append(ev.JobImagesPlanned(job, 0, images))
        batch.append(
            ev.JobPlanned(
                job,
                bulk,
                collection_ids[n % len(collection_ids)],
                list(specs),
                {k: s.to_dict() for k, s in specs.items()},
                {k: s.hash for k, s in specs.items()},
                len(images),
                0,
                1,
            )
        )
        if len(batch) >= 2000:
            app.events.append_many(batch)
            batch = []
    app.events.append_many(batch)
    app.projector.catch_up()


def prepare(env: Mapping[str, str], tmp: Path, images: int, jobs: int) -> tuple[Path, list[str]]:
    """Generate the thumbnails and seed the jobs; return (cache folder, thumbnail relpaths)."""
    from ops import library
    from ops.bootstrap import bootstrap
    from ops.settings import Settings

    make_library(tmp / "library", images)
    with bootstrap(Settings.from_env(env)) as app:
        library.ensure_default_folder(app)
        ids = library.add_collections(app, tmp / "library")
        app.projector.catch_up()
        library.scan_collections(app, ids)
        app.start_worker()
        bulk = library.regenerate(app, ids, kind="thumbnail")
        library.wait_for(app, [j.job_id for j in bulk.jobs], timeout=600)
        seed_jobs(app, ids, jobs)
        folder = Path(app.settings.cache_dir)
        paths = []
        for cid in ids:
            for (image, _), doc in app.read.renditions_of(cid).items():
                paths.append(f"{image}|{doc['path']}")
        return folder, paths


# -- servers ------------------------------------------------------------------------------


def serve_child(port: int) -> int:
    """Child process: the API on 127.0.0.1:port until terminated."""
    import uvicorn

    from ops.bootstrap import bootstrap
    from ops.settings import Settings
    from web.app import create_app

    with bootstrap(Settings.from_env(os.environ)) as app:
        uvicorn.run(
            create_app(app), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    return 0


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


@contextlib.contextmanager
def process(
    cmd: list[str], env: Mapping[str, str], port: int, probe: str, log: Path
) -> Iterator[None]:
    with log.open("wb") as out:
        child = subprocess.Popen(
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_http(port, probe)
        except RuntimeError:
            raise RuntimeError(f"{cmd[2]} did not start: {log.read_text()[-2000:]}") from None
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- load generators --------------------------------------------------------------------------

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")


def run_wrk(
    port: int,
    paths: Sequence[str],
    seconds: float,
    conns: int,
    headers: Mapping[str, str],
    tmp: Path,
) -> Result:
    script = tmp / f"paths-{uuid.uuid4().hex[:6]}.lua"
    listed = ",".join(f'"{p}"' for p in paths)
    script.write_text(
        f"paths = {{{listed}}}\ni = 0\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n"
    )
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rate, 1),
        "p50_ms": round(_ms(p50.group(1)), 2) if p50 else None,
        "p99_ms": round(_ms(p99.group(1)), 2) if p99 else None,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def run_python(
    port: int,
    paths: Sequence[str],
    seconds: float,
    conns: int,
    headers: Mapping[str, str],
    max_requests: int = 2_000_000,
) -> Result:
    """A bounded keep-alive load generator: `conns` threads, each one connection."""
    latencies: list[list[float]] = [[] for _ in range(conns)]
    bad = [0] * conns
    deadline = time.monotonic() + seconds
    per_thread = max_requests // conns

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = n
        while time.monotonic() < deadline and len(latencies[n]) < per_thread:
            started = time.perf_counter()
            conn.request("GET", paths[i % len(paths)], headers=dict(headers))
            resp = conn.getresponse()
            resp.read()
            latencies[n].append((time.perf_counter() - started) * 1000)
            bad[n] += resp.status >= 400
            i += conns

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(conns)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "rps": round(len(flat) / elapsed, 1),
        "p50_ms": round(flat[len(flat) // 2], 2) if flat else None,
        "p99_ms": round(flat[int(len(flat) * 0.99)], 2) if flat else None,
        "requests": len(flat),
        "non_2xx": sum(bad),
        "socket_errors": "",
    }


# -- the run -------------------------------------------------------------------------------


def scenarios(
    api: int, static: int, thumbs: list[str], jobs_count: int
) -> list[tuple[str, int, list[str], bool]]:
    """(name, port, paths, needs the token)."""
    last_page = max(jobs_count - 50, 0)
    api_thumbs = [f"/api/v1/images/{t.split('|')[0]}/thumbnail" for t in thumbs]
    files = ["/" + t.split("|")[1] for t in thumbs]
    jobs = "/api/v1/cache/processing-jobs"
    return [
        ("thumbnail, API (warm)", api, api_thumbs, True),
        ("thumbnail, http.server", static, files, False),
        ("jobs list first page, API", api, [f"{jobs}?limit=50"], True),
        ("jobs list last page, API", api, [f"{jobs}?limit=50&offset={last_page}"], True),
        ("jobs list ?status=queued, API", api, [f"{jobs}?status=queued&limit=50"], True),
        ("jobs list JSON, http.server", static, ["/bench-jobs.json"], False),
    ]


def measure(args: argparse.Namespace, tmp: Path) -> Result:
    with mongodb(tmp) as uri:
        db = f"bench_{uuid.uuid4().hex[:10]}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IMAGECACHE_")},
            "MONGODB_URI": uri,
            "IMAGECACHE_DB": db,
            "IMAGECACHE_DATA": str(tmp / "var"),
            "IMAGECACHE_LIBRARY_ROOTS": str(tmp / "library"),
            "IMAGECACHE_API_TOKEN": TOKEN,
            "PYTHONPATH": str(REPO),
        }
        started = time.monotonic()
        try:
            folder, thumbs = prepare(env, tmp, args.images, args.jobs)
            setup = time.monotonic() - started
            return serve_and_load(args, env, tmp, folder, thumbs) | {"setup_seconds": setup}
        finally:
            import pymongo

            client: pymongo.MongoClient[Any]
            with pymongo.MongoClient(uri) as client:
                client.drop_database(db)


def serve_and_load(
    args: argparse.Namespace, env: Mapping[str, str], tmp: Path, folder: Path, thumbs: list[str]
) -> Result:
    api, static = free_port(), free_port()
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api_cmd = [sys.executable, "-m", "ops.bench.serve", "--child", str(api)]
    static_cmd = [
        sys.executable,
        "-m",
        "http.server",
        str(static),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(folder),
    ]
    results: Result = {
        "tool": tool,
        "images": len(thumbs),
        "jobs": args.jobs,
        "seconds": args.seconds,
        "connections": args.connections,
    }
    with (
        process(api_cmd, env, api, "/api/v1/health", tmp / "api.log"),
        process(static_cmd, env, static, "/", tmp / "static.log"),
    ):
        page = _get(api, "/api/v1/cache/processing-jobs?limit=50", auth)
        (folder / "bench-jobs.json").write_bytes(page)
        for name, port, paths, needs_token in scenarios(api, static, thumbs, args.jobs):
            headers = auth if needs_token else {}
            for p in paths:  # warm-up: every file read once, every route compiled
                _get(port, p, headers)
            if tool == "wrk":
                res = run_wrk(port, paths, args.seconds, args.connections, headers, tmp)
            else:
                res = run_python(port, paths, args.seconds, args.connections, headers)
            results[name] = res
    return results


def _get(port: int, path: str, headers: Mapping[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=dict(headers))
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path} answered {resp.status}: {body[:200]!r}")
    return body


def print_table(r: Result) -> None:
    print(
        f"bench serve: {r['tool']}, {r['connections']} connections, {r['seconds']} s per row,"
        f" {r['images']} thumbnails, {r['jobs']} jobs (set-up {r['setup_seconds']:.0f} s)"
    )
    rows = [(k, v) for k, v in r.items() if isinstance(v, dict)]
    width = max(len(k) for k, _ in rows)
    print(f"{'scenario':<{width}}  {'req/s':>9}  {'p50 ms':>8}  {'p99 ms':>8}  {'errors':>6}")
    for name, v in rows:
        print(
            f"{name:<{width}}  {v['rps']:>9.1f}  {v['p50_ms'] or 0:>8.2f}  "
            f"{v['p99_ms'] or 0:>8.2f}  {v['non_2xx']:>6}"
        )
    thumb_api = r["thumbnail, API (warm)"]["rps"]
    thumb_static = r["thumbnail, http.server"]["rps"]
    jobs_api = r["jobs list first page, API"]["rps"]
    jobs_static = r["jobs list JSON, http.server"]["rps"]
    print(
        f"thumbnails: API / http.server = {thumb_api / thumb_static:.2f};"
        f" jobs page: API / static JSON = {jobs_api / jobs_static:.2f}"
    )


def run(argv: list[str]) -> int:
    """`imagecache bench serve`: print the table (or --json); 0 on success."""
    p = argparse.ArgumentParser(prog="imagecache bench serve", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return serve_child(args.child)
    with tempfile.TemporaryDirectory(prefix="icbench-serve-") as tmp:
        results = measure(args, Path(tmp))
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

"""The `imagecache` command line. Every list/show command takes --json."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any

import dramatiq.errors

from domain.errors import ImageCacheError, InvalidInput, UnknownCollection, UnknownJob
from domain.projection import PROJECTIONS
from domain.sizes import parse_size
from ops import control, library, maintenance
from ops.bootstrap import App, bootstrap
from ops.cli_admin import JOB_COLUMNS, cmd_maintenance, cmd_replay, cmd_scheduler
from ops.output import emit_json, human_bytes, table
from ops.settings import Settings

Handler = Callable[[App, argparse.Namespace], int]
NOT_YET = 2


# -- commands ---------------------------------------------------------------------


def cmd_up(app: App, args: argparse.Namespace) -> int:
    from ops.up import check_paths, run_up

    problems = check_paths(args.paths)
    if problems:
        for p in problems:
            print(f"imagecache up: {p}", file=sys.stderr)
        return 1
    if not args.no_serve:
        _check_port(app.settings.host, args.port)
    run_up(app, args.paths, as_json=args.json, worker=not args.no_worker)
    if args.no_serve:
        return 0
    return _serve(app, args.port, started=True)


def cmd_serve(app: App, args: argparse.Namespace) -> int:
    _check_port(app.settings.host, args.port)
    # Embedded, nothing else can run the work the API and page plan: run it here, unless
    # another process (an `up`, another `serve`) runs the work of this data folder.
    if (args.worker or app.settings.rabbitmq_url is None) and not app.start_worker():
        print(
            f"the work of this data folder runs in imagecache process {app.runner_pid()};"
            " this one serves the API and page",
            flush=True,
        )
    return _serve(app, args.port, started=False)


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise ImageCacheError(
                f"port {port} on {host} is in use", hint="choose another with --port"
            ) from None


def _serve(app: App, port: int, *, started: bool) -> int:
    import uvicorn

    from web.app import create_app
    from web.auth import load_or_create_token

    app.start_projector()
    print(f"serving on http://{app.settings.host}:{port} (Ctrl-C to stop)", flush=True)
    print(f"API token: {load_or_create_token(app.settings)}", flush=True)

    class Server(uvicorn.Server):
        """uvicorn's server, without its re-raising of SIGINT/SIGTERM once it has stopped
        gracefully: that killed this process before it stopped the embedded database and
        the render pool (leaving them to die with their parent, and semaphores leaked)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # stopped as asked: nothing to re-raise

    schedule = None
    if app.runner:
        # Embedded, nothing else keeps the library and the cache folders right: this process
        # runs the scheduler's tasks (recover: it takes up unfinished jobs anyway).
        from ops.scheduler import start_schedule

        schedule = start_schedule(app, os.environ, without={"recover"})
    config = uvicorn.Config(create_app(app), host=app.settings.host, port=port, log_level="warning")
    try:
        Server(config).run()
    finally:
        if schedule is not None:
            schedule.shutdown(wait=True)
    return 0


def cmd_worker(app: App, args: argparse.Namespace) -> int:
    if app.settings.rabbitmq_url is None:
        raise ImageCacheError(
            "a worker needs RABBITMQ_URL", hint="set RABBITMQ_URL, or use `imagecache up` alone"
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = args.threads or app.settings.worker_threads
    processes = args.processes or app.settings.worker_processes
    if not args.child:
        # After the services answered (bootstrap pinged them), not after a fixed sleep.
        maintenance.recover(app, stale_after=app.settings.stale_after)
        # Choosing a cache folder reads folder_stats, which must follow what the workers
        # write even when no serve or scheduler runs: one such projector per worker machine.
        app.start_folder_projector()
    if args.child or processes == 1:
        app.start_worker(threads)
        print(f"worker process {os.getpid()} with {threads} threads", flush=True)
        stop.wait()
        return 0
    from ops.workers import supervise

    print(f"worker: {processes} processes x {threads} threads", flush=True)
    return supervise(processes, threads, stop)


def cmd_collections(app: App, args: argparse.Namespace) -> int:
    if args.action == "add":
        ids = library.add_collections(app, args.path, revive=True)
        app.projector.catch_up()
        results = library.scan_collections(app, ids)
        _warn_refused(results)
        rows = [{"id": r.collection_id, "images": r.images, "added": r.added} for r in results]
        emit_json(rows) if args.json else table(rows, ["id", "images", "added"])
        return 1 if any(r.error for r in results) else 0
    elif args.action == "list":
        app.projector.catch_up()
        rows = [_collection_row(c) for c in app.read.collections()]
        emit_json(rows) if args.json else table(
            rows, ["id", "name", "source", "images", "unsupported", "path"]
        )
    elif args.action == "scan":
        app.projector.catch_up()
        ids = args.ids or [c["_id"] for c in app.read.collections()]
        results = library.scan_collections(app, ids, content_hash=args.hash)
        rows = [r.__dict__ for r in results]
        _warn_refused(results)
        emit_json(rows) if args.json else table(
            rows, ["collection_id", "images", "added", "changed", "removed", "unsupported"]
        )
        return 1 if any(r.error for r in results) else 0
    elif args.action == "remove":
        removed = library.remove_collection(app, args.id)
        if args.json:
            emit_json(removed)
        else:
            cancelled = len(removed["cancelled_jobs"])
            print(
                f"removed collection {removed['id']} ({removed['path']}): {removed['images']}"
                f" images, {cancelled} unfinished jobs cancelled. Its cache files are orphans"
                f" now: `imagecache cleanup` deletes them after {app.settings.orphan_days:g}"
                " days (--older-than-days 0: now). Scans of its library root leave it out;"
                " `imagecache collections add` of its path adds it again"
            )
    elif args.action == "images":
        app.projector.catch_up()
        if app.read.collection(args.id) is None:
            raise UnknownCollection(f"no collection {args.id}")
        image_rows = _image_rows(app, args.id)
        if args.json:
            emit_json(image_rows)
        else:
            flat = [
                {
                    "id": r["id"],
                    "path": r["path"],
                    **{k: v["status"] for k, v in r["renditions"].items()},
                }
                for r in image_rows
            ]
            table(flat, ["id", "path", *app.settings.specs])
    return 0


def _warn_refused(results: Sequence[Any]) -> None:
    for line in library.scan_problems(results):
        print(f"imagecache: {line}", file=sys.stderr)


def _collection_row(c: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "source", "images", "unsupported", "path", "last_scan_at")
    return {"id": c["_id"], **{k: c.get(k) for k in keys}}


def _image_rows(app: App, cid: str) -> list[dict[str, Any]]:
    folders = {f["_id"]: f["path"] for f in app.read.folder_docs(include_removed=True)}
    docs = app.read.images_of(cid)
    return library.image_rows(app, docs, renditions=app.read.renditions_of(cid), folders=folders)


def cmd_folders(app: App, args: argparse.Namespace) -> int:
    if args.action == "add":
        fid = library.add_folder(app, args.path, args.capacity, args.priority)
        app.projector.catch_up()
        emit_json({"id": fid}) if args.json else print(f"cache folder {fid}: {args.path}")
        return 0
    if args.action == "change":
        view = library.change_folder(app, args.id, args.capacity, args.priority)
        emit_json(view) if args.json else print(
            f"cache folder {args.id}: capacity {view['capacity_bytes'] or 'disk'},"
            f" priority {view['priority']}"
        )
        return 0
    if args.action == "remove":
        view = library.remove_folder(app, args.id)
        emit_json(view) if args.json else print(f"cache folder {args.id} removed: {view['path']}")
        return 0
    app.projector.catch_up()
    rows = app.read.folders()
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        r["size"] = human_bytes(r["bytes"])
        r["capacity"] = human_bytes(r["capacity_bytes"]) if r["capacity_bytes"] else "disk"
    cols = ["id", "path", "priority", "files", "size", "capacity", "usage", "collections"]
    if args.action == "stats":
        cols += ["near_full", "full", "last_generated_at"]
    table(rows, cols)
    return 0


def cmd_regenerate(app: App, args: argparse.Namespace) -> int:
    in_process = app.settings.rabbitmq_url is None
    runs_here = False
    if args.wait and in_process:
        # The runner re-sends what earlier commands left unfinished when it starts (before
        # planning, so that the new plan leaves their images to those jobs). Another
        # process may be the runner of this data folder: it then runs this plan too.
        runs_here = app.start_worker()
        if not app.embedded:
            # In process on a shared MongoDB: other processes may be running jobs; take only
            # those quiet for IMAGECACHE_STALE_AFTER, as recovery on RabbitMQ does.
            maintenance.recover(app, stale_after=app.settings.stale_after)
    bulk = library.regenerate(
        app, args.collection or (), everything=args.all, kind=args.kind, force=args.force
    )
    result: dict[str, Any] = dataclasses.asdict(bulk)
    if not args.json:
        todo = sum(j.to_process for j in bulk.jobs)
        held = f", {bulk.quarantined} quarantined" if bulk.quarantined else ""
        queued = ""
        if bulk.queued:
            queued = f", {bulk.queued} already queued in jobs {' '.join(bulk.queued_in)}"
        print(
            f"bulk {bulk.bulk_id}: {bulk.images} images, {bulk.current} current{held}{queued},"
            f" {todo} to process, {len(bulk.jobs)} jobs"
        )
    waited = [j.job_id for j in bulk.jobs] + bulk.queued_in
    if not args.wait and app.embedded and bulk.jobs and app.runner_pid() is None:
        print(
            "the jobs run when `imagecache up` or `imagecache serve` runs (or now, with"
            " `regenerate --wait`)",
            file=sys.stderr,
        )
    if args.wait and waited:
        if in_process and not runs_here:
            print(
                f"waiting for imagecache process {app.runner_pid()} to run the jobs",
                file=sys.stderr,
            )
        elif not in_process:
            print(
                "waiting for the workers (`imagecache worker`) to run the jobs; Ctrl-C stops"
                " waiting, not the jobs",
                file=sys.stderr,
            )
        final = library.wait_for(app, waited)
        result["final"] = final
        if not args.json:
            for view in final:
                why = f" ({view['pause_reason']})" if view.get("pause_reason") else ""
                print(
                    f"job {view['id']}: {view['status']}{why}: {view['generated']} generated,"
                    f" {view['skipped']} skipped, {view['failed']} failed,"
                    f" {view['remaining']} remaining"
                )
    if args.json:
        emit_json(result)
    # --wait: 1 when a job ended otherwise than finished (paused, cancelled)
    return 1 if any(v["status"] != "finished" for v in result.get("final", [])) else 0


def cmd_jobs(app: App, args: argparse.Namespace) -> int:
    app.projector.catch_up()
    if args.action in ("pause", "resume", "cancel", "retry-failed"):
        act: Callable[[App, str], dict[str, Any]] = {
            "pause": control.pause,
            "resume": control.resume,
            "cancel": control.cancel,
            "retry-failed": control.retry_failed,
        }[args.action]
        changed = act(app, args.id)
        if args.json:
            emit_json(changed)
        else:
            print(f"job {changed['id']}: {changed['status']}, {changed['remaining']} remaining")
        return 0
    if args.action == "list":
        rows, total = app.read.jobs(
            status=args.status, collection_id=args.collection, limit=args.limit
        )
        if args.json:
            emit_json({"total": total, "jobs": rows})
        else:
            names: dict[str, str] = {}
            for cid in {str(r["collection_id"]) for r in rows}:
                doc = app.read.collection(cid, include_removed=True) or {}
                names[cid] = str(doc.get("name") or cid)
            named = [{**r, "collection": names[str(r["collection_id"])]} for r in rows]
            columns = ["collection" if c == "collection_id" else c for c in JOB_COLUMNS]
            table(named, columns)
        return 0
    if args.action == "failures":
        found = library.job_failures(app, args.id, error_class=args.error_class, limit=args.limit)
        if args.json:
            emit_json(found)
        else:
            table(found["failures"], ["path", "kind", "error_class", "attempts", "message"])
        return 0
    view = app.read.job(args.id)
    if view is None:
        raise UnknownJob(f"no job {args.id}")
    if args.json:
        emit_json(view)
    else:
        for k, v in view.items():
            print(f"{k:>18}: {v}")
    return 0


# -- parser ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagecache", description="Cache images and thumbnails for large image libraries."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--version", action="version", version=f"imagecache {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, handler: Handler | None, help: str, **kw: Any) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, **kw)
        sp.set_defaults(handler=handler)
        return sp

    up = cmd("up", cmd_up, "register, scan and generate everything, then serve the API")
    up.add_argument("paths", nargs="*", help="library folders (none: a demo library)")
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--no-serve", action="store_true", help="stop after the summary")
    up.add_argument(
        "--no-worker", action="store_true", help="leave generation to `imagecache worker` processes"
    )
    up.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    serve = cmd("serve", cmd_serve, "serve the web API and page")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--worker",
        action="store_true",
        help="also run generation actors here (always, in embedded mode: nothing else can)",
    )

    worker = cmd("worker", cmd_worker, "run generation actors on RabbitMQ")
    worker.add_argument("--processes", type=int, default=None, help="default: CPU count")
    worker.add_argument("--threads", type=int, default=None, help="per process")
    worker.add_argument("--child", action="store_true", help=argparse.SUPPRESS)

    cmd("scheduler", cmd_scheduler, "run maintenance on a schedule (APScheduler)")
    clean = cmd("cleanup", cmd_maintenance, "delete orphans and renditions of removed sources")
    clean.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    clean.add_argument("--older-than-days", type=float, default=None, help="default: 7")
    cmd("reconcile", cmd_maintenance, "measure folders and correct their statistics")
    repair = cmd("repair", cmd_maintenance, "re-plan renditions whose file is gone")
    repair.add_argument("--no-replan", action="store_true", help="only record them as missing")
    cmd("evict", cmd_maintenance, "evict least-recently-served files from over-full folders")
    cmd("alerts", cmd_maintenance, "raise alerts for jobs whose failure rate is too high")
    recover = cmd("recover", cmd_maintenance, "re-send what is left of unfinished jobs")
    recover.add_argument(
        "--stale-after",
        type=float,
        default=None,
        help="only jobs quiet for this many seconds (default IMAGECACHE_STALE_AFTER; 0: all)",
    )
    for name in ("cleanup", "reconcile", "repair", "evict", "alerts", "recover"):
        sub.choices[name].add_argument("--json", action="store_true")

    col = cmd("collections", cmd_collections, "register, list and scan collections")
    csub = col.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", help="register a folder or archive (or all under a folder)")
    add.add_argument("path")
    csub.add_parser("list", help="list collections")
    scan = csub.add_parser("scan", help="scan collections for added, changed and removed images")
    scan.add_argument("ids", nargs="*")
    scan.add_argument(
        "--hash", action="store_true", help="also read and hash every image (finds in-place edits)"
    )
    rm = csub.add_parser(
        "remove", help="stop caching a collection (cleanup then deletes its cache files)"
    )
    rm.add_argument("id")
    images = csub.add_parser("images", help="a collection's images and their renditions")
    images.add_argument("id")
    for sp in csub.choices.values():
        sp.add_argument("--json", action="store_true")

    fol = cmd("folders", cmd_folders, "cache folders and their statistics")
    fsub = fol.add_subparsers(dest="action", required=True)
    fadd = fsub.add_parser("add", help="add a cache folder")
    fadd.add_argument("path")
    fadd.add_argument(
        "--capacity", type=_size, default=0,
        help="a size such as 500M, 2G, 1.5T (or bytes); 0 means the disk's free space",
    )  # fmt: skip
    fadd.add_argument("--priority", type=int, default=0, help="higher fills first")
    fchg = fsub.add_parser("change", help="change a cache folder's capacity or priority")
    fchg.add_argument("id")
    fchg.add_argument(
        "--capacity", type=_size, default=None, help="a size such as 500M or 2G; 0: the disk's"
    )
    fchg.add_argument("--priority", type=int, default=None, help="higher fills first")
    frm = fsub.add_parser("remove", help="retire a cache folder that holds no files")
    frm.add_argument("id")
    fsub.add_parser("list")
    fsub.add_parser("stats")
    for sp in fsub.choices.values():
        sp.add_argument("--json", action="store_true")

    reg = cmd("regenerate", cmd_regenerate, "plan and run a bulk (re)generation")
    reg.add_argument("--collection", action="append", help="collection id (repeatable)")
    reg.add_argument("--all", action="store_true")
    reg.add_argument("--kind", choices=["cache", "thumbnail", "both"], default="both")
    reg.add_argument("--force", action="store_true", help="regenerate even current renditions")
    reg.add_argument("--wait", action="store_true", help="wait until the jobs finish")
    reg.add_argument("--json", action="store_true")

    jobs = cmd("jobs", cmd_jobs, "processing jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    jl = jsub.add_parser("list")
    jl.add_argument("--status", choices=["queued", "running", "paused", "cancelled", "finished"])
    jl.add_argument("--collection")
    jl.add_argument("--limit", type=int, default=100)
    js = jsub.add_parser("show")
    js.add_argument("id")
    jf = jsub.add_parser("failures", help="a job's failed images, with class and message")
    jf.add_argument("id")
    jf.add_argument("--class", dest="error_class", help="only this error class")
    jf.add_argument("--limit", type=int, default=100)
    for name in ("pause", "resume", "cancel", "retry-failed"):
        jsub.add_parser(name).add_argument("id")
    for sp in jsub.choices.values():
        sp.add_argument("--json", action="store_true")

    rep = cmd("replay", cmd_replay, "rebuild, verify and inspect from the event log")
    rsub = rep.add_subparsers(dest="action", required=True)
    rsub.add_parser("rebuild").add_argument("projection", nargs="?", choices=list(PROJECTIONS))
    rsub.add_parser("verify")
    hist = rsub.add_parser("history")
    hist.add_argument("--job")
    hist.add_argument("--image")
    hist.add_argument("--json", action="store_true")
    at = rsub.add_parser("at")
    at.add_argument("seq", type=int)
    at.add_argument("--json", action="store_true")
    rsub.add_parser("export").add_argument("file")
    rsub.add_parser("import").add_argument("file")

    bench = cmd("bench", None, "benchmarks (see ops/bench)")
    bench.add_argument(
        "name",
        choices=["replay", "render", "pipeline", "plan", "recovery", "cleanup", "serve", "archive"],
    )
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(plain=_bench)
    return p


def _version() -> str:
    """The installed package's version ("0" when run from a source tree without metadata)."""
    try:
        return metadata.version("imagecache")
    except metadata.PackageNotFoundError:
        return "0"


def _size(text: str) -> int:
    """A --capacity value: a size such as 2G or a number of bytes (argparse's error if not)."""
    try:
        return parse_size(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bench(args: argparse.Namespace) -> int:
    import importlib

    try:
        module = importlib.import_module(f"ops.bench.{args.name}")
    except ModuleNotFoundError:
        print(f"imagecache bench {args.name}: not yet available", file=sys.stderr)
        return NOT_YET
    result: int = module.run(list(args.rest))
    return result


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    services = ("up", "serve", "worker", "scheduler")
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command in services else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose:  # our own debug lines; the libraries' (pymongo's every command) stay off
        logging.getLogger("imagecache").setLevel(logging.DEBUG)
    for noisy in ("dramatiq", "secantus", "pymongo", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs every failed connection attempt with a traceback; we report them ourselves.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    if getattr(args, "plain", None):
        return int(args.plain(args))
    try:
        settings = Settings.from_env(os.environ if env is None else env)
        if getattr(args, "port", None) is None and hasattr(args, "port"):
            args.port = settings.port
        long_running = args.command in ("up", "serve", "worker", "scheduler")
        with bootstrap(settings, long_running=long_running) as app:
            code: int = args.handler(app, args)
            sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
            return code
    except ImageCacheError as exc:
        print(f"imagecache {args.command}: {exc}", file=sys.stderr)
        return 1
    except dramatiq.errors.DramatiqError as exc:
        print(
            f"imagecache {args.command}: the message broker failed: {exc}"
            " (check that RabbitMQ runs and RABBITMQ_URL is right; nothing planned is lost:"
            " `imagecache recover` re-sends it)",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:
        # The reader went away (`imagecache ... | head`): nothing more to say, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        after = "; the next `imagecache up` finishes what is left" if args.command == "up" else ""
        print(f"\nimagecache {args.command}: interrupted{after}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

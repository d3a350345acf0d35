"""Admin commands of the CLI: the scheduler, maintenance tasks and the replay tool."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from domain.errors import InvalidInput
from domain.projection import PROJECTIONS
from ops import library, maintenance, replay
from ops.bootstrap import App
from ops.output import emit_json, human_bytes, table

JOB_COLUMNS = [
    "id", "status", "collection_id", "total", "generated", "skipped", "failed", "percent",
    "rate", "eta_seconds",
]  # fmt: skip


def cmd_scheduler(app: App, args: argparse.Namespace) -> int:
    from ops.scheduler import run_scheduler

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if app.embedded and not app.start_worker():
        # Embedded, the work its tasks plan is run by the runner of the data folder: this
        # process if none runs yet, else that one (an `up` or `serve`, which runs these
        # tasks itself already).
        print(
            f"imagecache process {app.runner_pid()} runs the work of this data folder: the"
            " jobs these tasks plan run there (a `serve` also runs these tasks itself)",
            file=sys.stderr,
        )
    return run_scheduler(app, os.environ, stop)


def cmd_maintenance(app: App, args: argparse.Namespace) -> int:
    s = app.settings
    result: Any
    if args.command == "cleanup":
        days = s.orphan_days if args.older_than_days is None else args.older_than_days
        result = maintenance.cleanup(app, dry_run=args.dry_run, older_than_days=days)
    elif args.command == "reconcile":
        result = maintenance.reconcile(app)
    elif args.command == "repair":
        result = maintenance.repair_missing(app, replan=not args.no_replan)
    elif args.command == "evict":
        result = maintenance.enforce_capacity(app)
    elif args.command == "alerts":
        result = maintenance.failure_alerts(
            app, threshold=s.alert_threshold, webhook=s.alert_webhook
        )
    elif app.embedded:
        result = _recover_embedded(app)
    else:
        # On RabbitMQ, workers may be busy with a job right now: by default only jobs quiet
        # for IMAGECACHE_STALE_AFTER are re-sent. In process, nothing else runs: all of them.
        stale = args.stale_after
        if stale is None and s.rabbitmq_url is not None:
            stale = s.stale_after
        result = maintenance.recover(app, stale_after=stale)
    if result is None:
        return 0
    if args.json:
        emit_json(result)
    else:
        _print_maintenance(args.command, result)
    return 0


def _recover_embedded(app: App) -> dict[str, int] | None:
    """Embedded, the runner of the data folder re-sends what is left as it starts, and takes
    up every unfinished job it has no message of: become it and run them, or leave them to
    the process that is."""
    if not app.start_worker():
        print(
            f"imagecache process {app.runner_pid()} runs the work of this data folder: it takes"
            " up unfinished jobs within seconds",
            file=sys.stderr,
        )
        return None
    resumed = dict(app.picked_up)
    if resumed:
        library.wait_for(app, list(resumed))
    return resumed


def _print_maintenance(command: str, result: Any) -> None:
    _print_maintenance_body(command, result)
    # What a task kept or did not touch is said here too, not only in the log on stderr.
    if isinstance(result, dict):
        for f in result.get("folders", []):
            if f.get("foreign"):
                print(
                    f"{f['path']}: kept {f['foreign']} files imagecache did not write"
                    " (move them out of the cache folder)"
                )
        for alone in result.get("left_alone", []):
            print(f"{alone['path']}: left alone: {alone['message']} ({alone['hint']})")


def _print_maintenance_body(command: str, result: Any) -> None:
    if command == "cleanup":
        verb = "would delete" if result["dry_run"] else "deleted"
        for f in result["folders"]:
            reasons = ", ".join(f"{k}={v}" for k, v in f["by_reason"].items()) or "nothing"
            print(f"{f['path']}: {verb} {f['files']} files, {human_bytes(f['bytes'])} ({reasons})")
        if result.get("hint"):
            print(result["hint"])
    elif command == "reconcile":
        for f in result["folders"]:
            state = "corrected" if f["drift"] else "ok"
            print(
                f"{f['path']}: {state}: measured {f['measured_files']} files /"
                f" {human_bytes(f['measured_bytes'])}, projected {f['projected_files']} /"
                f" {human_bytes(f['projected_bytes'])}"
            )
    elif command == "recover":
        for job, left in result.items():
            print(f"resumed job {job}: {left} images left")
        if not result:
            print("no unfinished job needed resuming")
    elif command == "repair":
        if not result["missing"]:
            print("every current rendition's file is where it was written")
            return
        earlier = result["missing"] - result["found_now"]
        lost = result["missing"]
        what = "rendition has lost its file and is" if lost == 1 else "renditions have lost their"
        what += "" if lost == 1 else " files and are"
        print(
            f"{lost} {what} not made again yet ({result['found_now']} found now, {earlier} earlier)"
        )
        for job in result["jobs"]:
            print(f"planned job {job} to make them again")
        for job in result["queued_in"]:
            print(f"already queued in unfinished job {job}")
        if result["collections"] and not result["jobs"] and not result["queued_in"]:
            names = " ".join(result["collections"])
            print(f"not planned again; to make them: imagecache regenerate {names}")
    elif command == "evict":
        for f in result["folders"]:
            print(f"{f['path']}: evicted {f['evicted']} renditions, {human_bytes(f['bytes'])}")
        if not result["folders"]:
            print("no cache folder is over 95% of its capacity")
    else:  # alerts
        for alert in result:
            print(f"ALERT {alert['message']}")
        if not result:
            print("no new alert: no job passed the failure-rate threshold since its last alert")


def cmd_replay(app: App, args: argparse.Namespace) -> int:
    if args.action == "rebuild":
        names = [args.projection] if args.projection else list(PROJECTIONS)
        position = replay.rebuild(app, names)
        print(f"rebuilt {', '.join(names)} up to seq {position}")
    elif args.action == "verify":
        position, diffs = replay.verify(app)
        if diffs:
            print(f"drift at seq {position}: {len(diffs)} differences", file=sys.stderr)
            for d in diffs[:200]:
                print(d)
            return 1
        print(f"verified: live projections equal a fresh replay of {position} events")
    elif args.action == "history":
        records = replay.history(app, job=args.job, image=args.image)
        if not records:
            what = f"job {args.job}" if args.job else f"image {args.image}"
            print(f"imagecache replay: no events for {what}", file=sys.stderr)
            return 1
        if args.json:
            emit_json(records)
        else:
            for r in records:
                print(f"{r['seq']:>8} {r['type']:<22} {r['stream']:<40} {r['data']}")
    elif args.action == "at":
        state = replay.state_at(app, args.seq)
        if args.json:
            emit_json(state)
        else:
            print(f"state at seq {state['seq']}:")
            table(state["jobs"], JOB_COLUMNS[:8])
            table(state["folders"], ["id", "path", "files", "bytes", "usage"])
    elif args.action == "export":
        n = _export(app, Path(args.file))
        print(f"exported {n} events to {args.file}")
    elif args.action == "import":
        n = replay.import_file(app, Path(args.file))
        print(f"imported {n} events from {args.file}")
    return 0


def _export(app: App, path: Path) -> int:
    """The log as JSON lines in `path`, written whole or not at all."""
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "wb") as f:
            n = replay.export(app, f)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInput(
            f"cannot write {path}: {exc.strerror}", hint="give a file in a writable folder"
        ) from None
    return n

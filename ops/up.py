"""`imagecache up`: the main job. Register, scan, generate everything, summarise, serve."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domain.views import job_status
from ops import library, maintenance
from ops.bootstrap import App
from ops.demo import make_demo_library
from ops.output import emit_json, human_bytes


def run_up(app: App, paths: Sequence[str], *, as_json: bool, worker: bool) -> dict[str, Any]:
    """Everything `up` does before serving; returns the summary."""
    started = time.monotonic()
    library.ensure_default_folder(app)
    for line in library.root_problems(app):  # a root named in IMAGECACHE_LIBRARY_ROOTS
        print(f"imagecache up: {line}", file=sys.stderr)
    runs_here = app.start_worker() if worker else False
    # Finish what an interrupted run left first, so it is neither lost nor planned twice.
    if app.embedded:
        # The runner of this data folder re-sends what was left when it starts: this process
        # if it became the runner, else the one that is (its jobs: queued_in, below).
        if not runs_here:
            _say(as_json, f"the work runs in imagecache process {app.runner_pid()}")
        resumed = dict(app.picked_up)
    else:
        in_process = app.settings.rabbitmq_url is None
        resumed = maintenance.recover(
            app, stale_after=None if in_process else app.settings.stale_after
        )
    finished_here: list[dict[str, Any]] = []  # what this run added to the resumed jobs
    if resumed:
        _say(
            as_json, f"resuming {len(resumed)} unfinished jobs: {sum(resumed.values())} images left"
        )
        finished_here = _wait(app, [], list(resumed))
    if not paths:
        demo = make_demo_library(app.settings.data_dir / "demo-library")
        paths = [str(demo)]
        _say(as_json, f"no library given: using the demo library in {demo}")
    ids: list[str] = []
    for path in paths:
        library.add_root(app, path)
        ids.extend(library.add_collections(app, path))
    app.projector.catch_up()
    ids = list(dict.fromkeys(ids))
    results = library.scan_collections(app, ids)
    images = sum(r.images for r in results)
    for line in library.scan_problems(results):
        print(f"imagecache up: {line}", file=sys.stderr)
    _say(as_json, f"{len(ids)} collections, {images} images")
    planning = time.monotonic()
    bulk = library.regenerate(app, ids, kind="both")
    todo = sum(j.to_process for j in bulk.jobs)
    queued = f", {bulk.queued} queued in running jobs" if bulk.queued else ""
    _say(as_json, f"{bulk.images} images: {bulk.current} current{queued}, {todo} to process")
    # Images a running job (workers busy with it) will make were left out of the plan: wait
    # for those jobs as well, and count what they do from now on.
    others = [j for j in bulk.queued_in if j not in resumed]
    own = [j.job_id for j in bulk.jobs]
    views = _wait(app, own, others, progress=None if as_json else _progress_bar())
    generated = time.monotonic()  # every outcome in the log and projected
    if not as_json and (own or others):
        sys.stderr.write("\n")
    kinds = len(app.settings.specs)
    views = views + finished_here
    summary = {
        "collections": len(ids),
        "images": images,
        "generated": sum(v["generated"] for v in views),
        "skipped": sum(v["skipped"] for v in views) + bulk.current * kinds,
        "failed": sum(v["failed"] for v in views),
        "bytes": sum(v["bytes"] for v in views),
        "seconds": round(time.monotonic() - started, 2),
        "pipeline_seconds": round(generated - planning, 2),  # plan to projected outcomes
        "jobs": len(bulk.jobs),
        "resumed_jobs": len(resumed),
        "already_current": bulk.current,
        "quarantined": bulk.quarantined,
        "queued": bulk.queued,
        "failed_by_class": _merge([v["failed_by_class"] for v in views]),
        "unreadable_collections": {r.collection_id: r.error for r in results if r.error},
    }
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return summary


def _merge(dicts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def _progress_bar() -> Any:
    last = [0.0]

    def show(docs: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2:
            return
        last[0] = now
        total = sum(int(d.get("total", 0)) for d in docs) or 1
        done = sum(int(d.get(k, 0)) for d in docs for k in ("generated", "skipped", "failed"))
        running = sum(1 for d in docs if job_status(d) == "running")
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} renditions"
            f" ({100 * done / total:.0f}%), {running} jobs running "
        )
        sys.stderr.flush()

    return show


def _wait(
    app: App, own: Sequence[str], others: Sequence[str], progress: Any = None
) -> list[dict[str, Any]]:
    """Wait for the jobs this run planned (`own`, counted whole) and for jobs it found under
    way (`others`, counted from now on); what each did, as job views' counts."""
    app.projector.catch_up()
    before = {j: app.read.job(j) or {} for j in others}
    views = library.wait_for(app, [*own, *others], progress=progress)
    return [_since(v, before[v["id"]]) if v["id"] in before else v for v in views]


def _since(view: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The outcomes a job gained since `before` (its view when this run resumed it)."""
    out = {k: view[k] - before.get(k, 0) for k in ("generated", "skipped", "failed", "bytes")}
    was = before.get("failed_by_class", {})
    out["failed_by_class"] = {
        k: n - was.get(k, 0) for k, n in view["failed_by_class"].items() if n > was.get(k, 0)
    }
    return out


def _print_summary(s: dict[str, Any]) -> None:
    print(
        f"{s['collections']} collections, {s['images']} images: "
        f"{s['generated']} generated, {s['skipped']} skipped, {s['failed']} failed, "
        f"{human_bytes(s['bytes'])} written in {s['seconds']:.1f}s"
    )
    if s["failed_by_class"]:
        print(
            "failures by class: " + ", ".join(f"{k}={v}" for k, v in s["failed_by_class"].items())
        )
    if s["quarantined"]:
        print(
            f"{s['quarantined']} images held back: they failed the same way"
            " IMAGECACHE_QUARANTINE_AFTER times (see `imagecache jobs failures ID`;"
            " `imagecache regenerate --force` tries them again)"
        )
    if s["generated"] == 0 and s["failed"] == 0 and not s["unreadable_collections"]:
        rest = "everything else" if s["quarantined"] else "everything"
        print(f"{rest} was already current: nothing to do")


def check_paths(paths: Sequence[str]) -> list[str]:
    """Problems with the given library paths, as messages (empty when all is well)."""
    problems = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            problems.append(f"{p}: no such folder")
        elif not path.is_dir():
            problems.append(f"{p}: not a folder")
        elif not _readable(path):
            problems.append(f"{p}: not readable (check its permissions)")
    return problems


def _readable(path: Path) -> bool:
    try:
        next(iter(path.iterdir()), None)
        return True
    except PermissionError:
        return False

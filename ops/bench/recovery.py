"""`imagecache bench recovery`: resume a job of --planned images of which half are done.

The log holds the job (JobPlanned, its image pages) and one outcome per done image and
kind, projected; the `images` read model holds every planned image. Timed: computing planned minus
done from the log and publishing the remainder (to the in-process broker), on the
embedded server (in its own process, as long-running commands run it), with the peak
memory of this process.
Baseline: the same server's raw read rate of the log, measured in the same run.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from typing import Any

from actors.plan import PLAN_PAGE
from domain import events as ev
from domain.events import StoredEvent, stored
from domain.planning import pages
from domain.specs import DEFAULT_SPECS
from ops import control
from ops.bench.common import embedded_env, report
from ops.bootstrap import bootstrap
from ops.settings import Settings

KINDS = ("cache", "thumbnail")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fill(app: Any, planned: int, done_fraction: float) -> tuple[str, list[str]]:
    cid, job = "c0ffee00c0ffee00", uuid.uuid4().hex
    ids = [uuid.uuid4().hex for _ in range(planned)]
    app.events.append(ev.CollectionRegistered(cid, "/bench/lib/big", "/bench/lib", "folder", "big"))
    app.projector.catch_up()
    shape = {"collection_id": cid, "mtime": 1.6e9, "supported": True, "removed": False}
    docs = (
        {"_id": i, "path": f"{n:07}.jpg", "size": 1_000_000 + n, **shape} for n, i in enumerate(ids)
    )
    batch: list[dict[str, Any]] = []
    for d in docs:
        batch.append(d)
        if len(batch) == 10_000:
            app.db.images.insert_many(batch, ordered=False)
            batch = []
    if batch:
        app.db.images.insert_many(batch, ordered=False)
    specs = [DEFAULT_SPECS[k] for k in KINDS]
    image_pages = pages(ids, PLAN_PAGE)
    app.events.append_many([ev.JobImagesPlanned(job, n, p) for n, p in enumerate(image_pages)])
    app.events.append(
        ev.JobPlanned(
            job,
            "bench",
            cid,
            list(KINDS),
            {s.kind: s.to_dict() for s in specs},
            {s.kind: s.hash for s in specs},
            planned,
            0,
            len(image_pages),
        )
    )
    app.projector.catch_up()
    # The outcomes go in as the very records append_many would store (same envelope, seq
    # and key), inserted in bulk, and are projected by the projector's own write path:
    # only set-up speed differs, the log and the read models are the same.
    seq, now = app.events.head(), time.time()
    records: list[StoredEvent] = []
    for image in ids[: int(planned * done_fraction)]:
        for kind in KINDS:
            seq += 1
            records.append(stored(ev.RenditionSkipped(job, image, cid, kind, "current"), seq, now))
            if len(records) == 10_000:
                _store(app, records)
                records = []
    _store(app, records)
    app.db.counters.update_one({"_id": "events"}, {"$max": {"n": seq}}, upsert=True)
    return job, ids


def _store(app: Any, records: list[StoredEvent]) -> None:
    if not records:
        return
    app.db.events.insert_many([{"_id": r.seq, **r.to_record()} for r in records])
    for start in range(0, len(records), 1000):
        app.projector.apply_run(records[start : start + 1000])


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench recovery")
    parser.add_argument("--planned", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="icbench-") as data:
        env = embedded_env(data)
        # The database in its own process, as `up`, `serve` and the workers run it.
        with bootstrap(Settings.from_env(env), long_running=True) as app:
            started = time.perf_counter()
            job, _ids = _fill(app, args.planned, 0.5)
            setup = time.perf_counter() - started
            # Baseline: raw read of the whole log, sorted by seq, on the same server.
            started = time.perf_counter()
            raw = sum(
                1 for _ in app.db.events.find({}, {"_id": 1}).sort("seq", 1).batch_size(10_000)
            )
            raw_dps = raw / (time.perf_counter() - started)
            before = _peak_mb()
            sent: list[int] = [0]
            publish = app.actors.publish

            def counting(messages: list[dict[str, Any]]) -> None:
                sent[0] += len(messages)
                publish(messages)

            app.actors.publish = counting  # type: ignore[method-assign]
            started = time.perf_counter()
            left = control.resend_remaining(app, job)
            seconds = time.perf_counter() - started
            peak = _peak_mb()
            outcome_events = app.db.events.count_documents({"type": "RenditionSkipped"})
    figures = {
        "planned": args.planned,
        "outcome_events": outcome_events,
        "remaining": left,
        "messages": sent[0],
        "seconds": round(seconds, 2),
        "outcomes_per_s": round(outcome_events / seconds),
        "raw_read_dps": round(raw_dps),
        "peak_rss_mb": round(peak),
        "rss_before_mb": round(before),
        "setup_seconds": round(setup, 1),
    }
    rows = [
        (f"resume {args.planned:,} planned, half done", f"{seconds:.2f} s", "target <= 20 s"),
        ("  remaining published", f"{left:,}", f"{sent[0]:,} messages"),
        (
            "  outcome events read/s",
            f"{outcome_events / seconds:,.0f}",
            f"raw read of the log: {raw_dps:,.0f} docs/s",
        ),
        (
            "  peak RSS of this process",
            f"{peak:.0f} MB",
            f"before: {before:.0f} MB",
        ),
        ("set-up (not timed)", f"{setup:.0f} s", ""),
    ]
    report(rows, figures, args.json)
    return 0

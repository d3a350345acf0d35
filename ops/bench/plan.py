"""`imagecache bench plan`: plan and publish over a large library, without scanning.

Two figures, each with its target from the issue: a library of --images
images (default 100,000) of which 90% are current, and --uncached images
(default 10,000) with nothing generated yet. The library is built by folding
synthetic events (the same rules the projector applies) and inserting the
resulting read models, so only planning and publishing are timed. Publishing
goes to RabbitMQ when RABBITMQ_URL is set, else to the in-process broker.
Baseline, in the same run: reading the library's `images` documents (one per
image) without planning anything. Then the same request again, while the first
one's jobs are still queued: it must plan nothing (every image it would plan is
queued in those jobs), and its time is shown against the first plan's.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from types import SimpleNamespace
from typing import Any, cast

from pymongo.database import Database

from actors.broker import declare, make_broker
from actors.plan import BulkResult, request_bulk
from domain import events as ev
from domain.events import StoredEvent, stored
from domain.projection import fold
from domain.specs import DEFAULT_SPECS
from ops import control
from ops.bench.common import report, scratch_db
from ops.bootstrap import App
from projections.event_log import MongoEventLog
from projections.projector import Projector
from projections.readmodels import ReadModels


class _Clock:
    def now(self) -> float:
        return time.time()


def _library(images: int, per_collection: int, current: float) -> list[StoredEvent]:
    out: list[StoredEvent] = []

    def add(e: ev.Event) -> None:
        out.append(stored(e, len(out) + 1, 1.7e9 + len(out)))

    add(ev.CacheFolderAdded("f0", "/bench/cache", 0, 0))
    for c in range(max(images // per_collection, 1)):
        cid = f"{c:016x}"
        add(ev.CollectionRegistered(cid, f"/bench/lib/c{c}", "/bench/lib", "folder", f"c{c}"))
        rows: list[list[Any]] = [
            [uuid.uuid4().hex, f"{i:06}.jpg", 2_000_000 + i, 1.6e9] for i in range(per_collection)
        ]
        add(ev.CollectionScanned(cid, uuid.uuid4().hex, 0, 1, added=rows))
        for row in rows[: int(per_collection * current)]:
            for spec in DEFAULT_SPECS.values():
                add(
                    ev.RenditionGenerated(
                        "bench", row[0], cid, spec.kind, folder_id="f0", path="x", bytes=1,
                        width=1, height=1, ms=1, spec_hash=spec.hash,
                        source_size=row[2], source_mtime=row[3],
                    )
                )  # fmt: skip
    return out


def _load(db: Database[Any], events: list[StoredEvent]) -> None:
    for table, docs in fold(events).items():
        if docs:
            db[table].insert_many(list(docs.values()))
    ReadModels(db).ensure_indexes()


def _measure(db: Database[Any], rabbitmq_url: str | None, batch: int) -> dict[str, float]:
    log = MongoEventLog(db, _Clock())
    log.ensure_indexes()
    broker = make_broker(rabbitmq_url)
    queue = f"bench-plan-{uuid.uuid4().hex[:8]}"
    actors = declare(broker, lambda: None, queue)  # type: ignore[arg-type,return-value]
    sent = [0]

    def publish(messages: list[dict[str, Any]]) -> None:
        actors.publish(messages)
        sent[0] += len(messages)

    # As `regenerate` plans: images an unfinished job still has are left to it.
    read = ReadModels(db)
    projector = Projector(log, db, _Clock())
    app = cast(App, SimpleNamespace(events=log, read=read, projector=projector))

    def plan() -> BulkResult:
        return request_bulk(
            log, read, publish, DEFAULT_SPECS, everything=True, batch_size=batch,
            queued=control.queued_lookup(app),
        )  # fmt: skip

    started = time.perf_counter()
    bulk = plan()
    seconds = time.perf_counter() - started
    # The same request again while those jobs are still queued (two clicks, a nightly scan
    # while the last one's work runs): it must find every image queued, and plan nothing.
    projector.catch_up()
    published = sent[0]
    started = time.perf_counter()
    again = plan()
    again_seconds = time.perf_counter() - started
    if again.jobs or sent[0] != published:
        raise SystemExit(f"bench plan: the second request planned again: {again}")
    # Baseline, same server and library: only reading the collections' `images` documents,
    # one per image, as planning did before `plan_index`.
    started = time.perf_counter()
    for c in db["collections"].find({}, {"_id": 1}):
        for _ in db["images"].find({"collection_id": c["_id"], "removed": False}):
            pass
    baseline = time.perf_counter() - started
    if rabbitmq_url:
        broker.channel.queue_delete(queue)  # type: ignore[attr-defined]
    broker.close()
    return {
        "seconds": seconds,
        "baseline_seconds": baseline,
        "images": bulk.images,
        "to_process": sum(j.to_process for j in bulk.jobs),
        "messages": published,
        "messages_per_s": published / seconds if seconds else 0.0,
        "again_seconds": again_seconds,
        "again_queued": again.queued,
    }


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench plan")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--uncached", type=int, default=10_000)
    parser.add_argument("--per-collection", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=8, help="images per message")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rabbitmq_url = os.environ.get("RABBITMQ_URL") or None
    with scratch_db() as db:
        _load(db, _library(args.images, args.per_collection, 0.9))
        big = _measure(db, rabbitmq_url, args.batch)
    with scratch_db() as db:
        _load(db, _library(args.uncached, args.per_collection, 0.0))
        fresh = _measure(db, rabbitmq_url, args.batch)
    figures = {
        "broker": "rabbitmq" if rabbitmq_url else "in-process",
        "library_images": big["images"],
        "library_to_process": big["to_process"],
        # Unrounded: the ratio of two times in milliseconds, each rounded, is off by more than
        # the ratio's own rounding, and a reader checks one against the other.
        "library_seconds": big["seconds"],
        "library_baseline_seconds": big["baseline_seconds"],
        "library_ratio": big["seconds"] / big["baseline_seconds"],
        "library_messages_per_s": round(big["messages_per_s"]),
        "uncached_images": fresh["images"],
        "uncached_seconds": fresh["seconds"],
        "uncached_messages_per_s": round(fresh["messages_per_s"]),
        "library_again_seconds": big["again_seconds"],
        "library_again_queued": big["again_queued"],
    }
    rows = [
        ("broker", str(figures["broker"]), ""),
        (
            f"plan+publish {big['images']:,} (90% current)",
            f"{big['seconds']:.2f} s",
            "target <= 5 s",
        ),
        ("  messages/s", f"{big['messages_per_s']:,.0f}", f"{big['messages']:,} messages"),
        (
            "  baseline: read its image documents",
            f"{big['baseline_seconds']:.2f} s",
            f"plan+publish takes {big['seconds'] / big['baseline_seconds']:.2f}x that",
        ),
        (
            f"plan+publish {fresh['images']:,} uncached",
            f"{fresh['seconds']:.2f} s",
            "target <= 2 s",
        ),
        ("  messages/s", f"{fresh['messages_per_s']:,.0f}", f"{fresh['messages']:,} messages"),
        (
            f"the {big['images']:,} again, its jobs still queued",
            f"{big['again_seconds']:.2f} s",
            f"{big['again_queued']:,} images found queued, nothing planned"
            f" ({big['again_seconds'] / big['seconds']:.2f}x the first plan)",
        ),
    ]
    report(rows, figures, args.json)
    return 0

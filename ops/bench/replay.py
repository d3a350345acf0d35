"""Benchmark: the event log and the projection rebuild, against the raw rates of the same server.

`imagecache bench replay [--events N] [--one N] [--batch N] [--live N] [--json]`

One run, one server (MONGODB_URI if set, else a fresh embedded SecantusDB in a
temporary folder, never the data folder), one fresh random-named database that
is dropped at the end. The log gets a realistic workload: folder and job headers,
then N outcome events over 100 jobs x 2 kinds and 2 folders. The first `--one`
outcomes are appended one by one, the rest in batches. The raw baseline writes
the very same records, one by one and then in batches, into a collection with
the same indexes, so each ratio shows what the log and the projector add.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import bson
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from domain import events as ev
from domain.ids import image_id, rendition_relpath
from domain.projection import PROJECTIONS
from domain.specs import DEFAULT_SPECS
from ops.bootstrap import SystemClock, connect
from ops.embedded import EmbeddedServer
from projections.event_log import MongoEventLog
from projections.projector import Projector, drop

JOBS = 100
FOLDERS = 2
SLICE = 100  # single writes per alternation between the raw collection and the log
CONCURRENT_JOBS = 4  # jobs whose outcomes interleave in the log, as workers run them
Result = dict[str, Any]


# -- the workload ------------------------------------------------------------------------


def workload(outcomes: int, seed: int = 1) -> tuple[list[ev.Event], list[ev.Event]]:
    """(headers, outcomes): folders, a bulk and its job headers, then `outcomes` results."""
    rng = random.Random(seed)
    specs = [DEFAULT_SPECS["cache"], DEFAULT_SPECS["thumbnail"]]
    folders = [f"{rng.getrandbits(64):016x}" for _ in range(FOLDERS)]
    headers: list[ev.Event] = [
        ev.CacheFolderAdded(fid, f"/srv/cache/{n}", 500 * 2**30, n) for n, fid in enumerate(folders)
    ]
    bulk = f"{rng.getrandbits(128):032x}"
    per_job = -(-outcomes // (JOBS * len(specs)))  # images per job, rounded up
    queues: list[list[ev.Event]] = []
    for j in range(JOBS):
        job, cid = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
        images = [image_id(cid, f"2024/{j:03d}/IMG_{i:05d}.JPG") for i in range(per_job)]
        headers.append(ev.JobImagesPlanned(job, 0, images))
        headers.append(
            ev.JobPlanned(
                job, bulk, cid, [s.kind for s in specs], {s.kind: s.to_dict() for s in specs},
                {s.kind: s.hash for s in specs}, per_job, 0, 1,
            )
        )  # fmt: skip
        queue: list[ev.Event] = []
        for image in images:
            folder = folders[int(image[0], 16) % FOLDERS]
            queue.extend(
                _outcome(rng, job, image, cid, spec.kind, spec.hash, folder) for spec in specs
            )
        queues.append(queue)
    headers.insert(FOLDERS, ev.BulkOperationRequested(bulk, [], ["cache", "thumbnail"], all=True))
    return headers, _interleave(rng, queues)[:outcomes]


def _outcome(
    rng: random.Random, job: str, image: str, cid: str, kind: str, spec_hash: str, folder: str
) -> ev.Event:
    roll = rng.random()
    if roll < 0.08:
        return ev.RenditionSkipped(job, image, cid, kind, "current")
    if roll < 0.10:
        return ev.RenditionFailed(
            job, image, cid, kind, "UnidentifiedImageError", "cannot identify"
        )
    big = kind == "cache"
    return ev.RenditionGenerated(
        job, image, cid, kind, folder, rendition_relpath(kind, image, "jpg"),
        rng.randint(150_000, 600_000) if big else rng.randint(8_000, 30_000),
        1920 if big else 300, 1280 if big else 200, rng.randint(40, 120), spec_hash,
        rng.randint(3_000_000, 9_000_000), 1.7e9 + rng.random() * 1e7,
        rng.randint(150_000, 600_000) if roll > 0.99 else -1,
    )  # fmt: skip


def _interleave(rng: random.Random, queues: list[list[ev.Event]]) -> list[ev.Event]:
    """Merge job queues as a few concurrently running jobs would, in order within a job."""
    out: list[ev.Event] = []
    waiting = [list(reversed(q)) for q in reversed(queues)]
    active: list[list[ev.Event]] = []
    while waiting or active:
        while waiting and len(active) < CONCURRENT_JOBS:
            active.append(waiting.pop())
        queue = rng.choice(active)
        out.append(queue.pop())
        if not queue:
            active.remove(queue)
    return out


def _records(events: Sequence[ev.Event], first: int) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {"_id": first + i, **ev.stored(e, first + i, now).to_record()} for i, e in enumerate(events)
    ]


# -- the measurements --------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"bench replay: {message}", file=sys.stderr, flush=True)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _copy_indexes(source: Collection[Any], target: Collection[Any]) -> None:
    for name, info in source.index_information().items():
        if name != "_id_":
            options = {k: info[k] for k in ("unique", "sparse") if k in info}
            target.create_index(list(info["key"]), name=name, **options)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _page_reads(events: Collection[Any], total: int, batch: int) -> dict[str, float]:
    """Milliseconds for one page asked open-ended (`seq > after`, then limit), at the start,
    middle and end of the log, and the first page as `log.read` asks for it (bounded:
    `after < seq <= after + batch`). SecantusDB applies a limit only after fetching the
    whole range, so the open-ended cost grows with what lies after the page; that is
    why `log.read` bounds its pages.
    """
    out: dict[str, float] = {}
    for name, after in (("start", 0), ("middle", total // 2), ("end", max(total - batch, 0))):
        t0 = time.perf_counter()
        list(events.find({"seq": {"$gt": after}}).sort("seq", ASCENDING).limit(batch))
        out[name] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    list(events.find({"seq": {"$gt": 0, "$lte": batch}}).sort("seq", ASCENDING).limit(batch))
    out["start_bounded"] = (time.perf_counter() - t0) * 1000
    return out


def measure(db: Database[Any], outcomes: int, one: int, batch: int, profile: str = "") -> Result:
    """Raw and log write rates, raw and decoded read rates, and the projection rebuild rate."""
    clock = SystemClock()
    log = MongoEventLog(db, clock)
    log.ensure_indexes()
    raw = db["raw_events"]
    _copy_indexes(db["events"], raw)
    headers, results = workload(outcomes)
    singles, batched = results[:one], results[one:]
    _say(f"writing {len(headers) + outcomes:,} events twice: to a raw collection and the log")
    log.append_many(headers)
    raw.insert_many(_records(headers, 1))

    # Raw and log writes alternate in slices, so both see the same load and collection sizes.
    records = _records(results, len(headers) + 1)
    raw_one = append_one = raw_many = append_many = 0.0
    for start in range(0, one, SLICE):
        t0 = time.perf_counter()
        for record in records[start : min(start + SLICE, one)]:
            raw.insert_one(record)
        t1 = time.perf_counter()
        for event in singles[start : start + SLICE]:
            log.append(event)
        raw_one, append_one = raw_one + t1 - t0, append_one + time.perf_counter() - t1
    for raw_chunk, chunk in zip(
        _chunks(records[one:], batch), _chunks(batched, batch), strict=True
    ):
        t0 = time.perf_counter()
        raw.insert_many(raw_chunk, ordered=False)
        t1 = time.perf_counter()
        log.append_many(chunk)
        raw_many, append_many = raw_many + t1 - t0, append_many + time.perf_counter() - t1

    total = log.head()
    _say(f"reading {total:,} events")
    t0 = time.perf_counter()
    docs = list(db["events"].find().sort("seq"))
    raw_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    for doc in docs:
        ev.StoredEvent.from_record(doc)
    decode = time.perf_counter() - t0
    pages = _page_reads(db["events"], total, batch)

    _say(f"rebuilding every projection from {total:,} events")
    drop(db, PROJECTIONS)
    projector = Projector(log, db, clock)
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    with profiler or contextlib.nullcontext():
        position = projector.catch_up()
    project = time.perf_counter() - t0
    if profiler is not None:
        profiler.dump_stats(profile)
    if position != total:
        raise RuntimeError(f"the projection stopped at {position} of {total}")

    sample = next(r for r in records if r["type"] == "RenditionGenerated")
    out: Result = {
        "events": len(results),
        "log_events": total,
        "one": len(singles),
        "batched": len(batched),
        "batch": batch,
        "record_bytes": len(bson.encode(sample)),
        "raw_insert_one_dps": _rate(len(singles), raw_one),
        "append_one_eps": _rate(len(singles), append_one),
        "raw_insert_many_dps": _rate(len(batched), raw_many),
        "append_many_eps": _rate(len(batched), append_many),
        "raw_read_dps": _rate(len(docs), raw_read),
        "decode_eps": _rate(len(docs), decode),
        "page_read_ms": pages,
        "project_eps": _rate(position, project),
        "project_seconds": project,
        "projected_docs": {
            t: db[t].estimated_document_count() for n in PROJECTIONS for t in PROJECTIONS[n]
        },
    }
    return out


def measure_live(db: Database[Any], outcomes: int, batch: int) -> Result:
    """Lag of a background projector (as `up` runs it) while outcomes are appended in batches."""
    clock = SystemClock()
    log = MongoEventLog(db, clock)
    log.ensure_indexes()
    headers, results = workload(outcomes, seed=2)
    _say(f"appending {outcomes:,} events while a background projector follows")
    log.append_many(headers)
    projector = Projector(log, db, clock)
    stop = threading.Event()
    thread = threading.Thread(target=projector.run_forever, args=(stop, 0.2), daemon=True)
    thread.start()
    lags: list[int] = []
    t0 = time.perf_counter()
    for chunk in _chunks(results, batch):
        log.append_many(chunk)
        lags.append(projector.lag())
    appended = time.perf_counter() - t0
    t1 = time.perf_counter()
    while projector.lag() > 0:
        time.sleep(0.05)
    caught_up = time.perf_counter() - t1
    stop.set()
    thread.join(timeout=10)
    return {
        "live_events": len(results),
        "live_append_eps": _rate(len(results), appended),
        "live_max_lag": max(lags, default=0),
        "live_end_lag": lags[-1] if lags else 0,
        "live_catch_up_seconds": caught_up,
    }


# -- the command -------------------------------------------------------------------------


@contextlib.contextmanager
def _server(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    uri = env.get("MONGODB_URI")
    if uri:
        yield uri, "MONGODB_URI"
        return
    with (
        tempfile.TemporaryDirectory(prefix="imagecache-bench-") as tmp,
        EmbeddedServer(Path(tmp)) as server,
    ):
        yield server.uri, "embedded SecantusDB (temporary folder)"


def _table(r: Result) -> str:
    rows = [
        (f"append one by one ({r['one']:,} events)", "append_one_eps", "raw_insert_one_dps",
         "raw insert_one"),
        (f"append_many in {r['batch']:,}s ({r['batched']:,} events)", "append_many_eps",
         "raw_insert_many_dps", "raw insert_many"),
        (f"projection rebuild ({r['log_events']:,} events)", "project_eps", "raw_read_dps",
         "raw read by seq"),
        ("decode to StoredEvent (in memory, no I/O)", "decode_eps", "raw_read_dps",
         "raw read by seq"),
    ]  # fmt: skip
    lines = [
        f"server: {r['server']}; {r['events']:,} outcome events, {r['log_events']:,} in the log; "
        f"record {r['record_bytes']} bytes (BSON)",
        "",
        f"{'figure':<44} {'per s':>9}  {'baseline':<16} {'per s':>9} {'ratio':>6}",
    ]
    for label, value, base, base_label in rows:
        lines.append(
            f"{label:<44} {r[value]:>9,.0f}  {base_label:<16} {r[base]:>9,.0f} "
            f"{_ratio(r[value], r[base]):>6.2f}"
        )
    pages = r["page_read_ms"]
    lines.append(
        f"\nprojection rebuild took {r['project_seconds']:.1f} s. One page of {r['batch']:,} "
        f"asked open-ended: {pages['start']:,.0f} ms at the start, "
        f"{pages['middle']:,.0f} ms in the middle, {pages['end']:,.0f} ms at the end; "
        f"the first page bounded, as log.read asks for it: {pages['start_bounded']:,.0f} ms",
    )
    docs = ", ".join(f"{t} {n:,}" for t, n in r["projected_docs"].items())
    lines.append(f"read-model documents written: {docs}")
    if "live_events" in r:
        lines.append(
            f"live projection while appending {r['live_events']:,} events in batches "
            f"({r['live_append_eps']:,.0f}/s): max lag {r['live_max_lag']:,} events, "
            f"{r['live_end_lag']:,} at the last append, caught up "
            f"{r['live_catch_up_seconds']:.1f} s later"
        )
    lines.append(f"total run {r['seconds']:.1f} s")
    return "\n".join(lines)


def _ratio(value: float, base: float) -> float:
    return value / base if base else 0.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagecache bench replay", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="outcome events (100,000)")
    p.add_argument("--one", type=int, default=5_000, help="of those, appended one by one (5,000)")
    p.add_argument("--batch", type=int, default=1_000, help="append_many batch size (1,000)")
    p.add_argument("--live", type=int, default=0, help="also measure live lag over N events")
    p.add_argument("--profile", default="", help="write a cProfile of the rebuild to this file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON); 0 on success, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    if args.events < 1 or args.batch < 1 or not 0 <= args.one <= args.events:
        _say("need --events >= 1, --batch >= 1 and 0 <= --one <= --events")
        return 2
    started = time.perf_counter()
    with _server(os.environ if env is None else env) as (uri, server):
        client, db = connect(uri, f"bench_replay_{secrets.token_hex(6)}")
        try:
            result = measure(db, args.events, args.one, args.batch, args.profile)
            if args.live:
                result |= measure_live(client[f"{db.name}_live"], args.live, args.batch)
        finally:
            client.drop_database(db.name)
            client.drop_database(f"{db.name}_live")
            client.close()
    result["server"] = server
    result["seconds"] = time.perf_counter() - started
    result["ratios"] = {
        "append_one": _ratio(result["append_one_eps"], result["raw_insert_one_dps"]),
        "append_many": _ratio(result["append_many_eps"], result["raw_insert_many_dps"]),
        "project": _ratio(result["project_eps"], result["raw_read_dps"]),
        "decode": _ratio(result["decode_eps"], result["raw_read_dps"]),
    }
    print(json.dumps(result) if args.json else _table(result))
    return 0

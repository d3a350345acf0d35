"""The projector on a real MongoDB-wire server: exactly once per document, whatever happens.

Every test ends the same way: the read models, without the projector's bookkeeping
fields, equal `domain.projection.fold` of the events in the log.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.database import Database

from domain import events as ev
from domain.changes import Doc
from domain.errors import ERROR_CLASSES, VersionMismatch
from domain.planning import PlanInputs
from domain.ports import EventLog
from domain.projection import (
    CURRENCY_FIELDS,
    PROJECTION_VERSIONS,
    PROJECTIONS,
    TABLE_PROJECTION,
    fold,
)
from domain.specs import DEFAULT_SPECS
from projections.event_log import MongoEventLog
from projections.memory_log import MemoryEventLog
from projections.projector import BOOKKEEPING, Projector, drop
from projections.readmodels import ReadModels, source_image

pytestmark = pytest.mark.integration

KINDS = ["cache", "thumbnail"]
BATCH = 50
ALL = sorted(PROJECTIONS)


class TickingClock:
    """The log's clock: one millisecond further at every reading."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def now(self) -> float:
        return 1_700_000_000.0 + next(self._ticks) / 1000


class ManualClock:
    """The projector's clock: moves only when a test says so."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def rid() -> str:
    return uuid.uuid4().hex


# -- a realistic history ----------------------------------------------------------------


def realistic_history(seed: int = 7, per_collection: int = 45) -> list[ev.Event]:
    """Folders, two scanned collections, a bulk job of both kinds with every kind of outcome,
    redeliveries, heartbeats, pause and resume, a rescan with replacements and deletions."""
    rng = random.Random(seed)
    fast, big = rid(), rid()
    specs = {k: DEFAULT_SPECS[k].to_dict() for k in KINDS}
    hashes = {k: DEFAULT_SPECS[k].hash for k in KINDS}
    out: list[ev.Event] = [
        ev.LibraryRootAdded(f"/lib/{rid()}"),
        ev.CacheFolderAdded(fast, "/cache/fast", 50_000_000, 5),
        ev.CacheFolderAdded(big, "/cache/big", 0, 1),
    ]
    collections: dict[str, list[str]] = {}
    for name in ("a", "b"):
        cid, images = rid(), [rid() for _ in range(per_collection)]
        collections[cid] = images
        rows = [[i, f"{n:03}.jpg", 4_000_000 + n, 1.7e9 + n] for n, i in enumerate(images)]
        half, scan = len(rows) // 2, rid()
        out += [
            ev.CollectionRegistered(cid, f"/lib/{name}", "/lib", "folder", name),
            ev.CollectionScanned(cid, scan, 0, 2, added=rows[:half]),
            ev.CollectionScanned(
                cid, scan, 1, 2, added=rows[half:], unsupported=[[rid(), "notes.txt"]]
            ),
        ]
    bulk = rid()
    out.append(ev.BulkOperationRequested(bulk, list(collections), KINDS))
    jobs: dict[str, tuple[str, list[str]]] = {}
    for cid, images in collections.items():
        job = rid()
        jobs[job] = (cid, images)
        half = len(images) // 2
        out += [
            ev.JobPlanned(job, bulk, cid, KINDS, specs, hashes, len(images), 0, 2),
            ev.JobImagesPlanned(job, 0, images[:half]),
            ev.JobImagesPlanned(job, 1, images[half:]),
        ]

    files: dict[tuple[str, str], tuple[str, int]] = {}  # (image, kind) -> (folder, bytes)

    def generate(job: str, cid: str, image: str, kind: str) -> ev.RenditionGenerated:
        folder, old = files.get((image, kind), (rng.choice([fast, big]), -1))
        size = rng.randint(20_000, 400_000) if kind == "cache" else rng.randint(2_000, 9_000)
        files[(image, kind)] = (folder, size)
        return ev.RenditionGenerated(
            job, image, cid, kind, folder, f"{kind}/{image[:2]}/{image[2:4]}/{image}.jpg",
            size, 1920, 1280, rng.randint(20, 90), hashes[kind], 4_000_000, 1.7e9, old,
        )  # fmt: skip

    outcomes: list[ev.Event] = []
    for job, (cid, images) in jobs.items():
        for image in images:
            for kind in KINDS:
                r = rng.random()
                if r < 0.7:
                    outcomes.append(generate(job, cid, image, kind))
                elif r < 0.85:
                    outcomes.append(ev.RenditionSkipped(job, image, cid, kind, "current"))
                else:
                    error = rng.choice(ERROR_CLASSES)
                    outcomes.append(ev.RenditionFailed(job, image, cid, kind, error, "bad"))
    rng.shuffle(outcomes)
    first_job = next(iter(jobs))
    for n, outcome in enumerate(outcomes):
        out.append(outcome)
        if n % 25 == 0:
            assert isinstance(outcome, ev.Outcome)
            out.append(ev.JobHeartbeat(outcome.job_id, f"w{n % 3}", n // 25))
        if n % 40 == 7:
            out.append(outcome)  # a redelivered message: the log voids the repeat
        if n == 60:
            out.append(ev.JobPaused(first_job, rid(), "operator"))
        if n == 75:
            out.append(ev.JobResumed(first_job, rid()))
        if n == 90:
            out.append(ev.AlertRaised(rid(), f"job:{first_job}", "warning", "failures"))

    # A rescan of the first collection: three images changed, two removed.
    cid = next(iter(collections))
    images = collections[cid]
    changed, removed = images[:3], images[3:5]
    out.append(
        ev.CollectionScanned(
            cid,
            rid(),
            0,
            1,
            changed=[[i, f"{i}.jpg", 5_000_000, 1.8e9] for i in changed],
            removed=removed,
        )
    )
    for image in removed:
        for kind in KINDS:
            if (image, kind) in files:
                folder, size = files.pop((image, kind))
                out.append(
                    ev.RenditionDeleted(
                        image, kind, folder, f"{kind}/{image}.jpg", size, "source_removed",
                        rid(), cid, True,
                    )
                )  # fmt: skip
    retry = rid()
    out += [
        ev.JobPlanned(retry, rid(), cid, ["cache"], specs, hashes, 3, 0, 1, retry_of=first_job),
        ev.JobImagesPlanned(retry, 0, changed),
        *(generate(retry, cid, image, "cache") for image in changed),
        ev.RenditionDeleted(
            rid(), "cache", big, "cache/orphan.jpg", 777, "orphan", rid(), cid, False
        ),
        ev.FolderReconciled(fast, rid(), 40, 9_000_000, 38, 8_500_000),
        ev.CacheFolderChanged(big, rid(), 10**12, 2),
        ev.JobCancelled(next(reversed(jobs)), rid(), "no longer wanted"),
    ]
    return out


# -- helpers ----------------------------------------------------------------------------


def everything(log: EventLog) -> list[ev.StoredEvent]:
    out: list[ev.StoredEvent] = []
    while batch := log.read(after=out[-1].seq if out else 0, limit=1000):
        out.extend(batch)
    return out


def raw_models(db: Database[Any], prefix: str = "") -> dict[str, dict[str, Doc]]:
    return {table: {d["_id"]: d for d in db[prefix + table].find({})} for table in TABLE_PROJECTION}


def read_models(db: Database[Any], prefix: str = "") -> dict[str, dict[str, Doc]]:
    """The read models without the projector's bookkeeping fields."""
    return {
        table: {i: {k: v for k, v in d.items() if k not in BOOKKEEPING} for i, d in docs.items()}
        for table, docs in raw_models(db, prefix).items()
    }


def assert_equals_fold(db: Database[Any], log: EventLog, prefix: str = "") -> None:
    got, want = read_models(db, prefix), fold(everything(log))
    for table in TABLE_PROJECTION:
        assert got[table] == want[table], f"{table} differs from a fold of the log"


def drain(projector: Projector) -> int:
    """Run until a pass neither applies nor passes anything; return the position."""
    while True:
        before = projector.position()
        if projector.run_once() == 0 and projector.position() == before:
            return before


def fresh_pair(history: list[ev.Event], start: int) -> int:
    """An index from `start` on where two events in a row have keys not seen before."""
    seen = {e.key for e in history[:start]}
    for i in range(start, len(history) - 1):
        a, b = history[i], history[i + 1]
        later = {e.key for e in history[i + 2 :]}
        if a.key not in seen | later and b.key not in seen | later and a.key != b.key:
            return i
        seen.add(a.key)
    raise AssertionError("no fresh pair of events")


@pytest.fixture
def history() -> list[ev.Event]:
    return realistic_history()


@pytest.fixture
def memory_log() -> MemoryEventLog:
    return MemoryEventLog(TickingClock())


@pytest.fixture
def mongo_log(mongo_db: Database[Any]) -> Iterator[MongoEventLog]:
    log = MongoEventLog(mongo_db, TickingClock())
    log.ensure_indexes()
    yield log


def append_all(log: EventLog, events: list[ev.Event]) -> None:
    """Append singly and in batches, as actors and the planner do."""
    for i in range(0, len(events), 30):
        chunk = events[i : i + 30]
        if (i // 30) % 2:
            log.append_many(chunk)
        else:
            for e in chunk:
                log.append(e)


# -- the tests ---------------------------------------------------------------------------


def test_history_is_realistic(history: list[ev.Event]) -> None:
    kinds = {e.type for e in history}
    assert {"RenditionGenerated", "RenditionSkipped", "RenditionFailed"} <= kinds
    assert {"RenditionDeleted", "JobPaused", "JobResumed", "CollectionScanned"} <= kinds
    assert len(history) > 4 * BATCH
    assert len({e.key for e in history}) < len(history)  # some redeliveries


def test_clean_run_on_the_mongo_log_equals_the_fold(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given a realistic log in MongoDB, repeats voided
    append_all(mongo_log, history)

    # When a projector catches up in batches of 50
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    position = projector.catch_up(timeout=60)

    # Then it reached the head, and the read models equal a fold of the log
    assert position == mongo_log.head() > len({e.key for e in history})
    assert projector.lag() == 0
    assert_equals_fold(mongo_db, mongo_log)
    checkpoints = {d["_id"]: d["seq"] for d in mongo_db["checkpoints"].find({})}
    assert checkpoints == dict.fromkeys(ALL, position)


def test_events_committed_out_of_order_are_applied_in_order(
    mongo_db: Database[Any], memory_log: MemoryEventLog, history: list[ev.Event]
) -> None:
    # Given a log where seq n+2 committed before seq n+1
    i = fresh_pair(history, 120)
    append_all(memory_log, history[:i])
    n = memory_log.head()
    memory_log.insert_at(history[i + 1], n + 2)
    projector = Projector(memory_log, mongo_db, ManualClock(), batch=BATCH)

    # When the projector runs
    # Then it stops at n, waiting for n+1
    assert drain(projector) == n
    assert mongo_db["gaps"].count_documents({}) == 0
    assert read_models(mongo_db) == fold(everything(memory_log)[:n])

    # When n+1 commits, and the rest follows
    memory_log.insert_at(history[i], n + 1)
    assert drain(projector) == n + 2
    append_all(memory_log, history[i + 2 :])

    # Then both are applied, in order, and so is everything after
    assert drain(projector) == memory_log.head()
    assert_equals_fold(mongo_db, memory_log)


def test_a_gap_that_never_fills_is_passed_after_the_timeout(
    mongo_db: Database[Any], memory_log: MemoryEventLog, history: list[ev.Event]
) -> None:
    # Given a log with a position reserved by an appender that crashed
    append_all(memory_log, history[:100])
    gap = memory_log.reserve()
    append_all(memory_log, history[100:])
    clock = ManualClock()
    projector = Projector(memory_log, mongo_db, clock, gap_timeout=2.0, batch=BATCH)

    # When the projector runs before the timeout
    # Then it waits at the gap
    assert drain(projector) == gap - 1
    clock.advance(1.5)
    assert drain(projector) == gap - 1
    assert mongo_db["gaps"].count_documents({}) == 0

    # When the gap is older than the timeout
    clock.advance(1.0)
    position = drain(projector)

    # Then it is recorded, passed, and everything after is applied
    assert position == memory_log.head()
    recorded = mongo_db["gaps"].find_one({"_id": gap})
    assert recorded is not None
    assert sorted(recorded["passed_by"]) == ALL
    assert recorded["skipped_at"] == clock.now()
    assert_equals_fold(mongo_db, memory_log)


def test_a_passed_gap_that_fills_late_is_applied_exactly_once(
    mongo_db: Database[Any], memory_log: MemoryEventLog, history: list[ev.Event]
) -> None:
    # Given a log whose seq for one outcome was handed out, passed as a gap, then committed
    # (a failed outcome: increments and bounds commute, so a late apply equals the fold)
    late_at = next(
        i for i, e in enumerate(history) if i > 120 and isinstance(e, ev.RenditionFailed)
    )
    late = history[late_at]
    rest = [e for e in history[late_at + 1 :] if e.key != late.key]
    append_all(memory_log, history[:late_at])
    gap = memory_log.reserve()
    append_all(memory_log, rest)
    clock = ManualClock()
    projector = Projector(memory_log, mongo_db, clock, gap_timeout=1.0, batch=BATCH)
    drain(projector)
    clock.advance(5.0)
    assert drain(projector) == memory_log.head()
    before = read_models(mongo_db)
    memory_log.insert_at(late, gap)

    # When the projector runs again, twice
    applied = projector.run_once()
    after_first = raw_models(mongo_db)
    again = projector.run_once()

    # Then the late event is applied once, through the late path, and recorded as filled
    assert (applied, again) == (1, 0)
    assert raw_models(mongo_db) == after_first
    assert read_models(mongo_db) != before
    assert_equals_fold(mongo_db, memory_log)
    assert isinstance(late, ev.RenditionFailed)
    assert after_first["job_state"][late.job_id]["_late"] == [gap]
    recorded = mongo_db["gaps"].find_one({"_id": gap})
    assert recorded is not None
    assert sorted(recorded["filled_for"]) == ALL

    # When the mark is lost (a crash between the late write and the mark) and it runs again
    mongo_db["gaps"].update_one({"_id": gap}, {"$unset": {"filled_for": ""}})
    Projector(memory_log, mongo_db, clock, gap_timeout=1.0, batch=BATCH).run_once()

    # Then the documents' `_late` guard keeps the event from counting twice
    assert raw_models(mongo_db) == after_first
    assert_equals_fold(mongo_db, memory_log)

    # When everything is dropped and rebuilt, the late event now in its place
    live = read_models(mongo_db)
    drop(mongo_db, ALL)
    assert drain(Projector(memory_log, mongo_db, clock, batch=BATCH)) == memory_log.head()

    # Then it is applied in order, once, and the result is the live one
    assert read_models(mongo_db) == live
    assert "_late" not in raw_models(mongo_db)["job_state"][late.job_id]


def test_the_same_batches_applied_twice_change_nothing(
    mongo_db: Database[Any], memory_log: MemoryEventLog, history: list[ev.Event]
) -> None:
    # Given read models caught up with the log
    append_all(memory_log, history)
    head = drain(Projector(memory_log, mongo_db, ManualClock(), batch=BATCH))
    caught_up = raw_models(mongo_db)

    # When the checkpoints go back to 0 and a projector runs again
    mongo_db["checkpoints"].update_many({}, {"$set": {"seq": 0}})
    again = drain(Projector(memory_log, mongo_db, ManualClock(), batch=BATCH))

    # Then it reaches the head again and no document changed
    assert again == head
    assert raw_models(mongo_db) == caught_up
    assert_equals_fold(mongo_db, memory_log)


@pytest.mark.parametrize("crash_at", [1, 3])
def test_a_crash_between_write_and_checkpoint_is_harmless(
    mongo_db: Database[Any],
    memory_log: MemoryEventLog,
    history: list[ev.Event],
    monkeypatch: pytest.MonkeyPatch,
    crash_at: int,
) -> None:
    # Given a projector that dies after writing batch `crash_at`, before its checkpoint
    append_all(memory_log, history)
    real_advance = Projector._advance
    calls = itertools.count(1)

    def crash(self: Projector, seq: int) -> None:
        if next(calls) == crash_at:
            raise RuntimeError("killed between write and checkpoint")
        real_advance(self, seq)

    monkeypatch.setattr(Projector, "_advance", crash)
    with pytest.raises(RuntimeError, match="killed"):
        drain(Projector(memory_log, mongo_db, ManualClock(), batch=BATCH))
    monkeypatch.undo()
    assert Projector(memory_log, mongo_db, ManualClock()).position() == (crash_at - 1) * BATCH

    # When a fresh projector takes over, and a clean run goes into other collections
    drain(Projector(memory_log, mongo_db, ManualClock(), batch=BATCH))
    drain(Projector(memory_log, mongo_db, ManualClock(), prefix="clean_", batch=BATCH))

    # Then the result is the clean run's, field for field, and the fold's
    assert raw_models(mongo_db) == raw_models(mongo_db, "clean_")
    assert_equals_fold(mongo_db, memory_log)


@pytest.mark.parametrize(("count", "batch"), [(2, BATCH), (4, 3)], ids=["two", "four-small"])
def test_projectors_at_once_give_the_result_of_one(
    mongo_db: Database[Any],
    memory_log: MemoryEventLog,
    history: list[ev.Event],
    count: int,
    batch: int,
) -> None:
    # Given a log and several projectors on the same database (serve, the scheduler and
    # each worker machine run one); small batches make them overtake each other often
    append_all(memory_log, history)
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        projector = Projector(memory_log, mongo_db, ManualClock(), batch=batch)
        start.wait()
        try:
            drain(projector)
        except BaseException as exc:
            errors.append(exc)

    # When they run at the same time, and a single one runs into other collections
    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    drain(Projector(memory_log, mongo_db, ManualClock(), prefix="single_", batch=BATCH))

    # Then together they wrote exactly what one did, and what the fold gives
    assert errors == []
    assert raw_models(mongo_db) == raw_models(mongo_db, "single_")
    assert_equals_fold(mongo_db, memory_log)


def test_drop_and_rebuild_gives_the_same_documents(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given caught-up read models
    append_all(mongo_log, history)
    Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH).catch_up(timeout=60)
    live = read_models(mongo_db)

    # When one projection is dropped and rebuilt, then all of them
    drop(mongo_db, ["folder_stats"])
    assert mongo_db["folder_stats"].count_documents({}) == 0
    Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH).catch_up(timeout=60)
    one_rebuilt = read_models(mongo_db)
    drop(mongo_db, ALL)
    rebuilt = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    rebuilt.catch_up(timeout=60)

    # Then each rebuild gives the live documents
    assert one_rebuilt == live
    assert read_models(mongo_db) == live
    assert rebuilt.position() == mongo_log.head()
    assert_equals_fold(mongo_db, mongo_log)


def test_a_crash_after_recording_a_gap_then_a_late_commit_counts_once(
    mongo_db: Database[Any],
    memory_log: MemoryEventLog,
    history: list[ev.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a projector that recorded a gap as passed but died before its checkpoint moved
    late_at = next(
        i for i, e in enumerate(history) if i > 120 and isinstance(e, ev.RenditionFailed)
    )
    late = history[late_at]
    append_all(memory_log, history[:late_at])
    gap = memory_log.reserve()
    append_all(memory_log, [e for e in history[late_at + 1 :] if e.key != late.key])
    clock = ManualClock()
    projector = Projector(memory_log, mongo_db, clock, gap_timeout=1.0, batch=BATCH)
    assert drain(projector) == gap - 1
    clock.advance(5.0)
    real_advance = Projector._advance

    def crash_on_gap(self: Projector, seq: int) -> None:
        if seq == gap:
            raise RuntimeError("killed between recording the gap and the checkpoint")
        real_advance(self, seq)

    monkeypatch.setattr(Projector, "_advance", crash_on_gap)
    with pytest.raises(RuntimeError, match="killed"):
        projector.run_once()
    monkeypatch.undo()
    assert mongo_db["gaps"].count_documents({"_id": gap}) == 1

    # When the event commits at the passed seq, and a fresh projector runs
    memory_log.insert_at(late, gap)
    assert drain(Projector(memory_log, mongo_db, clock, gap_timeout=1.0, batch=BATCH)) == (
        memory_log.head()
    )

    # Then the event counts once: not both in order and through the late path
    assert_equals_fold(mongo_db, memory_log)


def _plan_inputs_from_images(db: Database[Any], collection_id: str) -> PlanInputs:
    """Planning's inputs from the full read models: `images` and `renditions` documents."""
    query = {"collection_id": collection_id, "removed": False, "supported": True}
    images = sorted((source_image(d) for d in db["images"].find(query)), key=lambda i: i.path)
    failures = {d["_id"]: d["failures"] for d in db["images"].find(query) if d.get("failures")}
    listed = {i.image_id for i in images}
    live = db["renditions"].find({"collection_id": collection_id, "deleted": False})
    current = {
        (r["image_id"], r["kind"]): {f: r[f] for f in CURRENCY_FIELDS}
        for r in live
        if r["image_id"] in listed
    }
    return PlanInputs(images, current, failures)


def test_the_compact_plan_index_says_what_the_images_say(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given a realistic history (scans, every outcome, a rescan with changes and removals,
    # deletions, a retry) projected by a projector
    append_all(mongo_log, history)
    Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH).catch_up(timeout=60)
    collections = [d["_id"] for d in mongo_db["collections"].find({})]

    # When planning reads each collection from plan_index
    read = ReadModels(mongo_db)
    got = {cid: read.plan_inputs(cid) for cid in collections}

    # Then it reads what the images read model says: images, current renditions, failures
    assert len(collections) == 2
    for cid in collections:
        want = _plan_inputs_from_images(mongo_db, cid)
        assert got[cid] == want
    assert sum(len(p.images) for p in got.values()) == 2 * 45 - 2
    assert any(p.failures for p in got.values()) and any(p.current for p in got.values())


def test_projections_stored_by_an_older_version_are_rebuilt_once(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given read models projected by a version without job_outcomes and plan_index
    append_all(mongo_log, history)
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    assert projector.upgrade() == []  # a new database: recorded at this version
    projector.catch_up(timeout=60)
    mongo_db["checkpoints"].update_many({}, {"$unset": {"version": ""}})
    mongo_db.drop_collection("job_outcomes")
    mongo_db.drop_collection("plan_index")

    # When a projector of this version starts, and then another one
    rebuilt = projector.upgrade(settle=0)
    again = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH).upgrade(settle=0)

    # Then the projections whose shape changed are rebuilt from the log, once, and complete
    assert sorted(rebuilt) == ["collections", "job_state"] and again == []
    assert projector.position() == 0
    projector.catch_up(timeout=60)
    assert_equals_fold(mongo_db, mongo_log)
    assert mongo_db["plan_index"].count_documents({}) > 0


def _snapshot(db: Database[Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        name: sorted(db[name].find(), key=lambda d: str(d["_id"]))
        for name in sorted(db.list_collection_names())
    }


@pytest.mark.parametrize("step", [+1, -1], ids=["newer", "older"])
def test_a_projector_writes_nothing_into_read_models_of_another_version(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event], step: int
) -> None:
    # Given a projector running with half the history applied
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    half = len(history) // 2
    append_all(mongo_log, history[:half])
    projector.upgrade(settle=0)
    projector.catch_up(timeout=60)
    # ... when a process of another version records job_state at its own version
    own = PROJECTION_VERSIONS["job_state"]
    mongo_db["checkpoints"].update_one({"_id": "job_state"}, {"$set": {"version": own + step}})
    append_all(mongo_log, history[half:])
    before = _snapshot(mongo_db)

    # When the running projector takes its next pass
    with pytest.raises(VersionMismatch) as refused:
        projector.run_once()

    # Then it says why and what to do, and changed no read model and no checkpoint
    assert "job_state" in str(refused.value)
    assert ("newer imagecache" in str(refused.value)) == (step > 0)
    assert ("restart this process" in str(refused.value)) == (step < 0)
    assert _snapshot(mongo_db) == before


def test_run_forever_says_once_that_it_stopped_writing(
    mongo_db: Database[Any],
    mongo_log: MongoEventLog,
    history: list[ev.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given read models recorded at a newer version than this code's
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    projector.upgrade(settle=0)
    own = PROJECTION_VERSIONS["renditions"]
    mongo_db["checkpoints"].update_one({"_id": "renditions"}, {"$set": {"version": own + 1}})
    append_all(mongo_log, history[:20])

    # When the projector loop runs for a while
    stop = threading.Event()
    loop = threading.Thread(target=projector.run_forever, args=(stop,))
    with caplog.at_level("ERROR", logger="imagecache.projector"):
        loop.start()
        stop.wait(0.5)
        stop.set()
        loop.join(timeout=10)

    # Then it applied nothing, said so once, and stopped when asked
    assert not loop.is_alive()
    assert projector.position() == 0
    said = [r for r in caplog.records if "stopped writing" in r.getMessage()]
    assert len(said) == 1 and "renditions" in said[0].getMessage()


def test_an_older_imagecache_never_rebuilds_a_newer_read_model(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given read models projected and then upgraded by a newer version
    append_all(mongo_log, history)
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)
    projector.upgrade(settle=0)
    projector.catch_up(timeout=60)
    own = PROJECTION_VERSIONS["collections"]
    mongo_db["checkpoints"].update_one({"_id": "collections"}, {"$set": {"version": own + 1}})
    before = _snapshot(mongo_db)

    # When this (older) version starts
    with pytest.raises(VersionMismatch) as refused:
        Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH).upgrade(settle=0)

    # Then it refuses with a clear message and drops nothing
    assert "collections was written by a newer imagecache" in str(refused.value)
    assert "run the newer imagecache" in str(refused.value)
    assert _snapshot(mongo_db) == before


def test_checkpoints_a_projector_creates_carry_its_version(
    mongo_db: Database[Any], mongo_log: MongoEventLog, history: list[ev.Event]
) -> None:
    # Given a projector that never ran upgrade (a tool, a test, a bench)
    append_all(mongo_log, history[:30])
    projector = Projector(mongo_log, mongo_db, ManualClock(), batch=BATCH)

    # When it projects
    projector.catch_up(timeout=60)

    # Then its checkpoints record this code's versions, and it keeps projecting
    found = {d["_id"]: d["version"] for d in mongo_db["checkpoints"].find()}
    assert found == {name: PROJECTION_VERSIONS[name] for name in PROJECTIONS}
    append_all(mongo_log, history[30:40])
    assert projector.catch_up(timeout=60) == mongo_log.head()


def test_a_document_moved_on_by_another_projector_between_read_and_write_is_read_again(
    mongo_db: Database[Any], mongo_log: MongoEventLog
) -> None:
    # Given a document another projector has brought to seq 10 (each seq adds its number)
    from domain.changes import Change

    coll = mongo_db["race"]
    coll.insert_one({"_id": "d", "_seq": 10, "n": sum(range(1, 11))})
    items = [(seq, Change("race", "d", inc={"n": seq})) for seq in range(8, 14)]

    class StaleOnce:
        """The collection, but the first read sees the document as it was at seq 7."""

        name = "race"
        reads = 0

        def find_one(self, *args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return {"_id": "d", "_seq": 7} if self.reads == 1 else coll.find_one(*args, **kwargs)

        def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
            return coll.bulk_write(*args, **kwargs)

    # When this projector applies seqs 8..13, having read the document before the other wrote
    stale = StaleOnce()
    Projector(mongo_log, mongo_db, ManualClock())._write_newer(stale, "d", items)

    # Then its guarded write is refused, it reads again, and applies 11..13 once each
    assert stale.reads == 2
    assert coll.find_one({"_id": "d"}) == {"_id": "d", "_seq": 13, "n": sum(range(1, 14))}

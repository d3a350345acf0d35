"""The event log contract, run against MemoryEventLog and MongoEventLog alike."""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from domain.errors import ImportRefused
from domain.events import (
    AlertRaised,
    Event,
    JobImagesPlanned,
    LibraryRootAdded,
    RenditionFailed,
    RenditionSkipped,
    SeqVoided,
    StoredEvent,
)
from domain.ports import EventLog
from projections.event_log import MongoEventLog
from projections.memory_log import MemoryEventLog


class FakeClock:
    """A clock that moves one millisecond per reading."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._ticks = itertools.count()
        self._start = start

    def now(self) -> float:
        return self._start + next(self._ticks) / 1000


def alert(key: str, message: str = "", subject: str = "") -> AlertRaised:
    """An event whose idempotency key is `alert:<key>`."""
    return AlertRaised(key, subject or f"test:{key}", "info", message)


def everything(log: EventLog, page: int = 1000) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while batch := log.read(after=out[-1].seq if out else 0, limit=page):
        out.extend(batch)
    return out


def appender_keys(run: str, worker: int, count: int) -> list[str]:
    """Half the keys are this worker's own, half are shared by every worker."""
    return [f"{run}-w{worker}-{i}" if i % 2 == 0 else f"{run}-shared-{i}" for i in range(count)]


def append_all(log: EventLog, keys: Sequence[str], worker: int) -> list[tuple[str, StoredEvent]]:
    """Append one event per key; even workers one at a time, odd ones in batches of 10."""
    events = [alert(k, f"worker {worker}") for k in keys]
    if worker % 2 == 0:
        got = [log.append(e) for e in events]
    else:
        got = [s for i in range(0, len(events), 10) for s in log.append_many(events[i : i + 10])]
    return [(f"alert:{k}", s) for k, s in zip(keys, got, strict=True)]


def check_concurrent_appends(
    log: EventLog, results: list[tuple[str, StoredEvent]], appends: int
) -> None:
    """Each key stored once, each seq 1..head present once, each caller told the truth."""
    wanted = {key for key, _ in results}
    stored = everything(log)
    assert log.head() == appends
    assert [s.seq for s in stored] == list(range(1, appends + 1))
    real = [s for s in stored if not isinstance(s.event, SeqVoided)]
    voided = [s for s in stored if isinstance(s.event, SeqVoided)]
    assert Counter(s.key for s in real) == Counter(wanted)
    assert len(voided) == appends - len(wanted)
    assert all(isinstance(s.event, SeqVoided) and s.event.seq == s.seq for s in voided)
    by_key = {s.key: s for s in real}
    for key, got in results:
        assert got.key == key
        assert got.seq == by_key[key].seq


def append_one(log: EventLog) -> int:
    return log.append(alert(uuid.uuid4().hex)).seq


def race(threads: int, call: Callable[[], int]) -> list[int]:
    """Run `call` in several threads released at the same moment; return their results."""
    start = threading.Barrier(threads)
    got: list[int] = []

    def run() -> None:
        start.wait()
        got.append(call())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=30)
    return got


class EventLogContract:
    """What every event log promises. Subclasses provide the `log` fixture."""

    @pytest.fixture
    def log(self) -> EventLog:
        raise NotImplementedError

    def test_empty_log(self, log: EventLog) -> None:
        assert log.head() == 0
        assert log.read() == []
        assert log.by_key(f"alert:{uuid.uuid4().hex}") is None
        assert log.append_many([]) == []

    def test_append_hands_out_consecutive_seqs(self, log: EventLog) -> None:
        # Given three events
        events = [alert(uuid.uuid4().hex) for _ in range(3)]

        # When they are appended one by one
        got = [log.append(e) for e in events]

        # Then they are at 1, 2, 3 with their keys, streams and facts
        assert [s.seq for s in got] == [1, 2, 3]
        assert [s.event for s in got] == events
        assert [(s.key, s.stream, s.type) for s in got] == [
            (e.key, e.stream, "AlertRaised") for e in events
        ]
        assert got[0].at < got[1].at < got[2].at
        assert log.read() == got
        assert log.head() == 3

    def test_append_of_an_existing_key_returns_the_stored_event(self, log: EventLog) -> None:
        # Given an event stored under a key
        key = uuid.uuid4().hex
        first = log.append(alert(key, "first"))

        # When another event with the same key is appended
        again = log.append(alert(key, "second"))

        # Then the stored one comes back, unchanged
        assert again == first
        assert log.by_key(first.key) == first
        # And its position is filled, so a reader sees no gap to wait for
        assert log.head() == 2
        stored = log.read()
        assert [s.seq for s in stored] == [1, 2]
        assert stored[1].event == SeqVoided(2)
        # And the next append follows on
        assert log.append(alert(uuid.uuid4().hex)).seq == 3

    def test_append_many_keeps_input_order(self, log: EventLog) -> None:
        # Given a first event, then a batch of five
        log.append(alert(uuid.uuid4().hex))
        events = [alert(uuid.uuid4().hex, str(i)) for i in range(5)]

        # When the batch is appended
        got = log.append_many(events)

        # Then they follow in input order
        assert [s.seq for s in got] == [2, 3, 4, 5, 6]
        assert [s.event for s in got] == events
        assert log.read(after=1) == got

    def test_append_many_mixes_new_and_existing_keys(self, log: EventLog) -> None:
        # Given two stored events
        old_a, old_b = alert(uuid.uuid4().hex, "a"), alert(uuid.uuid4().hex, "b")
        stored_a, stored_b = log.append_many([old_a, old_b])
        new_c, new_d = alert(uuid.uuid4().hex, "c"), alert(uuid.uuid4().hex, "d")

        # When a batch repeats them among new events, one new key twice
        batch: list[Event] = [new_c, alert(old_b.alert_id, "b2"), new_d, old_a, new_c]
        got = log.append_many(batch)

        # Then results keep input order: new events stored, repeats answered from the log
        assert got[1] == stored_b and got[3] == stored_a
        assert (got[0].seq, got[0].event) == (3, new_c)
        assert (got[2].seq, got[2].event) == (5, new_d)
        assert got[4] == got[0]
        # And the repeated positions are voided, so positions stay contiguous
        stored = log.read()
        assert [s.seq for s in stored] == list(range(1, 8))
        assert [s.event for s in stored if isinstance(s.event, SeqVoided)] == [
            SeqVoided(4),
            SeqVoided(6),
            SeqVoided(7),
        ]

    def test_read_pages_through_everything_in_order(self, log: EventLog) -> None:
        # Given 23 events
        events = [alert(uuid.uuid4().hex, str(i)) for i in range(23)]
        log.append_many(events[:10])
        for e in events[10:]:
            log.append(e)

        # When they are read in pages of 5
        pages = []
        after = 0
        while page := log.read(after=after, limit=5):
            pages.append(page)
            after = page[-1].seq

        # Then the pages hold every event once, in order
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        assert [s.event for p in pages for s in p] == events
        assert [s.seq for p in pages for s in p] == list(range(1, 24))
        assert log.read(after=20, limit=100) == pages[-1]

    def test_stream_reads_one_stream(self, log: EventLog) -> None:
        # Given events of two streams, interleaved
        mine, other = f"job:{uuid.uuid4().hex}", f"job:{uuid.uuid4().hex}"
        for i in range(6):
            log.append(alert(uuid.uuid4().hex, str(i), subject=mine if i % 2 else other))

        # When one stream is read
        got = log.stream(mine)

        # Then only its events come, ascending, with after and limit honoured
        assert [s.seq for s in got] == [2, 4, 6]
        assert all(s.stream == mine for s in got)
        assert [s.seq for s in log.stream(mine, after=2, limit=1)] == [4]
        assert log.stream(f"job:{uuid.uuid4().hex}") == []

    def test_job_outcomes_reads_one_jobs_outcomes_after_a_position(self, log: EventLog) -> None:
        # Given a job's plan page, its outcomes, and another job's outcome, interleaved
        job, other = uuid.uuid4().hex, uuid.uuid4().hex
        log.append(JobImagesPlanned(job, 0, ["a", "b"]))
        log.append(RenditionSkipped(job, "a", "c0ffee00c0ffee00", "cache", "current"))
        log.append(RenditionSkipped(other, "x", "c0ffee00c0ffee00", "cache", "current"))
        failed = RenditionFailed(job, "b", "c0ffee00c0ffee00", "cache", "corrupt", "truncated")
        log.append(failed)

        # When its outcomes are read, from the start and after the first one
        # Then only outcomes of that job come, as (type, image, kind, error class)
        assert sorted(log.job_outcomes(job)) == [
            ("RenditionFailed", "b", "cache", "corrupt"),
            ("RenditionSkipped", "a", "cache", ""),
        ]
        assert list(log.job_outcomes(job, after=2)) == [
            ("RenditionFailed", "b", "cache", "corrupt")
        ]

    def test_by_key_and_existing_keys(self, log: EventLog) -> None:
        # Given two stored events
        a, b = alert(uuid.uuid4().hex), LibraryRootAdded(f"/lib/{uuid.uuid4().hex}")
        stored_a, stored_b = log.append(a), log.append(b)
        missing = f"alert:{uuid.uuid4().hex}"

        # When they are looked up by key
        # Then stored keys are found and others are not
        assert log.by_key(a.key) == stored_a
        assert log.by_key(b.key) == stored_b
        assert log.by_key(missing) is None
        assert log.existing_keys([a.key, missing, b.key]) == {a.key, b.key}
        assert log.existing_keys([]) == set()

    def test_seqs_returns_the_stored_positions(self, log: EventLog) -> None:
        # Given five events
        got = log.append_many([alert(uuid.uuid4().hex) for _ in range(5)])

        # When some positions are asked for, with repeats and positions beyond the head
        found = log.seqs([4, 2, 99, 2])

        # Then the stored ones come back ascending, missing ones left out
        assert found == [got[1], got[3]]
        assert log.seqs([]) == []

    def test_import_refuses_a_non_empty_log(self, log: EventLog) -> None:
        # Given a log with one event
        first = log.append(alert(uuid.uuid4().hex))
        record = StoredEvent.from_record(first.to_record()).to_record()
        record.update(seq=2, key=f"alert:{uuid.uuid4().hex}")

        # When records are imported into it
        # Then the import is refused and nothing changes
        with pytest.raises(ImportRefused):
            log.import_records([record])
        assert log.read() == [first]
        assert log.head() == 1

    def test_import_round_trips_an_export(self, log: EventLog) -> None:
        # Given an export of a log with a repeated key (a voided seq) and a position never filled
        source = MemoryEventLog(FakeClock(1_600_000_000.0))
        key = uuid.uuid4().hex
        source.append_many([alert(key), alert(uuid.uuid4().hex), alert(key)])
        source.reserve()
        source.append(LibraryRootAdded(f"/lib/{uuid.uuid4().hex}"))
        records = [s.to_record() for s in source.read()]

        # When it is imported
        count = log.import_records(records)

        # Then every event is back at its seq, under its key, with its time
        assert count == 4
        assert [s.to_record() for s in everything(log)] == records
        assert [s.seq for s in log.read()] == [1, 2, 3, 5]
        assert log.head() == 5
        assert log.by_key(f"alert:{key}") == source.by_key(f"alert:{key}")
        # And appends continue after the imported head
        assert log.append(alert(uuid.uuid4().hex)).seq == 6
        assert log.append(alert(key)).seq == 1

    def test_concurrent_appenders_lose_and_repeat_nothing(self, log: EventLog) -> None:
        # Given 8 threads of 200 appends each, half of them with keys every thread uses
        run, threads, per_thread = uuid.uuid4().hex[:8], 8, 200
        results: list[list[tuple[str, StoredEvent]]] = [[] for _ in range(threads)]
        start = threading.Barrier(threads)

        def work(worker: int) -> None:
            keys = appender_keys(run, worker, per_thread)
            start.wait()
            results[worker] = append_all(log, keys, worker)

        # When they append at the same time
        workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=60)

        # Then each key is stored once and every seq up to the head is there once
        flat = [r for rs in results for r in rs]
        assert len(flat) == threads * per_thread
        check_concurrent_appends(log, flat, threads * per_thread)


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def log(self) -> EventLog:
        return MemoryEventLog(FakeClock())


@pytest.mark.integration
class TestMongoEventLog(EventLogContract):
    @pytest.fixture
    def log(self, mongo_db: Database[Any]) -> Iterator[EventLog]:
        log = MongoEventLog(mongo_db, FakeClock())
        log.ensure_indexes()
        yield log

    def test_first_appends_racing_on_a_new_log_each_get_a_seq(
        self, mongo_db: Database[Any]
    ) -> None:
        # Given new, empty logs (no seq counter yet), 8 appenders racing on each
        client, names = mongo_db.client, [f"{mongo_db.name}_{i}" for i in range(8)]
        try:
            for name in names:
                log = MongoEventLog(client[name], FakeClock())

                # When they make the log's first appends at the same time
                got = race(8, functools.partial(append_one, log))

                # Then each one got its own seq, and the counter counted each once
                assert sorted(got) == list(range(1, 9))
                assert log.head() == 8
        finally:
            for name in names:
                client.drop_database(name)

    def test_concurrent_processes_lose_and_repeat_nothing(
        self, log: EventLog, mongodb_uri: str, mongo_db: Database[Any]
    ) -> None:
        # Given 4 processes of 150 appends each, each with its own client, half the keys shared
        run, processes, per_process = uuid.uuid4().hex[:8], 4, 150
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(processes), ctx.Queue()
        workers = [
            ctx.Process(
                target=append_in_process,
                args=(mongodb_uri, mongo_db.name, run, w, per_process, start, results),
            )
            for w in range(processes)
        ]

        # When they append to the same database at the same time
        for p in workers:
            p.start()
        try:
            got = [results.get(timeout=60) for _ in workers]
        finally:
            for p in workers:
                p.join(timeout=10)
        assert [p.exitcode for p in workers] == [0] * processes

        # Then each key is stored once and every seq up to the head is there once
        flat = [(key, StoredEvent.from_record(record)) for rs in got for key, record in rs]
        check_concurrent_appends(log, flat, processes * per_process)


def append_in_process(
    uri: str,
    db_name: str,
    run: str,
    worker: int,
    count: int,
    start: Any,
    results: Any,
) -> None:
    """One appending process: its own client and log object on the shared database."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        log = MongoEventLog(client[db_name], FakeClock())
        log.head()  # connect before the start line, so the appends overlap
        start.wait(timeout=60)
        got = append_all(log, appender_keys(run, worker, count), worker)
        results.put([(key, s.to_record()) for key, s in got])
    finally:
        client.close()

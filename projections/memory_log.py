"""The in-memory twin of the event log, for unit tests and single-process tools."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from domain.errors import ImportRefused
from domain.events import Event, OutcomeRow, SeqVoided, StoredEvent, outcome_row, stored
from domain.ports import Clock


class MemoryEventLog:
    """Same promises as MongoEventLog, in one process's memory."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_seq: dict[int, StoredEvent] = {}
        self._by_key: dict[str, StoredEvent] = {}
        self._head = 0

    def _store(self, event: Event) -> StoredEvent:
        self._head += 1
        existing = self._by_key.get(event.key)
        if existing is not None:
            voided = stored(SeqVoided(self._head), self._head, self._clock.now())
            self._by_seq[self._head] = voided
            self._by_key[voided.key] = voided
            return existing
        record = stored(event, self._head, self._clock.now())
        self._by_seq[record.seq] = record
        self._by_key[record.key] = record
        return record

    def append(self, event: Event) -> StoredEvent:
        with self._lock:
            return self._store(event)

    def append_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        with self._lock:
            return [self._store(e) for e in events]

    def read(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        with self._lock:
            seqs = sorted(s for s in self._by_seq if after < s <= after + limit)
            return [self._by_seq[s] for s in seqs]

    def head(self) -> int:
        return self._head

    def by_key(self, key: str) -> StoredEvent | None:
        return self._by_key.get(key)

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        return {k for k in keys if k in self._by_key}

    def stream(self, stream: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        with self._lock:
            found = [e for s, e in sorted(self._by_seq.items()) if s > after and e.stream == stream]
        return found[:limit]

    def job_outcomes(self, job_id: str, after: int = 0) -> Iterator[OutcomeRow]:
        for s in self.stream(f"job:{job_id}", after=after, limit=1 << 62):
            if (row := outcome_row(s)) is not None:
                yield row

    def of_image(self, image_id: str, limit: int = 1000) -> list[StoredEvent]:
        with self._lock:
            found = [
                e
                for _, e in sorted(self._by_seq.items())
                if getattr(e.event, "image_id", None) == image_id
            ]
        return found[:limit]

    def seqs(self, wanted: Iterable[int]) -> list[StoredEvent]:
        return [self._by_seq[s] for s in sorted(set(wanted)) if s in self._by_seq]

    def import_records(self, records: Iterable[dict[str, Any]]) -> int:
        with self._lock:
            if self._head:
                raise ImportRefused("the event log is not empty")
            count = 0
            for record in records:
                s = StoredEvent.from_record(record)
                self._by_seq[s.seq] = s
                self._by_key[s.key] = s
                self._head = max(self._head, s.seq)
                count += 1
            return count

    def insert_at(self, event: Event, seq: int) -> StoredEvent:
        """Store an event at a chosen position: how tests make late commits and gaps."""
        with self._lock:
            record = stored(event, seq, self._clock.now())
            self._by_seq[seq] = record
            self._by_key[record.key] = record
            self._head = max(self._head, seq)
            return record

    def reserve(self, count: int = 1) -> int:
        """Hand out positions without storing anything: a crashed appender, for tests."""
        with self._lock:
            self._head += count
            return self._head - count + 1

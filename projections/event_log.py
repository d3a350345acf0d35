"""The event log in MongoDB: one `events` collection, a `counters` document for `seq`.

`seq` comes from an atomic counter, so an append may commit after a larger
one: readers use the projector's high-water mark. An append whose key exists
stores a `SeqVoided` marker at the reserved position instead, so positions
stay contiguous and readers never wait for a duplicate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from domain.errors import ImportRefused, LogError
from domain.events import Event, SeqVoided, StoredEvent, stored
from domain.ports import Clock

COUNTER_ID = "events"
OUTCOME_TYPES = ("RenditionGenerated", "RenditionSkipped", "RenditionFailed")


def _record(s: StoredEvent) -> dict[str, Any]:
    return {"_id": s.seq, **s.to_record()}


def _load(doc: dict[str, Any]) -> StoredEvent:
    doc.pop("_id", None)
    return StoredEvent.from_record(doc)


class MongoEventLog:
    """The event log on MongoDB (or a MongoDB-wire server)."""

    def __init__(self, db: Database[Any], clock: Clock) -> None:
        self._events = db["events"]
        self._counters = db["counters"]
        self._clock = clock

    def ensure_indexes(self) -> None:
        """Create the unique `seq` and `key` indexes and the lookup indexes (idempotent)."""
        self._events.create_index("seq", unique=True)
        self._events.create_index("key", unique=True)
        self._events.create_index([("stream", ASCENDING), ("seq", ASCENDING)])
        self._events.create_index("data.image_id", sparse=True)
        self._events.create_index("at")

    def _reserve(self, count: int) -> int:
        """Reserve `count` positions; return the first."""
        for _ in range(2):
            doc = self._counters.find_one_and_update(
                {"_id": COUNTER_ID}, {"$inc": {"n": count}}, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return int(doc["n"]) - count + 1
            # The first append creates the counter apart from the increment: when appenders
            # race, an upsert that increments can apply and still answer None (SecantusDB).
            with contextlib.suppress(DuplicateKeyError):
                self._counters.update_one(
                    {"_id": COUNTER_ID}, {"$setOnInsert": {"n": 0}}, upsert=True
                )
        raise LogError("the seq counter could not be created")

    def _void(self, seq: int) -> None:
        marker = SeqVoided(seq)
        with contextlib.suppress(DuplicateKeyError):  # already voided by an earlier attempt
            self._events.insert_one(_record(stored(marker, seq, self._clock.now())))

    def _existing(self, event: Event, seq: int) -> StoredEvent:
        self._void(seq)
        found = self.by_key(event.key)
        if found is None:
            raise LogError(f"append of {event.key} collided with a seq, not a key, at {seq}")
        return found

    def append(self, event: Event) -> StoredEvent:
        seq = self._reserve(1)
        record = stored(event, seq, self._clock.now())
        try:
            self._events.insert_one(_record(record))
        except DuplicateKeyError:
            return self._existing(event, seq)
        return record

    def append_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        if not events:
            return []
        first = self._reserve(len(events))
        now = self._clock.now()
        records = [stored(e, first + i, now) for i, e in enumerate(events)]
        try:
            self._events.insert_many([_record(r) for r in records], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise LogError(f"append of {len(events)} events failed: {errors[:1]}") from exc
            for err in errors:
                i = err["index"]
                records[i] = self._existing(events[i], first + i)
        return records

    def read(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        # Bounded by seq, not only by limit: SecantusDB applies a limit after fetching the
        # whole rest of the range, which made paging through the log quadratic. Positions
        # have no holes but uncommitted ones, so the bound loses nothing; a gap only makes
        # the page shorter, and readers already handle that.
        query = {"seq": {"$gt": after, "$lte": after + limit}}
        cursor = self._events.find(query).sort("seq", ASCENDING).limit(limit)
        return [_load(d) for d in cursor]

    def head(self) -> int:
        doc = self._counters.find_one({"_id": COUNTER_ID})
        return int(doc["n"]) if doc else 0

    def by_key(self, key: str) -> StoredEvent | None:
        doc = self._events.find_one({"key": key})
        return _load(doc) if doc else None

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        found = self._events.find({"key": {"$in": list(keys)}}, {"key": 1, "_id": 0})
        return {d["key"] for d in found}

    def stream(self, stream: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        query = {"stream": stream, "seq": {"$gt": after}}
        cursor = self._events.find(query).sort("seq", ASCENDING).limit(limit)
        return [_load(d) for d in cursor]

    def seqs(self, wanted: Iterable[int]) -> list[StoredEvent]:
        # Sorted here: SecantusDB 0.7.0b3 returns an indexed `$in` in list order despite .sort().
        found = [_load(d) for d in self._events.find({"seq": {"$in": sorted(set(wanted))}})]
        return sorted(found, key=lambda s: s.seq)

    def job_outcomes(self, job_id: str, after: int = 0) -> Iterator[tuple[str, str, str, str]]:
        # Only the fields recovery needs, without building events: a job may have millions.
        # Indexed by (stream, seq), types filtered here: on SecantusDB this reads fastest.
        query: dict[str, Any] = {"stream": f"job:{job_id}"}
        if after:
            query["seq"] = {"$gt": after}
        for d in self._events.find(query).batch_size(10_000):
            if d["type"] in OUTCOME_TYPES:
                data = d["data"]
                yield d["type"], data["image_id"], data["kind"], data.get("error_class", "")

    def of_image(self, image_id: str, limit: int = 1000) -> list[StoredEvent]:
        """Outcome and deletion events of one image, ascending."""
        cursor = self._events.find({"data.image_id": image_id}).sort("seq", ASCENDING)
        return [_load(d) for d in cursor.limit(limit)]

    def import_records(self, records: Iterable[dict[str, Any]]) -> int:
        if self._events.estimated_document_count() or self.head():
            raise ImportRefused("the event log is not empty")
        count, top, batch = 0, 0, []
        for record in records:
            StoredEvent.from_record(record)  # refuse what we could not read back
            batch.append({"_id": record["seq"], **record})
            top = max(top, int(record["seq"]))
            if len(batch) >= 1000:
                self._events.insert_many(batch, ordered=True)
                count, batch = count + len(batch), []
        if batch:
            self._events.insert_many(batch, ordered=True)
            count += len(batch)
        self._counters.update_one({"_id": COUNTER_ID}, {"$max": {"n": top}}, upsert=True)
        return count

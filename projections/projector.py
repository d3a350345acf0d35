"""The projector: applies the log to the read models, exactly once per document.

Reading: events come in `seq` order up to the high-water mark (the end of the
contiguous run after the checkpoint). A missing `seq` older than
`gap_timeout` seconds is recorded in `gaps` and passed; if its event commits
later it is applied through the late path, so no event is lost.

Writing: all changes of a batch to one document are merged into one update
guarded by the document's `_seq` (the position it reached), so a batch
applied twice, by a crash between write and checkpoint or by two projectors,
changes nothing. A late event is guarded by its seq in the document's `_late`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from domain.changes import Change
from domain.errors import VersionMismatch
from domain.events import StoredEvent
from domain.ports import Clock, EventLog
from domain.projection import PROJECTION_VERSIONS, PROJECTIONS, changes

log = logging.getLogger("imagecache.projector")

BOOKKEEPING = ("_seq", "_late")
# How long an upgrade waits between recording a projection's new version and dropping it:
# a projector running elsewhere sees the new version at its next pass and stops writing, and
# this lets a pass already in flight (at most `batch` events) end before the tables go.
UPGRADE_SETTLE = 2.0


class Projector:
    """Keeps the named projections caught up with the log, in collections named prefix+table."""

    def __init__(
        self,
        events: EventLog,
        db: Database[Any],
        clock: Clock,
        *,
        projections: Iterable[str] = tuple(PROJECTIONS),
        prefix: str = "",
        gap_timeout: float = 5.0,
        batch: int = 1000,
    ) -> None:
        self.names = tuple(projections)
        unknown = set(self.names) - set(PROJECTIONS)
        if unknown:
            raise ValueError(f"unknown projections: {sorted(unknown)}")
        self.tables = {t for n in self.names for t in PROJECTIONS[n]}
        self._events = events
        self._db = db
        self._clock = clock
        self._prefix = prefix
        self._checkpoints = db[prefix + "checkpoints"]
        self._gaps = db[prefix + "gaps"]
        self._gap_timeout = gap_timeout
        self._batch = batch
        self._gap_seen: dict[int, float] = {}

    # -- positions ----------------------------------------------------------------

    def position(self) -> int:
        """The lowest checkpoint of this projector's projections."""
        return self._position(self._checkpoint_docs())

    def _position(self, stored: dict[str, dict[str, Any]]) -> int:
        return min(int(stored[n]["seq"]) if n in stored else 0 for n in self.names)

    def _checkpoint_docs(self) -> dict[str, dict[str, Any]]:
        found = self._checkpoints.find({"_id": {"$in": list(self.names)}})
        return {d["_id"]: d for d in found}

    def upgrade(self, settle: float = UPGRADE_SETTLE) -> list[str]:
        """Rebuild projections stored at an older version than this code's; return their names.

        Run at start, before projecting: the read models are dropped and replayed from seq 0
        (recorded with the new version first, so another process starting at the same time
        does not drop them again, and a projector of the older code still running elsewhere
        stops writing: see `run_once`). A projection stored by a *newer* version is never
        touched: that raises VersionMismatch, so a rolled-back process cannot undo an upgrade.
        """
        stored = self._checkpoint_docs()
        self._check_not_newer(stored)
        claimed = []
        for name in self.names:
            version = PROJECTION_VERSIONS[name]
            found = stored.get(name)
            if found is None:
                self._checkpoints.update_one(
                    {"_id": name}, {"$setOnInsert": {"seq": 0, "version": version}}, upsert=True
                )
                continue
            was = _version(found)
            if was == version:
                continue
            done = self._checkpoints.update_one(
                {"_id": name, "version": {"$ne": version}}, {"$set": {"version": version}}
            )
            if done.modified_count != 1:
                continue  # another process is rebuilding it
            log.warning(
                "projection %s is stored at version %s, this code writes %s:"
                " rebuilding it from the log",
                name, was, version,
            )  # fmt: skip
            claimed.append(name)
        if claimed:
            time.sleep(settle)
            drop(self._db, claimed, self._prefix)
        return claimed

    def _check_not_newer(self, stored: dict[str, dict[str, Any]]) -> None:
        for name in self.names:
            if name in stored and _version(stored[name]) > PROJECTION_VERSIONS[name]:
                raise VersionMismatch(
                    f"the read model {name} was written by a newer imagecache (version"
                    f" {_version(stored[name])}; this one writes {PROJECTION_VERSIONS[name]})",
                    hint="run the newer imagecache; an older one must not change its read models",
                )

    def _check_versions(self, stored: dict[str, dict[str, Any]]) -> None:
        """Refuse to write read models whose stored version is not this code's."""
        self._check_not_newer(stored)
        for name in self.names:
            if name in stored and _version(stored[name]) != PROJECTION_VERSIONS[name]:
                raise VersionMismatch(
                    f"the read model {name} is stored at version {_version(stored[name])};"
                    f" this imagecache writes {PROJECTION_VERSIONS[name]}",
                    hint="restart this process: it rebuilds the read model at start",
                )

    def lag(self) -> int:
        """How many positions the projections are behind the log's head."""
        return max(self._events.head() - self.position(), 0)

    def _advance(self, seq: int) -> None:
        ops = [
            UpdateOne(
                {"_id": n},
                {"$max": {"seq": seq}, "$setOnInsert": {"version": PROJECTION_VERSIONS[n]}},
                upsert=True,
            )
            for n in self.names
        ]
        self._checkpoints.bulk_write(ops, ordered=False)  # one round trip for all of them

    # -- the loop -----------------------------------------------------------------

    def run_once(self, until: int | None = None) -> int:
        """Apply the next contiguous batch (and any late-filled gaps); return events applied."""
        stored = self._checkpoint_docs()
        self._check_versions(stored)  # another version's read models: write nothing
        applied = self._fill_late_gaps()
        pos = self._position(stored)
        limit = self._batch if until is None else min(self._batch, until - pos)
        if limit <= 0:
            return applied
        batch = self._events.read(after=pos, limit=limit)
        run: list[StoredEvent] = []
        for s in batch:
            if s.seq != pos + len(run) + 1:
                break
            run.append(s)
        if run:
            self._apply_run(run)
            return applied + len(run)
        if batch or self._events.head() > pos:
            self._maybe_pass_gap(pos + 1)
        return applied

    def apply_run(self, run: list[StoredEvent]) -> None:
        """Apply events seq position+1, +2, ... and move the checkpoint past them.

        What `run_once` does after reading them; a bulk loader that holds the events it
        stored (the benchmarks) hands them over here instead of reading them back.
        """
        if not run:
            return
        start = self.position() + 1
        if [s.seq for s in run] != list(range(start, start + len(run))):
            raise ValueError(f"apply_run takes a contiguous run of seqs from {start}")
        self._apply_run(run)

    def _apply_run(self, run: list[StoredEvent]) -> None:
        self._apply(run, self._passed(run[0].seq, run[-1].seq))
        self._advance(run[-1].seq)
        for s in run:
            self._gap_seen.pop(s.seq, None)

    def catch_up(self, until: int | None = None, timeout: float | None = None) -> int:
        """Apply until the position reaches `until` (default: the head now); return the position."""
        target = self._events.head() if until is None else until
        deadline = None if timeout is None else self._clock.now() + timeout
        stop = threading.Event()
        while self.position() < target:
            if self.run_once(until=target) == 0:
                if deadline is not None and self._clock.now() > deadline:
                    break
                stop.wait(0.05)
        return self.position()

    def run_forever(self, stop: threading.Event, idle: float = 0.2) -> None:
        """Keep caught up until `stop` is set; errors are logged and retried, never fatal."""
        refused = ""
        while not stop.is_set():
            try:
                # A short pass waits too: events arriving one by one are applied a few
                # hundred ms later in one pass, not in one pass (a dozen round trips) each.
                if self.run_once() < self._batch:
                    stop.wait(idle)
                refused = ""
            except VersionMismatch as exc:
                if str(exc) != refused:  # said once, not every few seconds
                    log.error("projector stopped writing: %s", exc)
                    refused = str(exc)
                stop.wait(5.0)
            except Exception:
                log.exception("projector pass failed; retrying")
                stop.wait(max(idle, 1.0))

    # -- gaps ---------------------------------------------------------------------

    def unfilled_gaps(self) -> list[int]:
        """Seqs some of these projections passed and have not applied late yet."""
        return sorted(self._pending_gaps())

    def _pending_gaps(self) -> dict[int, set[str]]:
        """Passed seqs, each with those of these projections that have not applied it late."""
        pending: dict[int, set[str]] = {}
        for gap in self._gaps.find({"passed_by": {"$in": list(self.names)}}):
            names = set(gap.get("passed_by", [])) & set(self.names)
            names -= set(gap.get("filled_for", []))
            if names:
                pending[int(gap["_id"])] = names
        return pending

    def _maybe_pass_gap(self, seq: int) -> None:
        now = self._clock.now()
        first = self._gap_seen.setdefault(seq, now)
        known = self._gaps.find_one({"_id": seq}, {"_id": 1}) is not None
        if now - first < self._gap_timeout and not known:
            return
        if not known:
            log.warning(
                "passing seq %d: not committed after %.1fs; recorded as a gap", seq, now - first
            )
        self._gaps.update_one(
            {"_id": seq},
            {
                "$setOnInsert": {"seq": seq, "skipped_at": now},
                "$addToSet": {"passed_by": {"$each": list(self.names)}},
            },
            upsert=True,
        )
        self._advance(seq)
        self._gap_seen.pop(seq, None)

    def _fill_late_gaps(self) -> int:
        """Apply events that committed after their seq was passed, once per projection."""
        pending = self._pending_gaps()
        if not pending:
            return 0
        found = self._events.seqs(pending)
        for s in found:
            names = pending[s.seq]
            log.warning("seq %d committed after it was passed; applying it late", s.seq)
            tables = {t for n in names for t in PROJECTIONS[n]}
            for change in changes(s):
                if change.table in tables:
                    self._apply_late(change, s.seq)
            self._gaps.update_one(
                {"_id": s.seq}, {"$addToSet": {"filled_for": {"$each": sorted(names)}}}
            )
        return len(found)

    # -- writing ------------------------------------------------------------------

    def _passed(self, first: int, last: int) -> dict[int, set[str]]:
        """Seqs in [first, last] already recorded as passed gaps, with the projections that did.

        Only the late path applies those: a crash between recording a gap and moving the
        checkpoint would otherwise apply a late event twice, in order and late.
        """
        query = {"_id": {"$gte": first, "$lte": last}, "passed_by": {"$in": list(self.names)}}
        return {int(g["_id"]): set(g["passed_by"]) for g in self._gaps.find(query)}

    def _changes(self, s: StoredEvent, skip: Iterable[str] = ()) -> list[Change]:
        tables = self.tables - {t for n in skip if n in PROJECTIONS for t in PROJECTIONS[n]}
        return [c for c in changes(s) if c.table in tables]

    def _apply(self, run: list[StoredEvent], passed: dict[int, set[str]]) -> None:
        per_doc: dict[tuple[str, str], list[tuple[int, Change]]] = defaultdict(list)
        for s in run:
            for change in self._changes(s, passed.get(s.seq, ())):
                per_doc[(change.table, change.doc_id)].append((s.seq, change))
        per_table: dict[str, list[tuple[str, list[tuple[int, Change]]]]] = defaultdict(list)
        for (table, doc_id), items in per_doc.items():
            per_table[table].append((doc_id, items))
        for table, docs in per_table.items():
            self._write_table(table, docs)

    def _write_table(self, table: str, docs: list[tuple[str, list[tuple[int, Change]]]]) -> None:
        coll = self._db[self._prefix + table]
        # Usually one merged update per document; a document whose changes cannot be merged
        # into one update gets several, written in order after the others.
        split = [(doc_id, _segments(items)) for doc_id, items in docs]
        simple = [(doc_id, segs[0]) for doc_id, segs in split if len(segs) == 1]
        self._write_guarded(coll, simple)
        for doc_id, segs in split:
            if len(segs) > 1:
                for seg in segs:
                    self._write_guarded(coll, [(doc_id, seg)])

    def _write_guarded(self, coll: Any, docs: list[tuple[str, _Segment]]) -> None:
        if not docs:
            return
        ops = [_guarded(doc_id, seg) for doc_id, seg in docs]
        try:
            coll.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            # These documents already hold some of these events: apply only what is newer.
            for err in errors:
                doc_id, seg = docs[err["index"]]
                self._write_newer(coll, doc_id, seg.items)

    def _write_newer(self, coll: Any, doc_id: str, items: list[tuple[int, Change]]) -> None:
        """Apply the changes past the document's `_seq`. Another projector (serve, a worker,
        the scheduler) may move the document on between the read and the write; the guard
        then refuses the write (a duplicate key), and the read is simply done again."""
        for _attempt in range(20):
            current = coll.find_one({"_id": doc_id}, {"_seq": 1})
            reached = int(current.get("_seq", 0)) if current else 0
            newer = [(seq, c) for seq, c in items if seq > reached]
            if not newer:
                return
            try:
                ops = [_guarded(doc_id, rest) for rest in _segments(newer)]
                coll.bulk_write(ops)  # ordered: each guarded by the one before
                return
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
        raise RuntimeError(f"{coll.name} {doc_id}: another projector kept moving it on")

    def _apply_late(self, change: Change, seq: int) -> None:
        coll = self._db[self._prefix + change.table]
        update = change.mongo_update()
        update.setdefault("$push", {})["_late"] = seq
        update.setdefault("$setOnInsert", {})["_seq"] = 0
        try:
            coll.update_one({"_id": change.doc_id, "_late": {"$ne": seq}}, update, upsert=True)
        except Exception as exc:  # DuplicateKeyError: already applied
            if getattr(exc, "code", None) != 11000:
                raise


@dataclass
class _Segment:
    """Consecutive changes of one document (by seq) and the single update they merge into."""

    items: list[tuple[int, Change]]
    merged: Change


def _segments(items: list[tuple[int, Change]]) -> list[_Segment]:
    """Split one document's changes where they cannot merge into a single update."""
    segments = [_Segment([items[0]], items[0][1])]
    for seq, change in items[1:]:
        last = segments[-1]
        try:
            last.merged = last.merged.then(change)
            last.items.append((seq, change))
        except ValueError:
            segments.append(_Segment([(seq, change)], change))
    return segments


def _guarded(doc_id: str, seg: _Segment) -> UpdateOne:
    """The segment's update, applied only if the document has not reached its first seq."""
    update = seg.merged.mongo_update()
    update.setdefault("$set", {})["_seq"] = seg.items[-1][0]
    return UpdateOne({"_id": doc_id, "_seq": {"$lt": seg.items[0][0]}}, update, upsert=True)


def _version(checkpoint: dict[str, Any]) -> int:
    return int(checkpoint.get("version", 1))  # written before projections had versions: 1


def drop(db: Database[Any], names: Iterable[str], prefix: str = "") -> None:
    """Drop projections' collections and checkpoints so they rebuild from seq 0."""
    for name in names:
        for table in PROJECTIONS[name]:
            db.drop_collection(prefix + table)
        # Back to seq 0, at this code's version: what is rebuilt now has the current shape.
        db[prefix + "checkpoints"].update_one(
            {"_id": name}, {"$set": {"seq": 0, "version": PROJECTION_VERSIONS[name]}}, upsert=True
        )
        db[prefix + "gaps"].update_many({}, {"$pull": {"filled_for": name, "passed_by": name}})

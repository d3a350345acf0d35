"""The order of long lists, kept in memory so a page costs a lookup by id, not a sorted scan.

On the MongoDB-wire server a sorted, skipped query reads every matching
document (about 25-40 us each): 10,000 jobs or 100,000 images made every page
cost from 0.5 s to 9 s. So the web process keeps each list's order:

- `JobOrder`: every job's (planned_at, id, collection), loaded once from
  `job_state`, then extended from the log's `JobPlanned` events up to the
  projector's position (jobs are never deleted). A full reload every few
  minutes covers a `seq` that committed after the projector passed it.
  Finished and cancelled are final states, so they are remembered; only the
  other jobs' counters are read for a status filter.
- `ImageOrder`: a collection's image ids by path, rebuilt only when a scan
  changed the collection (its last scan time or counts moved).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from typing import Any

from domain import events as ev
from domain.errors import UnknownCollection
from domain.views import job_status
from ops.bootstrap import App

RELOAD_SECONDS = 300.0
LOG_PAGE = 5000
LOG_PAGES_PER_REFRESH = 20
FINAL = ("finished", "cancelled")
STATUS_TTL = 1.0  # seconds an unfinished job's status may be reused by a status filter
EXTEND_EVERY = 0.5  # seconds between reads of new jobs from the log (a list is polled)
COUNTERS = ("total", "generated", "skipped", "failed", "paused", "cancelled", "heartbeat_at")


class JobOrder:
    """Job ids newest first, with their collections and remembered final statuses."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._keys: list[tuple[float, str]] = []  # ascending (planned_at, id)
        self._collection: dict[str, str] = {}
        self._final: dict[str, str] = {}
        self._recent: dict[str, str] = {}  # unfinished jobs' statuses, read at _recent_at
        self._recent_at = 0.0
        self._status_lock = threading.Lock()
        self._position: int | None = None
        self._loaded_at = 0.0
        self._extended_at = 0.0

    def _reload(self) -> None:
        position = self._app.projector.position()
        rows = self._app.read.job_order()
        self._keys = sorted((at, jid) for at, jid, _ in rows)
        self._collection = {jid: cid for _, jid, cid in rows}
        self._position = position
        self._loaded_at = time.monotonic()

    def _extend(self) -> None:
        assert self._position is not None
        target = self._app.projector.position()
        for _ in range(LOG_PAGES_PER_REFRESH):
            if self._position >= target:
                return
            batch = self._app.events.read(after=self._position, limit=LOG_PAGE)
            batch = [s for s in batch if s.seq <= target]
            if not batch:
                return
            for s in batch:
                e = s.event
                if isinstance(e, ev.JobPlanned) and e.job_id not in self._collection:
                    bisect.insort(self._keys, (s.at, e.job_id))
                    self._collection[e.job_id] = e.collection_id
            self._position = batch[-1].seq

    def changed(self) -> None:
        """New jobs were planned here: read them on the next call, not up to 0.5 s later."""
        with self._lock:
            self._extended_at = 0.0

    def ids(self, collection: str | None = None) -> list[str]:
        """Job ids, newest first, of one collection or all."""
        with self._lock:
            now = time.monotonic()
            if self._position is None or now - self._loaded_at > RELOAD_SECONDS:
                self._reload()
            elif now - self._extended_at > EXTEND_EVERY:
                self._extend()
                self._extended_at = now
            ordered = [jid for _, jid in reversed(self._keys)]
            if collection:
                return [j for j in ordered if self._collection.get(j) == collection]
            return ordered

    def with_status(self, ids: list[str], status: str) -> list[str]:
        """Those of `ids` whose derived status is `status`.

        Finished and cancelled are final, so they are remembered for good; the other
        jobs' counters are read at most once per STATUS_TTL, by one request at a time.
        """
        with self._status_lock:
            with self._lock:
                known = {**self._recent, **self._final}
                fresh = time.monotonic() - self._recent_at < STATUS_TTL
            unknown = [j for j in ids if j not in self._final and (not fresh or j not in known)]
            if unknown:
                docs = self._app.read.jobs_by_ids(unknown, COUNTERS)
                now = {jid: job_status(d) for jid, d in docs.items()}
                with self._lock:
                    self._final.update((j, s) for j, s in now.items() if s in FINAL)
                    self._recent = {j: s for j, s in now.items() if s not in FINAL}
                    self._recent_at = time.monotonic()
                    known = {**self._recent, **self._final}
        return [j for j in ids if known.get(j) == status]


class ImageOrder:
    """Image ids of a collection by path, for the last few collections asked for."""

    def __init__(self, app: App, keep: int = 8) -> None:
        self._app = app
        self._keep = keep
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[Any, list[str]]] = OrderedDict()

    def ids(self, collection_id: str) -> list[str]:
        doc = self._app.read.collection(collection_id)
        if doc is None:
            raise UnknownCollection(f"no collection {collection_id}")
        version = (doc.get("last_scan_at"), doc.get("images"), doc.get("unsupported"))
        with self._lock:
            found = self._cache.get(collection_id)
            if found is not None and found[0] == version:
                self._cache.move_to_end(collection_id)
                return found[1]
        ordered = [iid for _, iid in sorted(self._app.read.image_order(collection_id))]
        with self._lock:
            self._cache[collection_id] = (version, ordered)
            self._cache.move_to_end(collection_id)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return ordered

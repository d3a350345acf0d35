"""The ports the application talks through. Each has a real and an in-memory implementation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from domain.events import Event, StoredEvent


class EventLog(Protocol):
    """An append-only, totally ordered log of events with idempotent appends."""

    def append(self, event: Event) -> StoredEvent:
        """Store one event; if its key exists, store nothing and return the stored one."""
        ...

    def append_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Store events in one step, each idempotent as in `append`; results in input order."""
        ...

    def read(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events with after < seq <= after + limit, ascending; positions not (yet)
        committed are missing, so a page may be shorter than `limit`."""
        ...

    def head(self) -> int:
        """The highest seq handed out so far (0 for an empty log)."""
        ...

    def by_key(self, key: str) -> StoredEvent | None:
        """The event stored under an idempotency key, if any."""
        ...

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these idempotency keys are stored already."""
        ...

    def stream(self, stream: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events of one stream with seq > after, ascending."""
        ...

    def job_outcomes(self, job_id: str, after: int = 0) -> Iterator[tuple[str, str, str, str]]:
        """Terminal outcomes of a job with seq > after, as (type, image id, kind, error class)."""
        ...

    def of_image(self, image_id: str, limit: int = 1000) -> list[StoredEvent]:
        """Events about one image (outcomes, deletions), ascending."""
        ...

    def seqs(self, wanted: Iterable[int]) -> list[StoredEvent]:
        """The events stored at the given positions (missing ones left out)."""
        ...

    def import_records(self, records: Iterable[dict[str, Any]]) -> int:
        """Load exported records, keeping seq, key and time; only into an empty log."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class FileStore(Protocol):
    """Rendition files under cache-folder roots, written atomically."""

    def write_atomic(self, root: str, relpath: str, data: bytes) -> int:
        """Write via a temporary name and rename; return the replaced file's size or -1."""
        ...

    def size(self, root: str, relpath: str) -> int:
        """Size of a file, or -1 when it does not exist."""
        ...

    def remove(self, root: str, relpath: str) -> int:
        """Remove a file; return its size, or -1 when it was not there."""
        ...

    def walk(self, root: str) -> Iterator[tuple[str, int, float]]:
        """Every rendition file under root as (relpath, size, mtime); temp files excluded."""
        ...

    def free_bytes(self, root: str) -> int:
        """Free space on the filesystem of root."""
        ...

    def partials(self, root: str) -> Iterator[tuple[str, int, float]]:
        """Temporary files of writes that did not finish, as (relpath, size, mtime)."""
        ...

"""The facts imagecache records, as frozen dataclasses, and their stored form.

An event carries only its facts. The log adds the envelope: `seq` (global
position), `key` (idempotency key), `at` (append time), `stream`, `type`, `v`.
Old schema versions are upgraded on read; stored events are never edited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

Data = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """Base of every fact. Subclasses set `version` and say their stream and key."""

    version: ClassVar[int] = 1

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def stream(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        raise NotImplementedError

    def data(self) -> Data:
        return asdict(self)


# -- collections ---------------------------------------------------------------


@dataclass(frozen=True)
class LibraryRootAdded(Event):
    """A folder under which collections may be registered."""

    path: str

    @property
    def stream(self) -> str:
        return "library"

    @property
    def key(self) -> str:
        return f"root:{self.path}"


@dataclass(frozen=True)
class CollectionRegistered(Event):
    collection_id: str
    path: str
    root: str
    source: str  # "folder" | "archive"
    name: str
    again_after: str = ""  # registered again after the removal of this id

    @property
    def stream(self) -> str:
        return f"collection:{self.collection_id}"

    @property
    def key(self) -> str:
        again = f":{self.again_after}" if self.again_after else ""
        return f"collection:{self.collection_id}:registered{again}"


@dataclass(frozen=True)
class CollectionRemoved(Event):
    """A collection the user no longer wants cached (its folder or archive may be gone).
    Its images are removed by a `CollectionScanned` appended with it; their renditions
    are then what cleanup takes. Scans under its root leave it out; adding its exact path
    registers it again."""

    collection_id: str
    removal_id: str
    path: str
    images: int

    @property
    def stream(self) -> str:
        return f"collection:{self.collection_id}"

    @property
    def key(self) -> str:
        return f"collection:{self.collection_id}:removed:{self.removal_id}"


@dataclass(frozen=True)
class CollectionScanned(Event):
    """One page of a scan's findings; large scans are split into `parts` pages.

    `added` and `changed` hold [image_id, member path, size, mtime] rows, and with a
    content hash [..., hash, version]: a hashed scan that finds new bytes under the same
    size and mtime records a changed row with the content version bumped;
    `removed` holds image ids; `unsupported` holds [image_id, member path] of
    files that are not images imagecache reads (listed, never silently dropped).
    """

    collection_id: str
    scan_id: str
    part: int
    parts: int
    added: list[list[Any]] = field(default_factory=list)
    changed: list[list[Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unsupported: list[list[str]] = field(default_factory=list)  # [image_id, member path]
    unsupported_removed: list[str] = field(default_factory=list)
    hashed: list[list[str]] = field(default_factory=list)  # [image_id, hash]: first hashing

    @property
    def stream(self) -> str:
        return f"collection:{self.collection_id}"

    @property
    def key(self) -> str:
        return f"scan:{self.scan_id}:{self.part}"


# -- cache folders --------------------------------------------------------------


@dataclass(frozen=True)
class CacheFolderAdded(Event):
    folder_id: str
    path: str
    capacity_bytes: int
    priority: int
    again_after: str = ""  # added again after a removal (any unique id): a key of its own

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}"

    @property
    def key(self) -> str:
        again = f":{self.again_after}" if self.again_after else ""
        return f"folder:{self.folder_id}:added{again}"


@dataclass(frozen=True)
class CacheFolderChanged(Event):
    folder_id: str
    change_id: str
    capacity_bytes: int
    priority: int

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}"

    @property
    def key(self) -> str:
        return f"folder:{self.folder_id}:changed:{self.change_id}"


@dataclass(frozen=True)
class CacheFolderRemoved(Event):
    folder_id: str
    removal_id: str = ""  # older logs: one removal per folder, under the plain key

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}"

    @property
    def key(self) -> str:
        removal = f":{self.removal_id}" if self.removal_id else ""
        return f"folder:{self.folder_id}:removed{removal}"


@dataclass(frozen=True)
class CacheFolderMarked(Event):
    """imagecache wrote its marker into a cache folder (or found its own there), and this is
    the directory the host saw at the folder's path: cleanup, eviction and repair touch the
    folder only while the same directory (device and inode) is there and carries the marker.
    Its own stream, so that the few marks of a folder are read without its deletions."""

    folder_id: str
    mark_id: str  # each marking its own key: a folder may be marked A, B, then A again
    installation_id: str
    host: str
    path: str
    device: int
    inode: int

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}:marks"

    @property
    def key(self) -> str:
        return f"folder:{self.folder_id}:marked:{self.mark_id}"


INSTALLATION_KEY = "installation"


@dataclass(frozen=True)
class InstallationIdentified(Event):
    """The random id of this data folder's installation, recorded once: the markers of its
    cache folders name it, so a folder of another installation is never taken for ours."""

    installation_id: str

    @property
    def stream(self) -> str:
        return "installation"

    @property
    def key(self) -> str:
        return INSTALLATION_KEY


# -- bulk operations and jobs ------------------------------------------------------


@dataclass(frozen=True)
class BulkOperationRequested(Event):
    bulk_id: str
    collection_ids: list[str]  # empty list with all=True means every collection
    kinds: list[str]
    force: bool = False
    all: bool = False

    @property
    def stream(self) -> str:
        return f"bulk:{self.bulk_id}"

    @property
    def key(self) -> str:
        return f"bulk:{self.bulk_id}:requested"


@dataclass(frozen=True)
class JobPlanned(Event):
    """A job's header. Its image ids follow in `JobImagesPlanned` pages (16 MB limit)."""

    job_id: str
    bulk_id: str
    collection_id: str
    kinds: list[str]
    specs: dict[str, Data]  # kind -> RenditionSpec.to_dict()
    spec_hashes: dict[str, str]
    images: int  # images planned
    already_current: int  # images whose renditions were all current
    pages: int
    retry_of: str = ""

    @property
    def stream(self) -> str:
        return f"job:{self.job_id}"

    @property
    def key(self) -> str:
        return f"job:{self.job_id}:planned"


@dataclass(frozen=True)
class JobImagesPlanned(Event):
    job_id: str
    page: int
    image_ids: list[str]

    @property
    def stream(self) -> str:
        return f"job:{self.job_id}"

    @property
    def key(self) -> str:
        return f"job:{self.job_id}:images:{self.page}"


@dataclass(frozen=True)
class JobControl(Event):
    """Base of pause/resume/cancel: who asked and why."""

    job_id: str
    request_id: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return f"job:{self.job_id}"

    @property
    def key(self) -> str:
        return f"job:{self.job_id}:{type(self).__name__}:{self.request_id}"


@dataclass(frozen=True)
class JobPaused(JobControl):
    pass


@dataclass(frozen=True)
class JobResumed(JobControl):
    pass


@dataclass(frozen=True)
class JobCancelled(JobControl):
    pass


@dataclass(frozen=True)
class JobHeartbeat(Event):
    job_id: str
    worker: str
    beat: int  # a coarse time slot, so one beat per slot and worker

    @property
    def stream(self) -> str:
        return f"job:{self.job_id}"

    @property
    def key(self) -> str:
        return f"job:{self.job_id}:heartbeat:{self.worker}:{self.beat}"


# -- outcomes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome(Event):
    """Base of the three terminal outcomes of one (job, image, rendition)."""

    job_id: str
    image_id: str
    collection_id: str
    kind: str

    @property
    def stream(self) -> str:
        return f"job:{self.job_id}"

    @property
    def key(self) -> str:
        return outcome_key(self.job_id, self.image_id, self.kind)


def outcome_key(job_id: str, image_id: str, kind: str) -> str:
    """One terminal outcome per job, image and rendition, however often a message runs."""
    return f"outcome:{job_id}:{image_id}:{kind}"


@dataclass(frozen=True)
class RenditionGenerated(Outcome):
    folder_id: str
    path: str  # relative to the folder
    bytes: int
    width: int
    height: int
    ms: int
    spec_hash: str
    source_size: int
    source_mtime: float
    replaced_bytes: int = -1  # size of a file this one overwrote; -1 when none
    source_version: int = 0  # the source's content version (see CollectionScanned)


@dataclass(frozen=True)
class RenditionSkipped(Outcome):
    reason: str  # "current"


@dataclass(frozen=True)
class RenditionFailed(Outcome):
    error_class: str
    message: str
    attempts: int = 1
    first_of_image: bool = True  # counts the image once when all its renditions fail together


@dataclass(frozen=True)
class RenditionDeleted(Event):
    image_id: str
    kind: str
    folder_id: str
    path: str
    bytes: int
    # orphan | source_removed | evicted | file_missing | partial (older logs: spec_changed)
    reason: str
    deletion_id: str
    collection_id: str = ""
    was_current: bool = True  # False: the file was not what `renditions` pointed to
    counted: bool = True  # False: folder statistics never counted it (a stray or partial file)

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}"

    @property
    def key(self) -> str:
        return f"deleted:{self.deletion_id}"


@dataclass(frozen=True)
class FolderReconciled(Event):
    folder_id: str
    reconcile_id: str
    measured_files: int
    measured_bytes: int
    projected_files: int
    projected_bytes: int

    @property
    def stream(self) -> str:
        return f"folder:{self.folder_id}"

    @property
    def key(self) -> str:
        return f"reconcile:{self.reconcile_id}"


@dataclass(frozen=True)
class AlertRaised(Event):
    alert_id: str
    subject: str  # e.g. "job:<id>"
    level: str
    message: str

    @property
    def stream(self) -> str:
        return self.subject

    @property
    def key(self) -> str:
        return f"alert:{self.alert_id}"


@dataclass(frozen=True)
class SeqVoided(Event):
    """Fills a reserved `seq` whose append was a duplicate, so readers need not wait for it."""

    seq: int

    @property
    def stream(self) -> str:
        return "log"

    @property
    def key(self) -> str:
        return f"void:{self.seq}"


# -- the registry and upgrades ------------------------------------------------------

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        LibraryRootAdded,
        CollectionRegistered,
        CollectionScanned,
        CollectionRemoved,
        CacheFolderAdded,
        CacheFolderChanged,
        CacheFolderRemoved,
        BulkOperationRequested,
        JobPlanned,
        JobImagesPlanned,
        JobPaused,
        JobResumed,
        JobCancelled,
        JobHeartbeat,
        RenditionGenerated,
        RenditionSkipped,
        RenditionFailed,
        RenditionDeleted,
        FolderReconciled,
        AlertRaised,
        SeqVoided,
        CacheFolderMarked,
        InstallationIdentified,
    )
}

# (type, from_version) -> function that returns the data of version from_version + 1
UPGRADES: dict[tuple[str, int], Callable[[Data], Data]] = {}


def upgrade(type_name: str, version: int, data: Data) -> Data:
    """Bring stored data of an old schema version up to the current one."""
    cls = EVENT_TYPES[type_name]
    while version < cls.version:
        data = UPGRADES[(type_name, version)](dict(data))
        version += 1
    return data


def event_from(type_name: str, version: int, data: Data) -> Event:
    """Rebuild an event from its stored type, version and data."""
    try:
        cls = EVENT_TYPES[type_name]
    except KeyError:
        raise ValueError(f"unknown event type {type_name!r}") from None
    data = upgrade(type_name, version, data)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log keeps it: envelope plus facts."""

    seq: int
    key: str
    type: str
    v: int
    at: float
    stream: str
    event: Event

    def to_record(self) -> Data:
        return {
            "seq": self.seq,
            "key": self.key,
            "type": self.type,
            "v": self.v,
            "at": self.at,
            "stream": self.stream,
            "data": self.event.data(),
        }

    @classmethod
    def from_record(cls, record: Data) -> StoredEvent:
        event = event_from(record["type"], record["v"], record["data"])
        return cls(
            seq=record["seq"],
            key=record["key"],
            type=record["type"],
            v=event.version,
            at=record["at"],
            stream=record["stream"],
            event=event,
        )


def stored(event: Event, seq: int, at: float) -> StoredEvent:
    """Wrap an event in its envelope at position `seq`, appended at time `at`."""
    return StoredEvent(seq, event.key, event.type, event.version, at, event.stream, event)


OutcomeRow = tuple[str, str, str, str]  # (type, image id, kind, error class or "")


def outcome_row(s: StoredEvent) -> OutcomeRow | None:
    """What recovery needs of a terminal outcome; None for any other event."""
    e = s.event
    if not isinstance(e, Outcome):
        return None
    return s.type, e.image_id, e.kind, e.error_class if isinstance(e, RenditionFailed) else ""

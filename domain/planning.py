"""Decisions: which images a job must process, which folder takes new files."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from domain.changes import Doc
from domain.errors import NoSpace
from domain.specs import RenditionSpec
from domain.views import NEAR_FULL


@dataclass(frozen=True)
class SourceImage:
    """An image as the `images` read model knows it."""

    image_id: str
    path: str
    size: int
    mtime: float
    version: int = 0  # content version: bumped by a hashed scan that finds new bytes


@dataclass(frozen=True)
class Plan:
    """The images left to process for one collection, and how many were current, quarantined
    or already queued in an unfinished job."""

    todo: list[SourceImage]
    current: int
    quarantined: int = 0
    queued_ids: tuple[str, ...] = ()  # left out: an unfinished job will still make them

    @property
    def queued(self) -> int:
        return len(self.queued_ids)


@dataclass(frozen=True)
class PlanInputs:
    """What planning reads of a collection: its images, their current renditions by
    (image, kind), and their failure counts by error class."""

    images: list[SourceImage]
    current: dict[tuple[str, str], Doc]
    failures: dict[str, dict[str, int]]


def quarantined(failures: Mapping[str, Mapping[str, int]], after: int) -> set[str]:
    """Images that failed the same way in `after` attempts: not retried automatically."""
    if after <= 0:
        return set()
    return {
        image for image, by_class in failures.items() if max(by_class.values(), default=0) >= after
    }


def is_current(rendition: Doc | None, spec: RenditionSpec, image: SourceImage) -> bool:
    """A rendition is current when it exists with the same spec hash and source fingerprint."""
    if rendition is None or rendition.get("deleted"):
        return False
    return (
        rendition.get("spec_hash") == spec.hash
        and rendition.get("source_size") == image.size
        and rendition.get("source_mtime") == image.mtime
        and int(rendition.get("source_version") or 0) == image.version
    )


def plan_images(
    images: Iterable[SourceImage],
    specs: Sequence[RenditionSpec],
    renditions: Mapping[tuple[str, str], Doc],
    *,
    force: bool = False,
    skip: set[str] | frozenset[str] = frozenset(),
    queued: Collection[str] = frozenset(),
) -> Plan:
    """Pre-filter: keep an image when any requested rendition is missing, stale or forced;
    images in `skip` (quarantined) are left out unless forced, and so are images in `queued`
    (an unfinished job will still make them), so that planning twice does the work once."""
    todo: list[SourceImage] = []
    waiting: list[str] = []
    current = held = 0
    for image in images:
        if not force and image.image_id in skip:
            held += 1
        elif force:
            todo.append(image)
        elif all(is_current(renditions.get((image.image_id, s.kind)), s, image) for s in specs):
            current += 1
        elif image.image_id in queued:
            waiting.append(image.image_id)
        else:
            todo.append(image)
    return Plan(todo, current, held, tuple(waiting))


def pages(items: Sequence[str], size: int) -> list[list[str]]:
    """Split ids into pages of at most `size` (at least one page, maybe empty)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def choose_folder(
    folders: Iterable[Doc], needed_bytes: int, disk_free: Mapping[str, int] | None = None
) -> Doc:
    """The folder to write into: highest priority first, then most free space; never a full
    one. A folder's free space is what its capacity leaves, and at most what its disk has
    (`disk_free`, by folder id); one within 5% of its capacity takes no new files."""
    usable = []
    present = [f for f in folders if not f.get("removed")]
    if not present:
        raise NoSpace(
            "no cache folder is configured",
            hint="add one with `imagecache folders add PATH`, or run `imagecache up` once",
        )
    for f in present:
        capacity = int(f.get("capacity_bytes", 0))
        free = capacity - int(f.get("bytes", 0)) if capacity else 1 << 62
        if capacity and free < capacity * (1 - NEAR_FULL) / 2:
            continue
        if disk_free is not None and f["_id"] in disk_free:
            free = min(free, disk_free[f["_id"]])
        if free < needed_bytes:
            continue
        usable.append((-int(f.get("priority", 0)), -free, str(f["_id"]), f))
    if not usable:
        raise NoSpace(
            "every cache folder is full or near full",
            hint="add a cache folder or raise a capacity with `imagecache folders add|change`",
        )
    return min(usable, key=lambda t: t[:3])[3]

"""Decisions: which images a job must process, which folder takes new files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class Plan:
    """The images left to process for one collection, and how many were already current."""

    todo: list[SourceImage]
    current: int


def is_current(rendition: Doc | None, spec: RenditionSpec, image: SourceImage) -> bool:
    """A rendition is current when it exists with the same spec hash and source fingerprint."""
    if rendition is None or rendition.get("deleted"):
        return False
    return (
        rendition.get("spec_hash") == spec.hash
        and rendition.get("source_size") == image.size
        and rendition.get("source_mtime") == image.mtime
    )


def plan_images(
    images: Iterable[SourceImage],
    specs: Sequence[RenditionSpec],
    renditions: Mapping[tuple[str, str], Doc],
    *,
    force: bool = False,
) -> Plan:
    """Pre-filter: keep an image when any requested rendition is missing, stale or forced."""
    todo: list[SourceImage] = []
    current = 0
    for image in images:
        if force or not all(
            is_current(renditions.get((image.image_id, s.kind)), s, image) for s in specs
        ):
            todo.append(image)
        else:
            current += 1
    return Plan(todo, current)


def pages(items: Sequence[str], size: int) -> list[list[str]]:
    """Split ids into pages of at most `size` (at least one page, maybe empty)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def choose_folder(folders: Iterable[Doc], needed_bytes: int) -> Doc:
    """The folder to write into: highest priority first, then most free space; never a full one."""
    usable = []
    for f in folders:
        if f.get("removed"):
            continue
        capacity = int(f.get("capacity_bytes", 0))
        free = capacity - int(f.get("bytes", 0))
        if capacity and (free < needed_bytes or free < capacity * (1 - NEAR_FULL) / 2):
            continue
        usable.append((-int(f.get("priority", 0)), -free, str(f["_id"]), f))
    if not usable:
        raise NoSpace(
            "every cache folder is full or near full",
            hint="add a cache folder or raise a capacity with `imagecache folders add|change`",
        )
    return min(usable, key=lambda t: t[:3])[3]

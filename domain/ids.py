"""Stable ids and the on-disk layout of renditions (and of their temporary files)."""

from __future__ import annotations

import hashlib
import re

from domain.specs import FORMATS, KINDS

_ID = re.compile(r"^[0-9a-f]{8,64}$")
# {kind}/{id[:2]}/{id[2:4]}/{id}.{ext}: an image id is 32 hex digits (blake2b, 16 bytes).
_LAYOUT = re.compile(
    rf"^({'|'.join(KINDS)})/([0-9a-f]{{2}})/([0-9a-f]{{2}})/([0-9a-f]{{32}})"
    rf"\.({'|'.join(sorted(set(FORMATS.values())))})$"
)
_LAYOUT_DIR = re.compile(rf"^({'|'.join(KINDS)})(/[0-9a-f]{{2}}){{0,2}}$")
TMP_SUFFIX = ".tmp-imagecache"


def collection_id(path: str) -> str:
    """A stable id for a collection, from its absolute path."""
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def image_id(collection: str, member: str) -> str:
    """A stable id for an image: its collection id and its path inside the collection."""
    return hashlib.blake2b(f"{collection}/{member}".encode(), digest_size=16).hexdigest()


def is_valid_id(value: str) -> bool:
    """True for the hex ids imagecache makes (images, collections, jobs, folders)."""
    return bool(_ID.fullmatch(value))


def rendition_relpath(kind: str, image: str, extension: str) -> str:
    """Where a rendition lives inside a cache folder: {kind}/{id[:2]}/{id[2:4]}/{id}.{ext}."""
    return f"{kind}/{image[:2]}/{image[2:4]}/{image}.{extension}"


def parse_rendition_relpath(relpath: str) -> tuple[str, str] | None:
    """(kind, image id) of a path with exactly the rendition layout; None for any other."""
    match = _LAYOUT.fullmatch(relpath)
    if match is None:
        return None
    kind, top, second, image = match.group(1, 2, 3, 4)
    if (top, second) != (image[:2], image[2:4]):
        return None  # a layout-looking name in the wrong folder is not one we wrote
    return kind, image


def is_layout_dir(relpath: str) -> bool:
    """True for the folders the rendition layout makes: `cache`, `cache/ab`, `cache/ab/cd`."""
    return bool(_LAYOUT_DIR.fullmatch(relpath))


def partial_name(target_name: str, writer: str, thread: int) -> str:
    """The temporary name a write of `target_name` uses beside it: `writer` is host.pid."""
    return f".{target_name}.{writer}.{thread}{TMP_SUFFIX}"


def partial_target(relpath: str) -> str | None:
    """The rendition a temporary file was to become, if its name is one `partial_name`
    makes and its target has the rendition layout; None for anything else."""
    folder, _, name = relpath.rpartition("/")
    if not name.startswith(".") or not name.endswith(TMP_SUFFIX):
        return None
    parts = name[1 : -len(TMP_SUFFIX)].rsplit(".", 3)  # target, host, pid, thread
    if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
        return None
    target = f"{folder}/{parts[0]}" if folder else parts[0]
    return target if parse_rendition_relpath(target) else None

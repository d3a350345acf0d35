"""Stable ids and the on-disk layout of renditions."""

from __future__ import annotations

import hashlib
import re

_ID = re.compile(r"^[0-9a-f]{8,64}$")


def collection_id(path: str) -> str:
    """A stable id for a collection, from its absolute path."""
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def image_id(collection: str, member: str) -> str:
    """A stable id for an image: its collection id and its path inside the collection."""
    return hashlib.blake2b(f"{collection}/{member}".encode(), digest_size=16).hexdigest()


def is_valid_id(value: str) -> bool:
    """True for the hex ids imagecache makes (images, collections, jobs, folders)."""
    return bool(_ID.match(value))


def rendition_relpath(kind: str, image: str, extension: str) -> str:
    """Where a rendition lives inside a cache folder: {kind}/{id[:2]}/{id[2:4]}/{id}.{ext}."""
    return f"{kind}/{image[:2]}/{image[2:4]}/{image}.{extension}"

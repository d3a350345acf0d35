"""Serving rendition files: ETag, Last-Modified, Cache-Control and 304, never outside a folder.

The `renditions` read model names a folder and a path relative to it. The file
is served only when its fully resolved path lies inside the folder's resolved
path, and it is opened without following a final symlink. Every refusal is a
404 that says what to do and names no filesystem path.
"""

from __future__ import annotations

import email.utils
import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from starlette.responses import Response

from ops.bootstrap import App
from web.endpoint import Call, Endpoint, Handler, id_param
from web.problems import NotFound

MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
}
MAX_FILE = 256 * 1024 * 1024
REGENERATE = {"cache": "/api/v1/cache/regenerate", "thumbnail": "/api/v1/thumbnails/regenerate"}


class FolderRoots:
    """Each cache folder's resolved path, looked up once (a folder id is a hash of its path)."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._roots: dict[str, Path] = {}
        self._lock = threading.Lock()

    def get(self, folder_id: str) -> Path | None:
        with self._lock:
            found = self._roots.get(folder_id)
        if found is not None:
            return found
        raw = self._app.read.folder_path(folder_id)
        if raw is None:
            return None
        try:
            root = Path(raw).resolve(strict=True)
        except OSError:
            return None
        with self._lock:
            self._roots[folder_id] = root
        return root


class ServedLog:
    """When renditions were last served, for least-recently-served eviction.

    Telemetry, not events: kept in memory and written at most every FLUSH_SECONDS,
    so serving a file costs no database write.
    """

    FLUSH_SECONDS = 10.0

    def __init__(self, app: App) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = {}
        self._flushed = time.monotonic()

    def touch(self, image_id: str, kind: str) -> None:
        now = time.time()
        with self._lock:
            self._pending[(image_id, kind)] = now
            if time.monotonic() - self._flushed < self.FLUSH_SECONDS:
                return
            pending, self._pending = self._pending, {}
            self._flushed = time.monotonic()
        for (iid, k), at in pending.items():
            self._app.read.touch_served(iid, k, at)


class RenditionCache:
    """Rendition documents looked up in the last few seconds (the lookup dominates a hit).

    Safe to reuse briefly: a regenerated file keeps its path and is re-read and
    re-stat'ed on every request, so ETag and Last-Modified stay exact.
    """

    TTL = 5.0
    SIZE = 50_000

    def __init__(self, app: App) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._docs: OrderedDict[tuple[str, str], tuple[float, dict[str, Any] | None]] = (
            OrderedDict()
        )

    def get(self, image_id: str, kind: str) -> dict[str, Any] | None:
        key, now = (image_id, kind), time.monotonic()
        with self._lock:
            found = self._docs.get(key)
            if found is not None and now - found[0] < self.TTL and found[1] is not None:
                return found[1]
        doc = self._app.read.rendition(image_id, kind)
        with self._lock:
            self._docs[key] = (now, doc)
            self._docs.move_to_end(key)
            while len(self._docs) > self.SIZE:
                self._docs.popitem(last=False)
        return doc

    def forget(self, image_id: str, kind: str) -> None:
        with self._lock:
            self._docs.pop((image_id, kind), None)


def _missing(app: App, image_id: str, kind: str, why: str, *, file_gone: bool = False) -> NotFound:
    image = app.read.image(image_id)
    if image is None:
        return NotFound(
            f"no image {image_id}: list a collection's images with"
            " GET /api/v1/collections/{collection_id}/images"
        )
    cid = image.get("collection_id", "")
    if file_gone:
        # Its rendition is still recorded as current, so a plain regenerate would skip it:
        # repair records the file as missing and plans it again.
        return NotFound(
            f"the {kind} of image {image_id} {why}: run `imagecache repair` (it records"
            f" missing files and plans them again), or POST {REGENERATE[kind]} with"
            f' {{"collections": ["{cid}"], "force": true}}'
        )
    return NotFound(
        f"the {kind} of image {image_id} {why}: regenerate it with POST {REGENERATE[kind]}"
        f' and {{"collections": ["{cid}"]}}'
    )


def locate(
    app: App, roots: FolderRoots, cache: RenditionCache, image_id: str, kind: str
) -> tuple[Path, dict[str, Any]]:
    """The rendition's real file path, checked to lie inside its cache folder."""
    doc = cache.get(image_id, kind)
    if doc is None:
        raise _missing(app, image_id, kind, "has not been generated")
    root = roots.get(str(doc.get("folder_id", "")))
    rel = PurePosixPath(str(doc.get("path", "")))
    if root is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise _missing(app, image_id, kind, "is not in a cache folder")
    try:
        real = (root / rel).resolve(strict=True)
    except OSError:
        raise _missing(
            app, image_id, kind, "is missing from its cache folder", file_gone=True
        ) from None
    if root not in real.parents:
        raise _missing(app, image_id, kind, "is not in a cache folder")
    return real, doc


def _open(real: Path) -> tuple[BinaryIO, os.stat_result] | None:
    """The open file and its stat, without following a final symlink; None if unusable."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
        f.close()
        return None
    return f, st


def _not_modified(call: Call, etag: str, mtime: int) -> bool:
    inm = call.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = call.headers.get("if-modified-since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        return since.timestamp() >= mtime
    return False


def serve(kind: str) -> Handler:
    """The handler that serves one kind of rendition."""

    def handler(call: Call) -> Response:
        image_id = call.path["image_id"]
        cache: RenditionCache = call.state["renditions"]
        try:
            real, doc = locate(call.app, call.state["roots"], cache, image_id, kind)
            got = _open(real)
            if got is None:
                raise _missing(call.app, image_id, kind, "is not readable in its cache folder")
        except NotFound:
            cache.forget(image_id, kind)  # the next request looks again
            raise
        file, st = got
        with file:
            return _answer(call, image_id, kind, real, doc, file, st)

    return handler


def _answer(
    call: Call, image_id: str, kind: str, real: Path, doc: dict[str, Any], file: BinaryIO,
    st: os.stat_result,
) -> Response:  # fmt: skip
    """200 with the file, or 304 when the client's copy is current (then the file is not read)."""
    etag = f'"{doc.get("spec_hash", "")}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    mtime = int(st.st_mtime)
    headers = {
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        "Cache-Control": ("public" if call.web.open_reads else "private") + ", max-age=300",
    }
    call.state["served"].touch(image_id, kind)
    if _not_modified(call, etag, mtime):
        return Response(status_code=304, headers=headers)
    media = MEDIA_TYPES.get(real.suffix.lstrip(".").lower(), "application/octet-stream")
    return Response(file.read(), media_type=media, headers=headers)


IID = id_param("image_id", "image")
IMAGE_ERRORS = (400, 404)


def _binary(what: str) -> dict[int, tuple[str, str, Any]]:
    return {
        200: (what, "image/*", {"type": "string", "format": "binary"}),
        304: ("not modified since the ETag or date the client holds", "", None),
    }


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/images/{image_id}/thumbnail",
        serve("thumbnail"),
        "The image's thumbnail file (ETag, Last-Modified, 304)",
        "images",
        params=(IID,),
        responses=_binary("the thumbnail"),
        errors=IMAGE_ERRORS,
    ),
    Endpoint(
        "GET",
        "/api/v1/images/{image_id}/cache",
        serve("cache"),
        "The image's cache image file (ETag, Last-Modified, 304)",
        "images",
        params=(IID,),
        responses=_binary("the cache image"),
        errors=IMAGE_ERRORS,
    ),
]

"""Collections: register (under a library root), list, detail, scan, images with their status."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.responses import Response

from domain.errors import PathOutsideRoots, UnknownCollection
from domain.views import iso
from ops import library
from web.endpoint import Call, Endpoint, id_param, page_params
from web.responses import JSON
from web.schemas import REGISTER, ref

CID = id_param("collection_id", "collection")


def collection_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "name": doc.get("name", ""),
        "path": doc.get("path", ""),
        "source": doc.get("source", "folder"),
        "root": doc.get("root"),
        "images": int(doc.get("images", 0)),
        "unsupported": int(doc.get("unsupported", 0)),
        "registered_at": iso(doc.get("registered_at")),
        "last_scan_at": iso(doc.get("last_scan_at")),
    }


def _list(call: Call) -> Response:
    q = call.query
    docs, total = call.app.read.collections_page(q["offset"], q["limit"])
    rows = [collection_row(d) for d in docs]
    return JSON({"total": total, "offset": q["offset"], "limit": q["limit"], "collections": rows})


def _check_under_roots(call: Call, raw: str) -> None:
    """Refuse a path outside the roots before touching it, so the API is no existence oracle."""
    path = Path(raw)
    if not path.is_absolute():
        raise PathOutsideRoots(f"{raw} is not an absolute path")
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop: registration says so, under a root
        real = Path(os.path.normpath(path))
    for root in library.library_roots(call.app):
        real_root = Path(root).resolve()
        if real == real_root or real_root in real.parents:
            return
    raise PathOutsideRoots(f"{raw} is outside the library roots")


def _register(call: Call) -> Response:
    path = str(call.body["path"])
    _check_under_roots(call, path)
    ids = library.add_collections(call.app, path, revive=True)
    call.app.projector.catch_up()
    if call.body.get("scan", True):
        rows = [r.__dict__ for r in library.scan_collections(call.app, ids)]
    else:
        rows = [
            {
                "collection_id": i,
                "images": 0,
                "added": 0,
                "changed": 0,
                "removed": 0,
                "unsupported": 0,
                "error": "",
            }
            for i in ids
        ]
    return JSON({"collections": rows}, status_code=201)


def _detail(call: Call) -> Response:
    cid = call.path["collection_id"]
    doc = call.app.read.collection(cid)
    if doc is None:
        raise UnknownCollection(f"no collection {cid}")
    counts = call.app.read.rendition_counts(cid, call.app.settings.specs)
    _, jobs = call.app.read.jobs(collection_id=cid, limit=1)
    return JSON({**collection_row(doc), "renditions": counts, "jobs": jobs})


def _scan(call: Call) -> Response:
    cid = call.path["collection_id"]
    if call.app.read.collection(cid) is None:
        raise UnknownCollection(f"no collection {cid}")
    (result,) = library.scan_collections(call.app, [cid])
    return JSON(result.__dict__)


def _remove(call: Call) -> Response:
    removed = library.remove_collection(call.app, call.path["collection_id"])
    call.state["jobs"].changed()
    return JSON(removed)


def _images(call: Call) -> Response:
    q = call.query
    ids = call.state["images"].ids(call.path["collection_id"])
    page = ids[q["offset"] : q["offset"] + q["limit"]]
    docs = call.app.read.images_by_ids(page)
    rows = library.image_rows(call.app, [docs[i] for i in page if i in docs])
    return JSON({"total": len(ids), "offset": q["offset"], "limit": q["limit"], "images": rows})


def _ok(schema: str, status: int = 200) -> dict[int, tuple[str, str, Any]]:
    return {status: ("OK" if status == 200 else "Created", "application/json", ref(schema))}


BASE = "/api/v1/collections"
ENDPOINTS = [
    Endpoint(
        "GET",
        BASE,
        _list,
        "List collections by path (paged)",
        "collections",
        params=page_params(),
        responses=_ok("CollectionPage"),
    ),
    Endpoint(
        "POST",
        BASE,
        _register,
        "Register the collection at a path under a library root (or every one under it)",
        "collections",
        body=REGISTER,
        responses=_ok("Registered", 201),
    ),
    Endpoint(
        "GET",
        BASE + "/{collection_id}",
        _detail,
        "A collection with rendition counts",
        "collections",
        params=(CID,),
        responses=_ok("CollectionDetail"),
        errors=(400, 404),
    ),
    Endpoint(
        "POST",
        BASE + "/{collection_id}/scan",
        _scan,
        "Scan a collection and record what changed",
        "collections",
        params=(CID,),
        responses=_ok("ScanResult"),
        errors=(400, 404),
    ),
    Endpoint(
        "DELETE",
        BASE + "/{collection_id}",
        _remove,
        "Stop caching a collection: cancel its jobs, remove its images (cleanup then takes"
        " their renditions); scans of its root leave it out, registering its path adds it again",
        "collections",
        params=(CID,),
        responses=_ok("CollectionRemoved"),
        errors=(400, 404),
    ),
    Endpoint(
        "GET",
        BASE + "/{collection_id}/images",
        _images,
        "A collection's images by path, each rendition's status (paged)",
        "collections",
        params=(CID, *page_params(100)),
        responses=_ok("ImagePage"),
        errors=(400, 404),
    ),
]

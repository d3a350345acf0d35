"""Cache folders: statistics, add, change capacity and priority, remove, cleanup, reconcile."""

from __future__ import annotations

import importlib
from typing import Any

from starlette.responses import Response

from domain.errors import InvalidInput, UnknownFolder
from ops import library
from ops.paths import checked_path
from web.endpoint import Call, Endpoint, id_param
from web.problems import Conflict
from web.responses import JSON
from web.schemas import CLEANUP, FOLDER_ADD, FOLDER_CHANGE, ref

BASE = "/api/v1/cache/folders"
FID = id_param("folder_id", "cache folder")


def _ok(schema: str, status: int = 200) -> dict[int, tuple[str, str, Any]]:
    return {status: ("OK" if status == 200 else "Created", "application/json", ref(schema))}


def _statistics(call: Call) -> Response:
    return JSON({"folders": call.app.read.folders()})


def _detail(call: Call) -> Response:
    fid = call.path["folder_id"]
    view = call.app.read.folder(fid)
    if view is None:
        raise UnknownFolder(f"no cache folder {fid}")
    return JSON(view)


def _add(call: Call) -> Response:
    raw = str(call.body["path"])
    path = checked_path(raw, absolute=True)
    # The API does not create folders: an operator makes it, then adds it here.
    if not path.is_dir():
        raise InvalidInput(f"{raw} is not an existing folder", hint="create it first")
    capacity = int(call.body.get("capacity_bytes", 0))
    fid = library.add_folder(call.app, path, capacity, int(call.body.get("priority", 0)))
    call.app.projector.catch_up()
    view = call.app.read.folder(fid)
    assert view is not None
    return JSON(view, status_code=201)


def _change(call: Call) -> Response:
    body = call.body
    capacity = int(body["capacity_bytes"]) if "capacity_bytes" in body else None
    priority = int(body["priority"]) if "priority" in body else None
    return JSON(library.change_folder(call.app, call.path["folder_id"], capacity, priority))


def _remove(call: Call) -> Response:
    try:
        return JSON(library.remove_folder(call.app, call.path["folder_id"]))
    except library.FolderInUse as exc:
        raise Conflict(str(exc)) from None


def _maintenance() -> Any:
    """ops.maintenance when it offers cleanup and reconcile, else None."""
    try:
        module = importlib.import_module("ops.maintenance")
    except ModuleNotFoundError:
        return None
    return module if hasattr(module, "cleanup") and hasattr(module, "reconcile") else None


def _cleanup(call: Call) -> Response:
    report = _maintenance().cleanup(
        call.app,
        dry_run=bool(call.body.get("dry_run", True)),
        older_than_days=float(call.body.get("older_than_days", 7.0)),
    )
    return JSON(report)


def _reconcile(call: Call) -> Response:
    return JSON(_maintenance().reconcile(call.app))


def maintenance_available() -> bool:
    return _maintenance() is not None


def endpoints() -> list[Endpoint]:
    """The folder routes; cleanup and reconcile only when ops.maintenance provides them."""
    found = [
        Endpoint(
            "GET",
            BASE + "/statistics",
            _statistics,
            "Every cache folder's usage, files, collections and markers",
            "folders",
            responses=_ok("FolderList"),
        ),
    ]
    if maintenance_available():
        found += [
            Endpoint(
                "POST",
                BASE + "/cleanup",
                _cleanup,
                "Find (dry_run, the default) or delete orphan files older than N days",
                "folders",
                body=CLEANUP,
                responses=_ok("CleanupReport"),
            ),
            Endpoint(
                "POST",
                BASE + "/reconcile",
                _reconcile,
                "Measure the folders on disk and record any drift from the statistics",
                "folders",
                responses=_ok("ReconcileReport"),
            ),
        ]
    found += [
        Endpoint(
            "POST",
            BASE,
            _add,
            "Add an existing, writable folder as a cache folder",
            "folders",
            body=FOLDER_ADD,
            responses=_ok("Folder", 201),
        ),
        Endpoint(
            "GET",
            BASE + "/{folder_id}",
            _detail,
            "One cache folder's statistics",
            "folders",
            params=(FID,),
            responses=_ok("Folder"),
            errors=(400, 404),
        ),
        Endpoint(
            "PATCH",
            BASE + "/{folder_id}",
            _change,
            "Change capacity and/or priority",
            "folders",
            params=(FID,),
            body=FOLDER_CHANGE,
            responses=_ok("Folder"),
            errors=(400, 404),
        ),
        Endpoint(
            "DELETE",
            BASE + "/{folder_id}",
            _remove,
            "Remove a cache folder that holds no files (409 while it holds any)",
            "folders",
            params=(FID,),
            responses=_ok("Folder"),
            errors=(400, 404, 409),
        ),
    ]
    return found

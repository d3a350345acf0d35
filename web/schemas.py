"""JSON schemas of the API's bodies and answers (the OpenAPI document's components)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time", "nullable": True}
NULL_STR: Schema = {"type": "string", "nullable": True}
ID: Schema = {"type": "string", "pattern": "^[0-9a-f]{8,64}$"}
KIND: Schema = {"type": "string", "enum": ["cache", "thumbnail"]}
JOB_STATUS = ["queued", "running", "paused", "cancelled", "finished"]
COUNTS: Schema = {"type": "object", "additionalProperties": INT}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(**props: Schema) -> Schema:
    """An object with these properties, all required."""
    return {"type": "object", "properties": props, "required": list(props)}


def loose(**props: Schema) -> Schema:
    """An object with these properties, none required."""
    return {"type": "object", "properties": props}


def page(item: str, key: str) -> Schema:
    return obj(total=INT, offset=INT, limit=INT, **{key: {"type": "array", "items": ref(item)}})


COMPONENTS: dict[str, Schema] = {
    "Problem": obj(type=STR, title=STR, status=INT, detail=STR),
    "Health": obj(status=STR, head=INT, projected=INT, lag=INT),
    "Info": obj(
        version=STR,
        open_reads=BOOL,
        kinds={"type": "array", "items": STR},
        maintenance=BOOL,
        body_limit=INT,
    ),
    "Session": {
        **loose(signed_in=BOOL, csrf=STR, expires_at=NUM),
        "required": ["signed_in"],
        "description": "csrf and expires_at (seconds since 1970) only when signed in",
    },
    "Collection": obj(
        id=ID,
        name=STR,
        path=STR,
        source={"type": "string", "enum": ["folder", "archive"]},
        root=NULL_STR,
        images=INT,
        unsupported=INT,
        registered_at=TIME,
        last_scan_at=TIME,
    ),
    "CollectionDetail": {
        "allOf": [ref("Collection"), obj(renditions=COUNTS, jobs=INT)],
    },
    "CollectionPage": page("Collection", "collections"),
    "ScanResult": obj(
        collection_id=ID,
        images=INT,
        added=INT,
        changed=INT,
        removed=INT,
        unsupported=INT,
        error=STR,
    ),
    "CollectionRemoved": obj(
        id=ID,
        path=STR,
        images=INT,
        unsupported=INT,
        cancelled_jobs={"type": "array", "items": ID},
    ),
    "Registered": obj(collections={"type": "array", "items": ref("ScanResult")}),
    "RenditionStatus": {
        **loose(
            status={"type": "string", "enum": ["current", "stale", "missing"]},
            bytes=INT,
            width=INT,
            height=INT,
        ),
        "required": ["status"],
    },
    "Image": obj(
        id=ID,
        path=STR,
        supported=BOOL,
        renditions={"type": "object", "additionalProperties": ref("RenditionStatus")},
    ),
    "ImagePage": page("Image", "images"),
    "PlannedJob": obj(job_id=ID, collection_id=ID, images=INT, current=INT, to_process=INT),
    "BulkResult": obj(
        bulk_id=ID,
        images=INT,
        current=INT,
        quarantined=INT,
        queued=INT,
        queued_in={"type": "array", "items": ID},
        jobs={"type": "array", "items": ref("PlannedJob")},
    ),
    "Job": obj(
        id=ID,
        type={"type": "string", "enum": ["regenerate"]},
        bulk_id=NULL_STR,
        collection_id=NULL_STR,
        kinds={"type": "array", "items": STR},
        status={"type": "string", "enum": JOB_STATUS},
        images=INT,
        already_current=INT,
        total=INT,
        generated=INT,
        skipped=INT,
        failed=INT,
        failed_by_class=COUNTS,
        remaining=INT,
        percent=NUM,
        bytes=INT,
        planned_at=TIME,
        started_at=TIME,
        last_progress_at=TIME,
        finished_at=TIME,
        heartbeat_at=TIME,
        rate=NUM,
        eta_seconds={"type": "number", "nullable": True},
        retry_of=NULL_STR,
        pause_reason=NULL_STR,
    ),
    "JobPage": page("Job", "jobs"),
    "Failure": obj(
        image_id=ID, path=NULL_STR, kind=STR, error_class=STR, message=STR, attempts=INT
    ),
    "Failures": obj(
        job_id=ID,
        failed_by_class=COUNTS,
        total=INT,
        offset=INT,
        limit=INT,
        failures={"type": "array", "items": ref("Failure")},
    ),
    "Event": obj(seq=INT, key=STR, type=STR, v=INT, at=NUM, stream=STR, data={"type": "object"}),
    "EventPage": obj(head=INT, next_after=INT, events={"type": "array", "items": ref("Event")}),
    "Folder": obj(
        id=ID,
        path=NULL_STR,
        priority=INT,
        capacity_bytes=INT,
        bytes=INT,
        files=INT,
        collections=INT,
        usage=NUM,
        near_full=BOOL,
        full=BOOL,
        removed=BOOL,
        last_generated_at=TIME,
        last_cleanup_at=TIME,
        last_reconciled_at=TIME,
    ),
    "FolderList": obj(folders={"type": "array", "items": ref("Folder")}),
    "CleanupReport": {
        **loose(
            dry_run=BOOL,
            older_than_days=NUM,
            folders={
                "type": "array",
                "items": loose(
                    id=ID,
                    path=STR,
                    files=INT,
                    bytes=INT,
                    by_reason=COUNTS,
                    stale_kept=INT,
                    foreign=INT,
                    sample={"type": "array", "items": {"type": "object"}},
                ),
            },
            stale_kept=INT,
            foreign=INT,
            left_alone={"type": "array", "items": ref("LeftAlone")},
            hint=STR,
        ),
        "required": ["dry_run", "folders"],
    },
    "ReconcileReport": {
        **loose(
            folders={
                "type": "array",
                "items": loose(
                    id=ID,
                    path=STR,
                    drift=BOOL,
                    measured_files=INT,
                    measured_bytes=INT,
                    projected_files=INT,
                    projected_bytes=INT,
                    foreign=INT,
                ),
            },
            left_alone={"type": "array", "items": ref("LeftAlone")},
        ),
        "required": ["folders"],
    },
    # A cache folder a maintenance task did not touch: why, and what to do.
    "LeftAlone": obj(id=ID, path=STR, reason=STR, message=STR, hint=STR),
}

# -- request bodies (checked by web.schema_check, so keep to its subset) ---------------------

# At most 500 ids keeps every valid body under the 64 KiB limit; more: use "all".
IDS: Schema = {"type": "array", "items": ID, "maxItems": 500}

REGENERATE: Schema = {
    "type": "object",
    "description": "name collections, or set all; missing and stale only unless force",
    "properties": {"collections": IDS, "all": BOOL, "force": BOOL},
    "additionalProperties": False,
}
REGENERATE_ANY: Schema = {
    **REGENERATE,
    "properties": {
        **REGENERATE["properties"],
        "kind": {"type": "string", "enum": ["cache", "thumbnail", "both"]},
    },
}
REGISTER: Schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 4096},
        "scan": {"type": "boolean", "description": "scan what was registered (default true)"},
    },
    "required": ["path"],
    "additionalProperties": False,
}
CAPACITY: Schema = {"type": "integer", "minimum": 0, "maximum": 2**62}
PRIORITY: Schema = {"type": "integer", "minimum": -1000, "maximum": 1000}
FOLDER_ADD: Schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 4096},
        "capacity_bytes": CAPACITY,
        "priority": PRIORITY,
    },
    "required": ["path"],
    "additionalProperties": False,
}
FOLDER_CHANGE: Schema = {
    "type": "object",
    "properties": {"capacity_bytes": CAPACITY, "priority": PRIORITY},
    "additionalProperties": False,
}
CLEANUP: Schema = {
    "type": "object",
    "properties": {
        "dry_run": {"type": "boolean", "description": "only report (default true)"},
        "older_than_days": {"type": "number", "minimum": 0, "maximum": 36500},
    },
    "additionalProperties": False,
}

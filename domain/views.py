"""What a user sees of a job or a folder, derived from its read-model document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.changes import Doc

NEAR_FULL = 0.90


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_status(doc: Doc) -> str:
    """queued, running, paused, cancelled or finished: derived, never stored."""
    done = doc.get("generated", 0) + doc.get("skipped", 0) + doc.get("failed", 0)
    if doc.get("cancelled"):
        return "cancelled"
    if done >= doc.get("total", 0):
        return "finished"
    if doc.get("paused"):
        return "paused"
    if done or doc.get("heartbeat_at"):
        return "running"
    return "queued"


def job_view(doc: Doc) -> dict[str, Any]:
    """A job's state: counts, percent, rate (outcomes/s) and ETA (s), from stored times only."""
    total = int(doc.get("total", 0))
    generated, skipped, failed = (int(doc.get(k, 0)) for k in ("generated", "skipped", "failed"))
    done = generated + skipped + failed
    status = job_status(doc)
    first, last = doc.get("first_outcome_at"), doc.get("last_progress_at")
    rate = 0.0
    if first is not None and last is not None and last > first and done > 1:
        rate = (done - 1) / (last - first)
    remaining = max(total - done, 0)
    eta = remaining / rate if rate > 0 and status == "running" else None
    return {
        "id": doc["_id"],
        "type": "regenerate",
        "bulk_id": doc.get("bulk_id"),
        "collection_id": doc.get("collection_id"),
        "kinds": doc.get("kinds", []),
        "status": status,
        "images": doc.get("images", 0),
        "already_current": doc.get("already_current", 0),
        "total": total,
        "generated": generated,
        "skipped": skipped,
        "failed": failed,
        "failed_by_class": doc.get("failed_by_class", {}),
        "remaining": remaining,
        "percent": round(100.0 * done / total, 2) if total else 100.0,
        "bytes": int(doc.get("bytes", 0)),
        "planned_at": iso(doc.get("planned_at")),
        "started_at": iso(first),
        "last_progress_at": iso(last),
        "finished_at": iso(last) if status == "finished" and total else None,
        "heartbeat_at": iso(doc.get("heartbeat_at")),
        "rate": round(rate, 3),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "retry_of": doc.get("retry_of") or None,
        "pause_reason": (doc.get("pause_reason") or None) if status == "paused" else None,
    }


def folder_view(doc: Doc, collections: int) -> dict[str, Any]:
    """A cache folder's statistics with usage and the near-full / full markers."""
    capacity = int(doc.get("capacity_bytes", 0))
    used = int(doc.get("bytes", 0))
    usage = used / capacity if capacity else 0.0
    return {
        "id": doc["_id"],
        "path": doc.get("path"),
        "priority": doc.get("priority", 0),
        "capacity_bytes": capacity,
        "bytes": used,
        "files": int(doc.get("files", 0)),
        "collections": collections,
        "usage": round(usage, 4),
        "near_full": usage >= NEAR_FULL,
        "full": capacity > 0 and used >= capacity,
        "removed": bool(doc.get("removed", False)),
        "last_generated_at": iso(doc.get("last_generated_at")),
        "last_cleanup_at": iso(doc.get("last_cleanup_at")),
        "last_reconciled_at": iso(doc.get("last_reconciled_at")),
    }

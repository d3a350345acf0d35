"""Queries over the read models. The only place that knows their MongoDB shape."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from domain.changes import Doc
from domain.planning import PlanInputs, SourceImage
from domain.projection import rendition_doc_id, unpack, unpack_currency
from domain.views import folder_view, job_status, job_view

LIVE: Doc = {"removed": {"$ne": True}}  # collections not removed


def source_image(doc: Doc) -> SourceImage:
    """An `images` document as the planner and the workers see it."""
    return SourceImage(
        doc["_id"], doc["path"], int(doc["size"]), float(doc["mtime"]), int(doc.get("version", 0))
    )


class ReadModels:
    """Read access to job_state, folder_stats, renditions, collections and images."""

    def __init__(self, db: Database[Any], prefix: str = "") -> None:
        self._db = db
        self._prefix = prefix

    def _c(self, table: str) -> Any:
        return self._db[self._prefix + table]

    def ensure_indexes(self) -> None:
        """Indexes the queries below rely on (idempotent)."""
        self._c("images").create_index("collection_id")
        self._c("renditions").create_index("collection_id")
        self._c("renditions").create_index("folder_id")
        self._c("folder_collections").create_index("folder_id")
        self._c("job_state").create_index("collection_id")
        self._c("job_state").create_index("planned_at")
        self._c("job_outcomes").create_index("job_id")
        self._c("plan_index").create_index("collection_id")

    # -- collections and images ---------------------------------------------------

    def collections(self) -> list[Doc]:
        """The registered collections (not those removed), by path."""
        return list(self._c("collections").find(LIVE).sort("path", ASCENDING))

    def collection(self, collection_id: str, *, include_removed: bool = False) -> Doc | None:
        query = {"_id": collection_id} if include_removed else {"_id": collection_id, **LIVE}
        doc: Doc | None = self._c("collections").find_one(query)
        return doc

    def removed_collections(self) -> dict[str, str]:
        """Removed collections, each with the id of its removal."""
        docs = self._c("collections").find({"removed": True}, {"removal_id": 1})
        return {d["_id"]: str(d.get("removal_id") or "") for d in docs}

    def images_of(self, collection_id: str, *, include_removed: bool = False) -> list[Doc]:
        query: Doc = {"collection_id": collection_id}
        if not include_removed:
            query["removed"] = False
        return list(self._c("images").find(query).sort("path", ASCENDING))

    def image_marks(self, collection_id: str, after: int) -> dict[str, int]:
        """A collection's images whose document changed past position `after` (a scan that
        found them new or changed, a failure), each with that position."""
        query = {"collection_id": collection_id, "_seq": {"$gt": after}}
        return {d["_id"]: int(d["_seq"]) for d in self._c("images").find(query, {"_seq": 1})}

    def jobs_of_collection(self, collection_id: str) -> list[Doc]:
        """A collection's jobs that are not cancelled (their job_state documents)."""
        query = {"collection_id": collection_id, "total": {"$exists": True}}
        return list(self._c("job_state").find({**query, "cancelled": {"$ne": True}}))

    def plan_inputs(self, collection_id: str) -> PlanInputs:
        """A collection's readable images, current renditions and failures, from `plan_index`."""
        out = PlanInputs([], {}, {})
        fields = {"s": 1, "v": 1, "r": 1, "f": 1}
        for doc in self._c("plan_index").find({"collection_id": collection_id}, fields):
            versions: dict[str, int] = doc.get("v") or {}
            renditions: dict[str, dict[str, str | None]] = doc.get("r") or {}
            failures: dict[str, dict[str, int]] = doc.get("f") or {}
            for image, packed in (doc.get("s") or {}).items():
                if packed is None:
                    continue  # removed, or not a format we read
                path, size, mtime = unpack(packed)
                version = int(versions.get(image) or 0)
                out.images.append(SourceImage(image, path, int(size), float(mtime), version))
                for kind, current in renditions.items():
                    if (rendition := current.get(image)) is not None:
                        out.current[(image, kind)] = unpack_currency(rendition)
                if failures.get(image):
                    out.failures[image] = failures[image]
        out.images.sort(key=lambda i: i.path)
        return out

    def source_images_by_id(self, ids: list[str]) -> list[SourceImage]:
        """The given images, if still present and readable, in the order given."""
        found = self.images_by_ids(ids)
        return [
            source_image(d)
            for i in ids
            if (d := found.get(i)) and d.get("removed") is False and d.get("supported", True)
        ]

    # -- renditions ---------------------------------------------------------------

    def renditions_of(self, collection_id: str) -> dict[tuple[str, str], Doc]:
        docs = self._c("renditions").find({"collection_id": collection_id, "deleted": False})
        return {(d["image_id"], d["kind"]): d for d in docs}

    def renditions_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Doc]:
        ids = [rendition_doc_id(i, k) for i, k in keys]
        # `_id: {$in}` alone uses the index on SecantusDB; another field would make it a scan.
        docs = self._c("renditions").find({"_id": {"$in": ids}})
        return {(d["image_id"], d["kind"]): d for d in docs if d.get("deleted") is False}

    def rendition(self, image_id: str, kind: str) -> Doc | None:
        doc: Doc | None = self._c("renditions").find_one(
            {"_id": rendition_doc_id(image_id, kind), "deleted": False}
        )
        return doc

    def deleted_renditions(self, reason: str) -> list[Doc]:
        """Renditions deleted for `reason` and not generated again since."""
        query = {"deleted": True, "deleted_reason": reason}
        return list(self._c("renditions").find(query))

    def removed_image_ids(self) -> set[str]:
        """Images that were removed from their collections."""
        return {d["_id"] for d in self._c("images").find({"removed": True}, {"_id": 1})}

    def eviction_order(self, folder_id: str) -> list[Doc]:
        """A folder's renditions, least recently served (or generated) first."""
        served: dict[str, float] = {d["_id"]: d["at"] for d in self._db["served"].find({})}
        docs = list(self.renditions_in(folder_id))
        docs.sort(key=lambda d: served.get(d["_id"], float(d.get("generated_at") or 0.0)))
        return docs

    def touch_served(self, image_id: str, kind: str, at: float) -> None:
        """Remember when a rendition was last served (telemetry for eviction, not an event)."""
        self._db["served"].update_one(
            {"_id": rendition_doc_id(image_id, kind)}, {"$max": {"at": at}}, upsert=True
        )

    def renditions_in(self, folder_id: str) -> Iterator[Doc]:
        return iter(self._c("renditions").find({"folder_id": folder_id, "deleted": False}))

    # -- folders ------------------------------------------------------------------

    def folder_docs(self, *, include_removed: bool = False) -> list[Doc]:
        query: Doc = {} if include_removed else {"removed": False}
        return list(self._c("folder_stats").find(query).sort("priority", DESCENDING))

    def folder_collections(self, folder_id: str) -> int:
        return int(
            self._c("folder_collections").count_documents(
                {"folder_id": folder_id, "files": {"$gt": 0}}
            )
        )

    def folders(self, *, include_removed: bool = False) -> list[dict[str, Any]]:
        """Each folder's statistics as a user sees them."""
        return [
            folder_view(d, self.folder_collections(d["_id"]))
            for d in self.folder_docs(include_removed=include_removed)
        ]

    def folder(self, folder_id: str) -> dict[str, Any] | None:
        doc = self._c("folder_stats").find_one({"_id": folder_id})
        return folder_view(doc, self.folder_collections(folder_id)) if doc else None

    # -- jobs ---------------------------------------------------------------------

    def job_doc(self, job_id: str) -> Doc | None:
        doc: Doc | None = self._c("job_state").find_one({"_id": job_id})
        return doc

    def job(self, job_id: str) -> dict[str, Any] | None:
        doc = self.job_doc(job_id)
        return job_view(doc) if doc and "total" in doc else None

    def jobs(
        self,
        *,
        status: str | None = None,
        collection_id: str | None = None,
        bulk_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """Jobs newest first, filtered; returns (page, total matching)."""
        query: Doc = {"total": {"$exists": True}}
        if collection_id:
            query["collection_id"] = collection_id
        if bulk_id:
            query["bulk_id"] = bulk_id
        cursor = self._c("job_state").find(query).sort("planned_at", DESCENDING)
        if status is None:
            total = int(self._c("job_state").count_documents(query))
            return [job_view(d) for d in cursor.skip(offset).limit(limit)], total
        # Status is derived, so it is filtered here rather than in the query.
        matching = [d for d in cursor if job_status(d) == status]
        return [job_view(d) for d in matching[offset : offset + limit]], len(matching)

    def job_outcome_lists(self, job_id: str) -> Iterator[tuple[str, list[str], str]]:
        """A job's projected outcomes as (kind, image ids, error class or "") lists."""
        for doc in self._c("job_outcomes").find({"job_id": job_id}, {"done": 1, "failed": 1}):
            for kind, images in doc.get("done", {}).items():
                yield kind, images, ""
            for kind, classes in doc.get("failed", {}).items():
                for error_class, images in classes.items():
                    yield kind, images, error_class

    def paused_jobs(self) -> list[Doc]:
        """Jobs paused and not cancelled."""
        query = {"total": {"$exists": True}, "paused": True, "cancelled": {"$ne": True}}
        return [d for d in self._c("job_state").find(query) if job_status(d) == "paused"]

    def unfinished_jobs(self) -> list[Doc]:
        """Jobs that are neither finished, paused nor cancelled."""
        docs = self._c("job_state").find({"total": {"$exists": True}, "cancelled": {"$ne": True}})
        return [d for d in docs if job_status(d) in ("queued", "running")]

    def table(self, table: str) -> Iterator[Doc]:
        """Every document of a read-model table, by _id (for verify and export)."""
        return iter(self._c(table).find({}).sort("_id", ASCENDING))

    # -- web queries (pages, counts, metrics) ---------------------------------------

    def collections_page(self, offset: int, limit: int) -> tuple[list[Doc], int]:
        """Collections by path; returns (page, total)."""
        total = int(self._c("collections").count_documents(LIVE))
        cursor = self._c("collections").find(LIVE).sort("path", ASCENDING).skip(offset).limit(limit)
        return list(cursor), total

    def image_order(self, collection_id: str) -> list[tuple[str, str]]:
        """(path, image id) of a collection's current images, unsorted (one light scan)."""
        docs = self._c("images").find(
            {"collection_id": collection_id, "removed": False}, {"path": 1}
        )
        return [(str(d["path"]), str(d["_id"])) for d in docs]

    def image(self, image_id: str) -> Doc | None:
        doc: Doc | None = self._c("images").find_one({"_id": image_id})
        return doc

    def images_by_ids(self, ids: Iterable[str], chunk: int = 100) -> dict[str, Doc]:
        """Image documents by id, in one indexed `$in` per chunk.

        Only `_id: {$in}` in the query, in small chunks: SecantusDB scans the collection
        when other fields join it, and slows down with long `$in` lists."""
        wanted = list(ids)
        found: dict[str, Doc] = {}
        for start in range(0, len(wanted), chunk):
            query = {"_id": {"$in": wanted[start : start + chunk]}}
            found.update((d["_id"], d) for d in self._c("images").find(query))
        return found

    def rendition_counts(self, collection_id: str, kinds: Iterable[str]) -> dict[str, int]:
        """How many renditions of each kind a collection has (current or stale, not deleted)."""
        return {
            k: int(
                self._c("renditions").count_documents(
                    {"collection_id": collection_id, "kind": k, "deleted": False}
                )
            )
            for k in kinds
        }

    def job_order(self) -> list[tuple[float, str, str]]:
        """(planned_at, job id, collection id) of every job, unsorted (one light scan)."""
        docs = self._c("job_state").find(
            {"total": {"$exists": True}}, {"planned_at": 1, "collection_id": 1}
        )
        return [
            (float(d.get("planned_at", 0.0)), str(d["_id"]), str(d.get("collection_id", "")))
            for d in docs
        ]

    def jobs_by_ids(
        self, ids: Iterable[str], fields: Iterable[str] | None = None
    ) -> dict[str, Doc]:
        """Job documents by id (only `fields` when given), looked up by `_id`."""
        wanted = list(ids)
        found: dict[str, Doc] = {}
        projection = {**dict.fromkeys(fields, 1), "total": 1} if fields is not None else None
        # `_id: {$in}` alone, in small chunks: on SecantusDB another field makes it a full
        # scan, and long `$in` lists slow down faster than linearly.
        for n in range(0, len(wanted), 100):
            query = {"_id": {"$in": wanted[n : n + 100]}}
            docs = self._c("job_state").find(query, projection)
            found.update((d["_id"], d) for d in docs if "total" in d)
        return found

    def folder_path(self, folder_id: str) -> str | None:
        doc = self._c("folder_stats").find_one({"_id": folder_id}, {"path": 1})
        return str(doc["path"]) if doc and doc.get("path") else None

    def job_counters(self) -> Iterator[Doc]:
        """Every job's counters (no planned-image data), for metrics."""
        fields = ("total", "generated", "skipped", "failed", "bytes", "paused", "cancelled",
                  "heartbeat_at", "by_kind", "failed_by_class")  # fmt: skip
        return iter(
            self._c("job_state").find({"total": {"$exists": True}}, dict.fromkeys(fields, 1))
        )

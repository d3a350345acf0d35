"""Generate the renditions of one batch of images and record one outcome for each.

Safe to run twice: outcomes already in the log are not redone, current files
are skipped, files are replaced atomically, and appends are idempotent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.pool import render_member
from actors.render import Rendered, unexpected
from actors.sources import MAX_SOURCE_BYTES, SourceRef
from domain import events as ev
from domain.errors import NoSpace, RenderError, TransientIOError, outcome_message
from domain.ids import rendition_relpath
from domain.planning import SourceImage, choose_folder, is_current
from domain.ports import Clock, EventLog, FileStore
from domain.specs import RenditionSpec
from projections.readmodels import ReadModels

log = logging.getLogger("imagecache.generate")

HEARTBEAT_SECONDS = 30
# (image, specs, max_pixels, max_source_bytes) -> renditions, or a RenderError
Renderer = Callable[[SourceRef, Sequence[RenditionSpec], int, int], list[Rendered]]


@dataclass
class Generator:
    """What one worker needs to turn a message into files and outcomes."""

    events: EventLog
    read: ReadModels
    files: FileStore
    clock: Clock
    max_pixels: int = 100_000_000
    max_source_bytes: int = MAX_SOURCE_BYTES
    renderer: Renderer = render_member
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # How often, within a batch, to look whether its job was paused or cancelled meanwhile
    # (a batch of large images takes many seconds; a pause should not wait for it).
    control_every: float = 1.0
    # Set when the process stops: a batch ends between images, and what is left (no outcome
    # yet) is what the next run re-sends, so SIGINT/SIGTERM never wait for a whole batch.
    stopping: threading.Event = field(default_factory=threading.Event)
    _beats: dict[str, int] = field(default_factory=dict)
    _roots: dict[str, str] = field(default_factory=dict)

    def run(self, message: Mapping[str, Any], *, final_attempt: bool = True) -> dict[str, int]:
        """Process one message; return counts of outcomes recorded by this call."""
        job_id: str = message["job_id"]
        job = self.read.job_doc(job_id)
        if job and (job.get("cancelled") or job.get("paused")):
            state = "cancelled" if job.get("cancelled") else "paused"
            log.info("job %s is %s: message dropped", job_id, state)
            return {}
        specs = [RenditionSpec.from_dict(s) for s in message["specs"]]
        if "ids" in message:  # re-sent by recovery: look the images up now
            items = self.read.source_images_by_id(list(message["ids"]))
            found = {x.image_id for x in items}
            self._gone(message, [i for i in message["ids"] if i not in found], specs)
        else:
            # [id, path, size, mtime, version]; messages from before versions have no version
            items = [_item(row) for row in message["items"]]
        keys = {
            (i.image_id, s.kind): ev.outcome_key(job_id, i.image_id, s.kind)
            for i in items
            for s in specs
        }
        done = self.events.existing_keys(list(keys.values()))
        current = self.read.renditions_for([k for k, v in keys.items() if v not in done])
        folders = self.read.folder_docs()
        disk_free = {f["_id"]: self.files.free_bytes(str(f["path"])) for f in folders}
        counts = {"generated": 0, "skipped": 0, "failed": 0}
        self._heartbeat(job_id)
        looked = time.monotonic()
        for n, image in enumerate(items):
            wanted = [s for s in specs if keys[(image.image_id, s.kind)] not in done]
            if not wanted:
                continue
            if self.stopping.is_set():
                log.info("stopping: the last %d images of a batch of job %s left for the next"
                         " run", len(items) - n, job_id)  # fmt: skip
                break
            if n and time.monotonic() - looked >= self.control_every:
                looked = time.monotonic()
                job = self.read.job_doc(job_id)
                if job and (job.get("cancelled") or job.get("paused")):
                    state = "cancelled" if job.get("cancelled") else "paused"
                    # What is left has no outcome: resume re-sends exactly that.
                    log.info("job %s is %s: the last %d images of the batch dropped",
                             job_id, state, len(items) - n)  # fmt: skip
                    break
            try:
                outcomes = self._one(
                    message, image, wanted, current, folders, disk_free, final_attempt
                )
            except NoSpace as exc:
                # Every folder is full: pause the job rather than fail its images. Resume
                # (by hand, or by recovery once space is free) re-sends exactly what is left.
                log.warning("job %s paused: %s", job_id, exc)
                self.events.append(ev.JobPaused(job_id, uuid.uuid4().hex, f"no_space: {exc}"))
                break
            self.events.append_many(outcomes)
            for o in outcomes:
                counts[_status(o)] += 1
        return counts

    def _gone(self, message: Mapping[str, Any], ids: list[str], specs: list[RenditionSpec]) -> None:
        """Images removed from their collection since the job was planned: failed, once."""
        if ids:
            self.events.append_many(
                [
                    ev.RenditionFailed(
                        message["job_id"], i, message["collection_id"], s.kind, "source_missing",
                        "the image was removed from its collection after the job was planned",
                        first_of_image=n == 0,
                    )
                    for i in ids
                    for n, s in enumerate(specs)
                ]
            )  # fmt: skip

    def _one(
        self, message: Mapping[str, Any], image: SourceImage, specs: list[RenditionSpec],
        current: Mapping[tuple[str, str], Any], folders: list[dict[str, Any]],
        disk_free: dict[str, int], final_attempt: bool,
    ) -> list[ev.Event]:  # fmt: skip
        paths = {f["_id"]: str(f["path"]) for f in folders}
        job_id, cid = message["job_id"], message["collection_id"]
        outcomes: list[ev.Event] = []
        todo: list[RenditionSpec] = []
        for spec in specs:
            doc = current.get((image.image_id, spec.kind))
            folder = paths.get(doc["folder_id"]) if doc else None
            if (
                not message.get("force")
                and doc is not None
                and folder is not None
                and is_current(doc, spec, image)
                and self.files.size(folder, doc["path"]) == doc["bytes"]
            ):
                outcomes.append(
                    ev.RenditionSkipped(job_id, image.image_id, cid, spec.kind, "current")
                )
            else:
                todo.append(spec)
        if not todo:
            return outcomes
        started = time.perf_counter()
        try:
            rendered = self._render(message, image, todo)
        except TransientIOError as exc:
            if not final_attempt:
                raise
            return [*outcomes, *_failed(job_id, image, cid, todo, exc)]
        except RenderError as exc:
            return [*outcomes, *_failed(job_id, image, cid, todo, exc)]
        ms = int((time.perf_counter() - started) * 1000)
        try:
            recorded = self._recorded(image.image_id)
            for spec, out in zip(todo, rendered, strict=True):
                stored = self._store(
                    image, spec, out, folders, disk_free, recorded.get(spec.kind, {})
                )
                outcomes.append(
                    ev.RenditionGenerated(
                        job_id, image.image_id, cid, spec.kind, ms=ms, spec_hash=spec.hash,
                        source_size=image.size, source_mtime=image.mtime,
                        source_version=image.version,
                        width=out.width, height=out.height, **stored,
                    )
                )  # fmt: skip
        except NoSpace:
            raise
        except TransientIOError as exc:
            if not final_attempt:
                raise
            outcomes.extend(_failed(job_id, image, cid, todo, exc))
        except RenderError as exc:
            log.warning("%s/%s failed: %s: %s", message["path"], image.path, exc.error_class, exc)
            outcomes.extend(_failed(job_id, image, cid, todo, exc))
        return outcomes

    def _render(
        self, message: Mapping[str, Any], image: SourceImage, specs: list[RenditionSpec]
    ) -> list[Rendered]:
        """The renditions of one image, or a RenderError: whatever the renderer raised (a
        source error always is one; anything else is logged here, once, with its traceback)."""
        where = f"{message['path']}/{image.path}"
        ref = SourceRef(
            message["path"], message["source"], image.path, self._root(message),
            image.size, image.mtime,
        )  # fmt: skip
        try:
            return self.renderer(ref, specs, self.max_pixels, self.max_source_bytes)
        except TransientIOError:
            raise
        except RenderError as exc:
            if exc.unexpected:
                log.error("%s failed: %s: %s", where, exc.error_class, exc, exc_info=exc)
            else:
                log.warning("%s failed: %s: %s", where, exc.error_class, exc)
            raise
        except MemoryError as exc:
            raise TransientIOError("ran out of memory while rendering") from exc
        except Exception as exc:
            log.error("%s: the renderer raised %s", where, type(exc).__name__, exc_info=exc)
            raise unexpected(exc, "rendering") from exc

    def _root(self, message: Mapping[str, Any]) -> str:
        """The library root of the message's collection: no link below it is followed."""
        cid = str(message["collection_id"])
        if cid not in self._roots:
            doc = self.read.collection(cid, include_removed=True) or {}
            self._roots[cid] = str(doc.get("root") or "")
        return self._roots[cid]

    def _recorded(self, image_id: str) -> dict[str, dict[tuple[str, str], int]]:
        """Per kind, the files the log counts for this image: (folder id, path) -> bytes.

        The log, not the disk, says whether a write replaces a counted file: a worker
        killed between rename and append leaves a file that was never counted. Every
        counted file, not only the current one: a rendition written into another folder
        leaves its old file counted (an orphan until cleanup), and a later write over that
        file replaces it.
        """
        found: dict[str, dict[tuple[str, str], int]] = {}
        for s in self.events.of_image(image_id, limit=10_000):
            e = s.event
            if isinstance(e, ev.RenditionGenerated):
                found.setdefault(e.kind, {})[(e.folder_id, e.path)] = e.bytes
            elif isinstance(e, ev.RenditionDeleted) and e.counted:
                found.get(e.kind, {}).pop((e.folder_id, e.path), None)
        return found

    def _store(
        self, image: SourceImage, spec: RenditionSpec, out: Rendered,
        folders: list[dict[str, Any]], disk_free: dict[str, int],
        recorded: Mapping[tuple[str, str], int],
    ) -> dict[str, Any]:  # fmt: skip
        """Write one rendition into the best folder with room; another if that one fills up."""
        relpath = rendition_relpath(spec.kind, image.image_id, spec.extension)
        while True:
            folder = choose_folder(folders, len(out.data), disk_free)  # NoSpace when none fits
            try:
                self.files.write_atomic(folder["path"], relpath, out.data)
            except NoSpace:
                disk_free[folder["_id"]] = 0
                continue
            disk_free[folder["_id"]] -= len(out.data)
            replaced = recorded.get((folder["_id"], relpath), -1)
            # folder_stats learns of this write only when it is projected: count it here, so
            # the rest of the batch does not pour into a folder that is already full.
            folder["bytes"] = int(folder.get("bytes", 0)) + len(out.data) - max(replaced, 0)
            return {"folder_id": folder["_id"], "path": relpath, "bytes": len(out.data),
                    "replaced_bytes": replaced}  # fmt: skip

    def _heartbeat(self, job_id: str) -> None:
        beat = int(self.clock.now() // HEARTBEAT_SECONDS)
        if self._beats.get(job_id) != beat:
            self._beats[job_id] = beat
            self.events.append(ev.JobHeartbeat(job_id, self.worker, beat))


def _item(row: Sequence[Any]) -> SourceImage:
    """[id, path, size, mtime, version]; messages sent before versions existed lack it."""
    version = int(row[4]) if len(row) > 4 else 0
    return SourceImage(row[0], row[1], int(row[2]), float(row[3]), version)


def _status(outcome: ev.Event) -> str:
    if isinstance(outcome, ev.RenditionGenerated):
        return "generated"
    return "skipped" if isinstance(outcome, ev.RenditionSkipped) else "failed"


def _failed(
    job_id: str, image: SourceImage, cid: str, specs: Sequence[RenditionSpec], exc: RenderError
) -> list[ev.Event]:
    message = outcome_message(exc)
    return [
        ev.RenditionFailed(
            job_id, image.image_id, cid, s.kind, exc.error_class, message, first_of_image=n == 0
        )
        for n, s in enumerate(specs)
    ]

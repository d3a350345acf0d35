"""What a job has left, on a real MongoDB-wire server: exact wherever the projector is.

Recovery reads outcomes from the compact `job_outcomes` projection up to the projector's
position and from the log beyond it (and for gaps the projector passed): the answer must
be the same before, during and after projection, and with a late-committed outcome.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pymongo.database import Database

from domain import events as ev
from domain.specs import DEFAULT_SPECS
from ops import control
from ops.bootstrap import App
from projections.memory_log import MemoryEventLog
from projections.projector import Projector
from projections.readmodels import ReadModels
from tests.integration.test_projector import ManualClock, TickingClock, drain

pytestmark = pytest.mark.integration

KINDS = ["cache", "thumbnail"]


def _job(log: MemoryEventLog, images: list[str]) -> str:
    job, cid = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    pages = [images[i : i + 10] for i in range(0, len(images), 10)]
    for n, page in enumerate(pages):
        log.append(ev.JobImagesPlanned(job, n, page))
    specs = {k: DEFAULT_SPECS[k] for k in KINDS}
    log.append(
        ev.JobPlanned(
            job, "bulk", cid, KINDS, {k: s.to_dict() for k, s in specs.items()},
            {k: s.hash for k, s in specs.items()}, len(images), 0, len(pages),
        )
    )  # fmt: skip
    return job


def _done(job: str, image: str, kind: str) -> ev.RenditionSkipped:
    return ev.RenditionSkipped(job, image, "c0ffee00c0ffee00", kind, "current")


def _failed(job: str, image: str, kind: str) -> ev.RenditionFailed:
    return ev.RenditionFailed(job, image, "c0ffee00c0ffee00", kind, "corrupt", "truncated")


def test_what_is_left_is_the_same_before_during_and_after_projection(
    mongo_db: Database[Any],
) -> None:
    # Given a job of 30 images: 20 done, one with only its cache image, one failed,
    # and one whose cache outcome took a seq that committed only after it was passed
    log = MemoryEventLog(TickingClock())
    clock = ManualClock()
    projector = Projector(log, mongo_db, clock, gap_timeout=1.0, batch=7)
    read = ReadModels(mongo_db)
    read.ensure_indexes()
    app = cast(App, SimpleNamespace(events=log, projector=projector, read=read))
    images = [uuid.uuid4().hex for _ in range(30)]
    job = _job(log, images)
    for image in images[:20]:
        log.append_many([_done(job, image, k) for k in KINDS])
    log.append(_done(job, images[20], "cache"))
    log.append_many([_failed(job, images[21], k) for k in KINDS])
    gap = log.reserve()
    log.append(_done(job, images[22], "thumbnail"))
    expected = [images[20], images[22], *images[23:]]

    def left() -> list[str]:
        return control.remaining_images(app, job)

    # When nothing is projected yet, then part of it, then all of it
    # Then the same images are left each time, and the failed one is known by its class
    assert left() == expected
    projector.run_once()
    projector.run_once()
    assert 0 < projector.position() < gap
    assert left() == expected
    drain(projector)
    clock.advance(5.0)
    assert drain(projector) == log.head()
    assert left() == expected
    assert control.job_progress(app, job)[2] == {images[21]: "corrupt"}

    # And the projection holds every outcome, compactly: a few documents, not one per event
    docs = list(mongo_db["job_outcomes"].find({"job_id": job}))
    assert 1 <= len(docs) <= 2
    held = sum(len(ids) for d in docs for ids in d["done"].values())
    assert held == 20 * 2 + 1 + 1

    # When the passed seq commits late, before the projector applies it
    log.insert_at(_done(job, images[22], "cache"), gap)

    # Then it already counts, and still does once the projector has applied it late
    assert left() == [images[20], *images[23:]]
    assert projector.run_once() == 1
    assert left() == [images[20], *images[23:]]

"""Projection rules: the read models a pure fold of realistic events produces."""

from __future__ import annotations

import uuid
from dataclasses import fields
from functools import reduce
from typing import Any

import pytest

from domain import events as ev
from domain.changes import Change, Doc, apply
from domain.projection import changes, fold, rendition_doc_id
from domain.specs import DEFAULT_SPECS
from domain.views import folder_view, job_view

KINDS = ["cache", "thumbnail"]


def rid() -> str:
    return uuid.uuid4().hex


class History:
    """Events with positions and times, the way the log would store them."""

    def __init__(self) -> None:
        self.events: list[ev.StoredEvent] = []

    def add(self, *events: ev.Event) -> History:
        for event in events:
            seq = len(self.events) + 1
            self.events.append(ev.stored(event, seq, 1_000.0 + seq))
        return self

    def models(self) -> dict[str, dict[str, Doc]]:
        return fold(self.events)


def planned(job_id: str, collection_id: str, images: list[str]) -> list[ev.Event]:
    specs = {k: DEFAULT_SPECS[k].to_dict() for k in KINDS}
    hashes = {k: DEFAULT_SPECS[k].hash for k in KINDS}
    return [
        ev.JobPlanned(job_id, rid(), collection_id, KINDS, specs, hashes, len(images), 0, 1),
        ev.JobImagesPlanned(job_id, 0, images),
    ]


def generated(
    job_id: str,
    collection_id: str,
    image_id: str,
    kind: str,
    *,
    folder_id: str = "f",
    size: int = 1000,
    replaced: int = -1,
) -> ev.RenditionGenerated:
    path = f"{kind}/{image_id[:2]}/{image_id[2:4]}/{image_id}.jpg"
    return ev.RenditionGenerated(
        job_id=job_id,
        image_id=image_id,
        collection_id=collection_id,
        kind=kind,
        folder_id=folder_id,
        path=path,
        bytes=size,
        width=1920,
        height=1280,
        ms=40,
        spec_hash=DEFAULT_SPECS[kind].hash,
        source_size=5_000_000,
        source_mtime=1_700_000_000.0,
        replaced_bytes=replaced,
    )


def deleted(
    image_id: str, kind: str, folder_id: str, collection_id: str, size: int, *, was_current: bool
) -> ev.RenditionDeleted:
    return ev.RenditionDeleted(
        image_id=image_id,
        kind=kind,
        folder_id=folder_id,
        path=f"{kind}/{image_id}.jpg",
        bytes=size,
        reason="orphan",
        deletion_id=rid(),
        collection_id=collection_id,
        was_current=was_current,
    )


def job_of(history: History, job_id: str) -> dict[str, Any]:
    return job_view(history.models()["job_state"][job_id])


# -- jobs -------------------------------------------------------------------------


def test_job_counts_outcomes_of_every_kind() -> None:
    # Given a job planned for 3 images x 2 kinds
    job, coll = rid(), rid()
    images = [rid() for _ in range(3)]
    history = History().add(*planned(job, coll, images))

    # Then it is queued with everything remaining
    view = job_of(history, job)
    assert (view["status"], view["total"], view["remaining"], view["percent"]) == (
        "queued",
        6,
        6,
        0.0,
    )

    # When outcomes of all three kinds arrive for some of them
    history.add(
        generated(job, coll, images[0], "cache", size=700),
        generated(job, coll, images[0], "thumbnail", size=30),
        ev.RenditionSkipped(job, images[1], coll, "cache", reason="current"),
        ev.RenditionFailed(job, images[1], coll, "thumbnail", "corrupt", "bad data"),
    )

    # Then it is running with the counts, bytes and failure classes so far
    view = job_of(history, job)
    assert view["status"] == "running"
    assert (view["generated"], view["skipped"], view["failed"]) == (2, 1, 1)
    assert (view["remaining"], view["percent"], view["bytes"]) == (2, 66.67, 730)
    assert view["failed_by_class"] == {"corrupt": 1}
    doc = history.models()["job_state"][job]
    assert doc["by_kind"] == {
        "cache": {"generated": 1, "skipped": 1},
        "thumbnail": {"generated": 1, "failed": 1},
    }

    # When the last two fail too
    history.add(
        ev.RenditionFailed(job, images[2], coll, "cache", "corrupt", "bad data"),
        ev.RenditionFailed(job, images[2], coll, "thumbnail", "io", "disk", attempts=3),
    )

    # Then it is finished, with each failure counted under its class
    view = job_of(history, job)
    assert (view["status"], view["remaining"], view["percent"]) == ("finished", 0, 100.0)
    assert view["failed_by_class"] == {"corrupt": 2, "io": 1}
    assert view["finished_at"] is not None
    doc = history.models()["job_state"][job]
    assert doc["first_outcome_at"] == history.events[2].at
    assert doc["last_progress_at"] == history.events[-1].at


def test_job_pause_resume_and_cancel() -> None:
    # Given a job with one outcome of its 6
    job, coll = rid(), rid()
    images = [rid() for _ in range(3)]
    history = History().add(
        *planned(job, coll, images), ev.RenditionSkipped(job, images[0], coll, "cache", "current")
    )

    # When it is paused, then resumed, then cancelled
    statuses = []
    for control in (ev.JobPaused, ev.JobResumed, ev.JobCancelled):
        history.add(control(job, rid(), reason="operator"))
        statuses.append(job_of(history, job)["status"])

    # Then its status follows
    assert statuses == ["paused", "running", "cancelled"]


def test_heartbeat_makes_a_job_running_and_alerts_are_counted() -> None:
    # Given a planned job without outcomes
    job, coll = rid(), rid()
    history = History().add(*planned(job, coll, [rid(), rid()]))

    # When a worker beats and two alerts are raised about it
    history.add(
        ev.JobHeartbeat(job, "w1", 7),
        ev.AlertRaised(rid(), f"job:{job}", "warning", "first"),
        ev.AlertRaised(rid(), f"job:{job}", "warning", "second"),
        ev.AlertRaised(rid(), "folder:x", "warning", "not about a job"),
    )

    # Then it is running, and the alerts are on it
    doc = history.models()["job_state"][job]
    assert job_view(doc)["status"] == "running"
    assert (doc["alerts"], doc["last_alert"]) == (2, "second")
    assert doc["heartbeat_at"] == history.events[2].at


# -- folders ----------------------------------------------------------------------


def folder_of(history: History, folder_id: str) -> dict[str, Any]:
    return folder_view(history.models()["folder_stats"][folder_id], 0)


def test_folder_stats_follow_files_written_replaced_deleted_and_reconciled() -> None:
    # Given an empty folder
    folder, job, coll = rid(), rid(), rid()
    a, b = rid(), rid()
    history = History().add(ev.CacheFolderAdded(folder, "/cache/one", 10_000, 5))
    assert (folder_of(history, folder)["files"], folder_of(history, folder)["bytes"]) == (0, 0)

    # When two new files are written
    history.add(
        generated(job, coll, a, "cache", folder_id=folder, size=1000),
        generated(job, coll, b, "cache", folder_id=folder, size=400),
    )
    # Then both count
    assert (folder_of(history, folder)["files"], folder_of(history, folder)["bytes"]) == (2, 1400)

    # When one is replaced by a larger file, and a file of size 0 by a new one
    history.add(generated(rid(), coll, a, "cache", folder_id=folder, size=1500, replaced=1000))
    history.add(generated(rid(), coll, b, "thumbnail", folder_id=folder, size=50, replaced=0))
    # Then no file is added, only the difference in bytes
    assert (folder_of(history, folder)["files"], folder_of(history, folder)["bytes"]) == (2, 1950)

    # When the current rendition of a is deleted
    history.add(deleted(a, "cache", folder, coll, 1500, was_current=True))
    # Then the folder shrinks and the rendition is tombstoned
    models = history.models()
    assert (models["folder_stats"][folder]["files"], models["folder_stats"][folder]["bytes"]) == (
        1,
        450,
    )
    rendition = models["renditions"][rendition_doc_id(a, "cache")]
    assert (rendition["deleted"], rendition["deleted_reason"]) == (True, "orphan")

    # When a stale file of b (not what the rendition points to) is deleted
    history.add(deleted(b, "cache", folder, coll, 400, was_current=False))
    # Then the folder shrinks but b's rendition stays live
    models = history.models()
    assert (models["folder_stats"][folder]["files"], models["folder_stats"][folder]["bytes"]) == (
        0,
        50,
    )
    assert models["renditions"][rendition_doc_id(b, "cache")]["deleted"] is False

    # When reconciliation measured 3 files and 900 bytes where 0 and 50 were projected
    history.add(ev.FolderReconciled(folder, rid(), 3, 900, 0, 50))
    # Then the drift is corrected
    view = folder_of(history, folder)
    assert (view["files"], view["bytes"], view["usage"]) == (3, 900, 0.09)
    doc = history.models()["folder_stats"][folder]
    assert doc["last_reconciled_at"] == history.events[-1].at
    assert doc["last_cleanup_at"] == history.events[-2].at


def test_folder_changes_and_removal() -> None:
    # Given a folder
    folder = rid()
    history = History().add(ev.CacheFolderAdded(folder, "/cache/two", 1000, 1))

    # When its capacity and priority change, and it is removed
    history.add(ev.CacheFolderChanged(folder, rid(), 500, 9), ev.CacheFolderRemoved(folder))

    # Then the stats show the new settings and the removal
    view = folder_of(history, folder)
    assert (view["capacity_bytes"], view["priority"], view["removed"]) == (500, 9, True)
    assert history.models()["folder_stats"][folder]["added_at"] == history.events[0].at


def test_folder_collections_count_files_per_collection() -> None:
    # Given a folder holding files of two collections
    folder, job, one, two = rid(), rid(), rid(), rid()
    a, b, c = rid(), rid(), rid()
    history = History().add(
        ev.CacheFolderAdded(folder, "/cache/three", 0, 1),
        generated(job, one, a, "cache", folder_id=folder),
        generated(job, one, b, "cache", folder_id=folder),
        generated(job, two, c, "cache", folder_id=folder),
    )

    # When one file of the first collection is deleted
    history.add(deleted(a, "cache", folder, one, 1000, was_current=True))

    # Then each collection's file count in the folder follows
    docs = history.models()["folder_collections"]
    assert docs[f"{folder}:{one}"]["files"] == 1
    assert docs[f"{folder}:{two}"]["files"] == 1


# -- collections and images -------------------------------------------------------------


def test_collection_and_images_follow_scans() -> None:
    # Given a registered collection
    coll, scan = rid(), rid()
    a, b, c, odd = rid(), rid(), rid(), rid()
    history = History().add(ev.CollectionRegistered(coll, "/lib/x", "/lib", "folder", "x"))

    # When a scan in two parts finds 3 images and one unsupported file
    history.add(
        ev.CollectionScanned(
            coll, scan, 0, 2, added=[[a, "a.jpg", 10, 1.0], [b, "b.jpg", 20, 2.0]]
        ),
        ev.CollectionScanned(
            coll, scan, 1, 2, added=[[c, "c.png", 30, 3.0]], unsupported=[[odd, "notes.txt"]]
        ),
    )
    # Then the collection counts them and each image is known
    models = history.models()
    assert (models["collections"][coll]["images"], models["collections"][coll]["unsupported"]) == (
        3,
        1,
    )
    wanted = {"collection_id": coll, "path": "a.jpg", "size": 10, "mtime": 1.0}
    assert {k: models["images"][a].get(k) for k in wanted} == wanted
    assert (models["images"][a]["supported"], models["images"][a]["removed"]) == (True, False)
    assert models["images"][odd]["supported"] is False

    # When a rescan finds one changed, one removed, and the unsupported file gone
    history.add(
        ev.CollectionScanned(
            coll,
            rid(),
            0,
            1,
            changed=[[a, "a.jpg", 11, 4.0]],
            removed=[b],
            unsupported_removed=[odd],
        )
    )
    # Then the counts and images follow
    models = history.models()
    collection = models["collections"][coll]
    assert (collection["images"], collection["unsupported"]) == (2, 0)
    assert (collection["registered_at"], collection["last_scan_at"]) == (
        history.events[0].at,
        history.events[-1].at,
    )
    assert (models["images"][a]["size"], models["images"][a]["mtime"]) == (11, 4.0)
    assert models["images"][b]["removed"] is True
    assert models["images"][odd]["removed"] is True
    assert models["images"][c]["removed"] is False


def test_a_removed_collection_is_marked_until_registered_again() -> None:
    # Given a registered collection, removed by the user
    coll, removal = rid(), rid()
    history = History().add(
        ev.CollectionRegistered(coll, "/lib/x", "/lib", "folder", "x"),
        ev.CollectionRemoved(coll, removal, "/lib/x", 0),
    )
    removed = history.models()["collections"][coll]

    # When its path is registered again
    again = ev.CollectionRegistered(coll, "/lib/x", "/lib", "folder", "x", again_after=removal)
    history.add(again)
    back = history.models()["collections"][coll]

    # Then it was marked removed, with the removal, and is plain again; the second
    # registration has a key of its own (the first one's would be taken as a duplicate)
    assert (removed["removed"], removed["removal_id"]) == (True, removal)
    assert "removed" not in back and "removal_id" not in back and "removed_at" not in back
    assert again.key != ev.CollectionRegistered(coll, "/lib/x", "/lib", "folder", "x").key


def test_fold_can_be_limited_to_some_tables() -> None:
    # Given events touching several read models
    folder, coll = rid(), rid()
    history = History().add(
        ev.CacheFolderAdded(folder, "/cache/y", 0, 1),
        ev.CollectionRegistered(coll, "/lib/y", "/lib", "folder", "y"),
    )

    # When only folder_stats is folded
    models = fold(history.events, ["folder_stats"])

    # Then only that table is there
    assert set(models) == {"folder_stats"}
    assert set(models["folder_stats"]) == {folder}


def test_changes_of_every_rule_merge_per_document_as_the_projector_does() -> None:
    # Given a history touching every rule, the same documents again and again
    job, coll, folder = rid(), rid(), rid()
    images = [rid() for _ in range(3)]
    history = History().add(
        ev.CacheFolderAdded(folder, "/cache/m", 10**9, 1),
        ev.CollectionRegistered(coll, "/lib/m", "/lib", "folder", "m"),
        ev.CollectionScanned(coll, rid(), 0, 1, added=[[i, f"{i}.jpg", 1, 1.0] for i in images]),
        *planned(job, coll, images),
        ev.JobHeartbeat(job, "w", 1),
        *(generated(job, coll, i, k, folder_id=folder) for i in images for k in KINDS[:1]),
        ev.RenditionSkipped(job, images[0], coll, "thumbnail", "current"),
        ev.RenditionFailed(job, images[1], coll, "thumbnail", "corrupt", "bad"),
        ev.AlertRaised(rid(), f"job:{job}", "warning", "slow"),
        ev.JobPaused(job, rid()),
        ev.JobResumed(job, rid()),
        generated(rid(), coll, images[0], "cache", folder_id=folder, size=5, replaced=1000),
        deleted(images[1], "cache", folder, coll, 1000, was_current=True),
        ev.FolderReconciled(folder, rid(), 5, 5, 3, 3),
        ev.CacheFolderChanged(folder, rid(), 10**10, 2),
        *samples(),
    )

    # When each document's changes are merged as the projector batches them: into one
    # update, or into consecutive ones where `then` refuses a merge
    merged: dict[tuple[str, str], list[Change]] = {}
    for s in history.events:
        for c in changes(s):
            updates = merged.setdefault((c.table, c.doc_id), [])
            try:
                updates[-1] = updates[-1].then(c)
            except (IndexError, ValueError):
                updates.append(c)

    # Then applying the merged updates gives the fold
    models = history.models()
    assert {key: reduce(apply, updates, None) for key, updates in merged.items()} == {
        (table, doc_id): doc for table, docs in models.items() for doc_id, doc in docs.items()
    }


# -- stored form ---------------------------------------------------------------------


def samples() -> list[ev.Event]:
    """One event of every registered type, with every field filled."""
    job, coll, folder, image = rid(), rid(), rid(), rid()
    return [
        ev.LibraryRootAdded("/lib"),
        ev.CollectionRegistered(coll, "/lib/x", "/lib", "archive", "x.cbz", again_after=rid()),
        ev.CollectionScanned(
            coll,
            rid(),
            1,
            3,
            added=[[image, "a.jpg", 10, 1.5]],
            changed=[[rid(), "b.jpg", 11, 2.5]],
            removed=[rid()],
            unsupported=[[rid(), "c.txt"]],
            unsupported_removed=[rid()],
        ),
        ev.CollectionRemoved(coll, rid(), "/lib/x", 7),
        ev.CacheFolderAdded(folder, "/cache", 1 << 30, 3),
        ev.CacheFolderChanged(folder, rid(), 1 << 31, 4),
        ev.CacheFolderRemoved(folder),
        ev.BulkOperationRequested(rid(), [coll], KINDS, force=True, all=False),
        *planned(job, coll, [image]),
        ev.JobPaused(job, rid(), "busy"),
        ev.JobResumed(job, rid()),
        ev.JobCancelled(job, rid(), "no longer wanted"),
        ev.JobHeartbeat(job, "worker-1", 42),
        generated(job, coll, image, "cache", folder_id=folder, replaced=12),
        ev.RenditionSkipped(job, image, coll, "thumbnail", "current"),
        ev.RenditionFailed(job, image, coll, "cache", "too_many_pixels", "huge", attempts=2),
        deleted(image, "cache", folder, coll, 99, was_current=False),
        ev.FolderReconciled(folder, rid(), 1, 2, 3, 4),
        ev.AlertRaised(rid(), f"job:{job}", "error", "failure rate 50%"),
        ev.SeqVoided(17),
        ev.CacheFolderMarked(folder, rid(), rid(), "host-1", "/cache", 2049, 131),
        ev.InstallationIdentified(rid()),
    ]


def test_samples_cover_every_event_type() -> None:
    assert {e.type for e in samples()} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", samples(), ids=lambda e: e.type)
def test_stored_event_round_trips_through_its_record(event: ev.Event) -> None:
    # Given an event stored at a position and time
    original = ev.stored(event, 123, 1_700_000_123.25)

    # When it is turned into a record and read back
    record = original.to_record()
    again = ev.StoredEvent.from_record(record)

    # Then nothing is lost, and the record carries the envelope the log indexes
    assert again == original
    assert (record["seq"], record["key"], record["stream"]) == (123, event.key, event.stream)
    assert (record["type"], record["v"]) == (event.type, event.version)
    assert set(record["data"]) == {f.name for f in fields(event)}


def test_old_record_is_upgraded_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given AlertRaised at version 3, where v1 called `message` `text` and v2 had no level
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        data["message"] = data.pop("text")
        return data

    def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "level": "warning"}

    monkeypatch.setattr(ev.AlertRaised, "version", 3)
    monkeypatch.setitem(ev.UPGRADES, ("AlertRaised", 1), v1_to_v2)
    monkeypatch.setitem(ev.UPGRADES, ("AlertRaised", 2), v2_to_v3)
    alert_id, job = rid(), rid()
    old = {
        "seq": 5,
        "key": f"alert:{alert_id}",
        "type": "AlertRaised",
        "v": 1,
        "at": 12.5,
        "stream": f"job:{job}",
        "data": {"alert_id": alert_id, "subject": f"job:{job}", "text": "slow"},
    }

    # When the v1 record is read
    got = ev.StoredEvent.from_record(old)

    # Then it comes back as the current version, and the stored record is untouched
    assert got.event == ev.AlertRaised(alert_id, f"job:{job}", "warning", "slow")
    assert (got.v, got.seq, got.key, got.at) == (3, 5, f"alert:{alert_id}", 12.5)
    assert old["data"] == {"alert_id": alert_id, "subject": f"job:{job}", "text": "slow"}


def test_current_record_is_not_upgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an upgrade registered from v1, and a record already at the current version
    def must_not_run(data: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("upgraded a current record")

    monkeypatch.setitem(ev.UPGRADES, ("LibraryRootAdded", 1), must_not_run)
    record = ev.stored(ev.LibraryRootAdded("/lib"), 1, 1.0).to_record()

    # When it is read
    # Then it comes back as stored
    assert ev.StoredEvent.from_record(record).event == ev.LibraryRootAdded("/lib")


def test_unknown_event_type_is_refused() -> None:
    record = {"seq": 1, "key": "k", "type": "NoSuchEvent", "v": 1, "at": 0.0, "stream": "s"}
    with pytest.raises(ValueError, match="NoSuchEvent"):
        ev.StoredEvent.from_record({**record, "data": {}})

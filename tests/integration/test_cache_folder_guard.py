"""Only our files are ever deleted: maintenance against the real MongoDB-wire server, in
cache folders that were replaced, hold links or mounts, or come from before markers."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from domain import events as ev
from domain.errors import InvalidInput
from domain.ids import rendition_relpath
from domain.ownership import MARKER_NAME, Marker, parse_marker
from ops import library, maintenance, ownership, replay
from ops.bootstrap import App, bootstrap
from ops.settings import Settings
from tests.integration.test_maintenance import _env, _library

pytestmark = pytest.mark.integration

OLD = time.time() - 30 * 86_400  # older than any cleanup cutoff


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str) -> Iterator[Settings]:
    """A fresh database on the test server, actors in process; dropped afterwards."""
    env = _env(tmp_path, mongodb_uri)
    yield Settings.from_env(env)
    pymongo.MongoClient(mongodb_uri).drop_database(env["IMAGECACHE_DB"])


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    with bootstrap(settings) as wired:
        wired.start_worker(2)
        yield wired


def _generate(app: App, lib: Path, folder: Path) -> tuple[str, list[str]]:
    """Generate a library into `folder` (added first); its folder id and collection ids."""
    fid = library.add_folder(app, folder)
    library.add_root(app, lib)
    ids = library.add_collections(app, lib)
    library.scan_collections(app, ids)
    bulk = library.regenerate(app, ids)
    library.wait_for(app, [j.job_id for j in bulk.jobs], timeout=120)
    app.projector.catch_up()
    return fid, ids


def _renditions(folder: Path) -> list[Path]:
    return sorted(p for k in ("cache", "thumbnail") for p in (folder / k).rglob("*.jpg"))


def _orphan_everything(app: App, ids: list[str]) -> None:
    """Remove the collections: every rendition becomes one cleanup deletes at once."""
    for cid in ids:
        library.remove_collection(app, cid)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under root (links not followed) and its bytes."""
    found = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                found[str(p.relative_to(root))] = p.read_bytes()
    return found


def _left_alone(report: dict[str, Any]) -> dict[str, str]:
    return {a["path"]: a["reason"] for a in report["left_alone"]}


def test_a_folder_replaced_at_its_path_is_left_alone_until_added_again(
    app: App, tmp_path: Path
) -> None:
    # Given a generated cache folder whose renditions are all orphans now
    folder = tmp_path / "cache"
    fid, ids = _generate(app, _library(tmp_path / "lib", 4, 0), folder)
    _orphan_everything(app, ids)
    # And the folder moved away, and another directory at its path holding copies of
    # everything, the marker too (so by name and marker it looks like ours)
    moved = tmp_path / "moved-away"
    folder.rename(moved)
    shutil.copytree(moved, folder)
    copies = _snapshot(folder)

    # When cleanup (not a dry run), evict, repair and reconcile run
    library.change_folder(app, fid, capacity=1)
    reports = [
        maintenance.cleanup(app, dry_run=False, older_than_days=0),
        maintenance.enforce_capacity(app),
        maintenance.repair_missing(app),
        maintenance.reconcile(app),
    ]

    # Then each reports the folder as replaced, and nothing in either directory is gone
    for report in reports:
        assert _left_alone(report) == {str(folder): "replaced"}, report
        assert "imagecache folders add" in report["left_alone"][0]["hint"]
    assert _snapshot(folder) == copies and _snapshot(moved) == copies
    assert app.db.events.count_documents({"type": "RenditionDeleted"}) == 0

    # And once added again (everything in it is this data folder's), cleanup takes the
    # orphans there, and only there
    library.add_folder(app, folder)
    done = maintenance.cleanup(app, dry_run=False, older_than_days=0)
    assert done["left_alone"] == [] and done["folders"][0]["files"] == len(_renditions(moved))
    assert _renditions(folder) == [] and _snapshot(moved) == copies


def test_links_in_a_cache_folder_are_never_followed_nor_deleted_through(
    app: App, tmp_path: Path
) -> None:
    # Given a generated cache folder whose renditions are all orphans now
    folder = tmp_path / "cache"
    _fid, ids = _generate(app, _library(tmp_path / "lib", 4, 0), folder)
    _orphan_everything(app, ids)
    made = _renditions(folder)
    # And outside it, a file and a folder of the user's, with names like our files
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / made[0].name).write_bytes(b"the user's own file")
    twin = outside / "twin"
    shutil.copytree(made[1].parent, twin)
    before = _snapshot(outside)
    # And links to them where renditions were: a file link, and a folder link in the layout
    made[0].unlink()
    made[0].symlink_to(outside / made[0].name)
    shutil.rmtree(made[1].parent)
    made[1].parent.symlink_to(twin, target_is_directory=True)
    links = [made[0], made[1].parent]

    # When cleanup runs (not a dry run), then repair, eviction and reconcile
    report = maintenance.cleanup(app, dry_run=False, older_than_days=0)
    maintenance.repair_missing(app)
    maintenance.reconcile(app)

    # Then the links are kept as entries imagecache did not write, and nothing they point
    # at was touched; every other orphan was deleted
    assert report["foreign"] == 2 and report["left_alone"] == []
    assert all(p.is_symlink() for p in links)
    assert _snapshot(outside) == before
    others = [p for p in made if p not in (made[0],) and p.parent != made[1].parent]
    assert others and not any(p.exists() for p in others)


def test_a_link_put_where_a_current_rendition_is_is_not_evicted_through(
    app: App, tmp_path: Path
) -> None:
    # Given a generated folder over its capacity, one current rendition replaced by a link
    folder = tmp_path / "cache"
    fid, _ids = _generate(app, _library(tmp_path / "lib", 3, 0), folder)
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"keep me")
    made = _renditions(folder)
    linked = made[0]
    linked.unlink()
    linked.symlink_to(victim)
    library.change_folder(app, fid, capacity=1)

    # When eviction frees the folder
    report = maintenance.enforce_capacity(app)

    # Then every real file went, the link stayed and what it points at is untouched
    assert report["folders"][0]["evicted"] == len(made) - 1
    assert victim.read_bytes() == b"keep me" and linked.is_symlink()
    assert _renditions(folder) == [linked]


def _mount_tmpfs(path: Path) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        if os.geteuid() == 0 and os.environ.get("IMAGECACHE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root; the device seam is tested in tests/contract")


def test_a_mount_inside_a_cache_folder_is_not_crossed(app: App, tmp_path: Path) -> None:
    # Given a generated cache folder whose renditions are all orphans now
    folder = tmp_path / "cache"
    _fid, ids = _generate(app, _library(tmp_path / "lib", 6, 0), folder)
    _orphan_everything(app, ids)
    made = _renditions(folder)
    # And another filesystem mounted on one of its layout folders, holding copies of the
    # files that folder had (same names: as if they were ours)
    layout_dir = made[0].parent.parent  # cache/ab
    hidden = {p.relative_to(layout_dir): p.read_bytes() for p in layout_dir.rglob("*.jpg")}
    _mount_tmpfs(layout_dir)
    try:
        for rel, data in hidden.items():
            (layout_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (layout_dir / rel).write_bytes(data)

        # When cleanup runs, not a dry run
        report = maintenance.cleanup(app, dry_run=False, older_than_days=0)

        # Then nothing on the mount was deleted; the orphans elsewhere were
        assert {p.relative_to(layout_dir): p.read_bytes() for p in layout_dir.rglob("*.jpg")} == (
            hidden
        )
        assert report["foreign"] == 1  # the mount point
        elsewhere = [p for p in made if layout_dir not in p.parents]
        assert elsewhere and not any(p.exists() for p in elsewhere)
    finally:
        subprocess.run(["umount", "-l", str(layout_dir)], check=False)
    # And what the mount hid is still there, untouched
    assert {p.relative_to(layout_dir): p.read_bytes() for p in layout_dir.rglob("*.jpg")} == hidden


def test_a_folder_from_before_markers_is_adopted_only_when_everything_in_it_is_ours(
    app: App, tmp_path: Path
) -> None:
    # Given a generated folder, turned into one from before markers: no marker, no mark,
    # added the way older versions did (a plain CacheFolderAdded)
    lib = _library(tmp_path / "lib", 3, 0)
    first = tmp_path / "first"
    fid, ids = _generate(app, lib, first)
    legacy = tmp_path / "legacy"
    legacy_id = library.folder_id(str(legacy))
    shutil.copytree(first, legacy)
    (legacy / MARKER_NAME).unlink()
    app.events.append(ev.CacheFolderAdded(legacy_id, str(legacy), 0, 0))
    # (its files are this data folder's: the log wrote them into it)
    for s in list(app.db.events.find({"type": "RenditionGenerated", "data.folder_id": fid})):
        data = {**s["data"], "folder_id": legacy_id, "job_id": "legacy-" + s["data"]["job_id"]}
        app.events.append(ev.RenditionGenerated(**data))
    user_file = legacy / "cache" / "holiday.pdf"
    user_file.write_bytes(b"a user's file")
    app.projector.catch_up()

    # When maintenance runs while the folder holds a file imagecache did not write
    refused = maintenance.cleanup(app, dry_run=True, older_than_days=0)
    # Then the folder is reported, not marked, and the file is there
    assert _left_alone(refused) == {str(legacy): "not_ours"}
    assert "1 entries" in refused["left_alone"][0]["message"]
    assert not (legacy / MARKER_NAME).exists() and user_file.exists()

    # And once the file is moved out, the next pass marks the folder and cleans it
    user_file.unlink()
    _orphan_everything(app, ids)
    done = maintenance.cleanup(app, dry_run=False, older_than_days=0)
    assert done["left_alone"] == []
    marker = parse_marker((legacy / MARKER_NAME).read_bytes())
    assert marker is not None and marker.folder_id == legacy_id
    assert marker.installation_id == ownership.installation_id(app)
    assert _renditions(legacy) == [] and _renditions(first) == []


def test_a_removed_folder_can_be_added_again_and_keeps_its_marker(app: App, tmp_path: Path) -> None:
    # Given an empty cache folder beside the default one, then removed
    library.ensure_default_folder(app)
    folder = tmp_path / "second"
    fid = library.add_folder(app, folder)
    app.projector.catch_up()
    library.remove_folder(app, fid)
    assert (folder / MARKER_NAME).exists()

    # When it is added again, removed again, and added once more
    library.add_folder(app, folder, priority=3)
    app.projector.catch_up()
    again = app.read.folder(fid)
    library.remove_folder(app, fid)
    library.add_folder(app, folder)
    app.projector.catch_up()

    # Then each add brought it back, and each removal took it out
    assert again is not None and not again["removed"] and again["priority"] == 3
    view = app.read.folder(fid)
    assert view is not None and not view["removed"]
    assert [r for r in maintenance.cleanup(app)["left_alone"]] == []
    _position, diffs = replay.verify(app)
    assert diffs == []


def test_the_installation_id_is_recorded_once_and_survives_export_and_import(
    tmp_path: Path, settings: Settings, mongodb_uri: str
) -> None:
    # Given a data folder with a generated cache folder
    with bootstrap(settings) as app:
        app.start_worker(2)
        folder = tmp_path / "cache"
        _generate(app, _library(tmp_path / "lib", 2, 0), folder)
        first = ownership.installation_id(app)
        buffer = io.BytesIO()
        replay.export(app, buffer)
    # When the process starts again, and the log is imported into a fresh database
    with bootstrap(settings) as app:
        again = ownership.installation_id(app)
        count = app.db.events.count_documents({"type": "InstallationIdentified"})
    export = tmp_path / "log.jsonl"
    export.write_bytes(buffer.getvalue())
    copy = Settings.from_env(_env(tmp_path / "copy", mongodb_uri))
    try:
        with bootstrap(copy) as imported:
            replay.import_file(imported, export)
            copied = ownership.installation_id(imported)
            # Then the copy trusts the folder its log added and marked: cleanup may work there
            report = maintenance.cleanup(imported, dry_run=True, older_than_days=0)
    finally:
        pymongo.MongoClient(mongodb_uri).drop_database(copy.database)
    assert first == again == copied and count == 1
    assert report["left_alone"] == [] and len(report["folders"]) == 1


def test_adding_a_folder_with_another_installations_marker_is_refused(
    app: App, tmp_path: Path
) -> None:
    # Given a folder that carries the marker of another installation
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / MARKER_NAME).write_text(Marker(library.folder_id(str(folder)), "f" * 32).text())

    # When it is added
    with pytest.raises(InvalidInput, match="marker of another"):
        library.add_folder(app, folder)

    # Then it was not added, and its marker is as it was
    app.projector.catch_up()
    assert app.read.folder(library.folder_id(str(folder))) is None
    marker = parse_marker((folder / MARKER_NAME).read_bytes())
    assert marker is not None and marker.installation_id == "f" * 32


@pytest.mark.parametrize("marker", ["ours", "missing", "another installation's"])
def test_a_host_that_never_saw_a_folder_trusts_only_its_marker(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    # Given a generated cache folder whose renditions are all orphans now, seen from a host
    # that never recorded it (another worker machine, or a container with a new name)
    folder = tmp_path / "cache"
    fid, ids = _generate(app, _library(tmp_path / "lib", 2, 0), folder)
    _orphan_everything(app, ids)
    made = _renditions(folder)
    monkeypatch.setattr(ownership, "HOST", "a-host-new-to-this-folder")
    if marker == "missing":
        (folder / MARKER_NAME).unlink()
    elif marker != "ours":
        (folder / MARKER_NAME).write_text(Marker(fid, "f" * 32).text())

    # When cleanup runs there, not a dry run
    report = maintenance.cleanup(app, dry_run=False, older_than_days=0)

    # Then with our marker it records what it sees and cleans; with none or another's it
    # leaves the folder alone, and records nothing
    marks = app.db.events.count_documents(
        {"type": "CacheFolderMarked", "data.host": "a-host-new-to-this-folder"}
    )
    if marker == "ours":
        assert report["left_alone"] == [] and marks == 1
        assert not any(p.exists() for p in made)
    else:
        reason = "no_marker" if marker == "missing" else "foreign_marker"
        assert _left_alone(report) == {str(folder): reason} and marks == 0
        assert all(p.exists() for p in made)


def test_the_log_proves_the_same_writes_file_by_file_or_in_one_pass(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a generated folder, one of whose files was recorded missing and then came back,
    # and a file with a layout name imagecache never wrote there
    folder = tmp_path / "cache"
    fid, _ids = _generate(app, _library(tmp_path / "lib", 3, 0), folder)
    made = [str(p.relative_to(folder)) for p in _renditions(folder)]
    back = folder / made[0]
    kept = back.read_bytes()
    back.unlink()
    maintenance.repair_missing(app, replan=False)
    back.write_bytes(kept)
    never = rendition_relpath("cache", "ab" + "0" * 30, "jpg")
    asked = [*made, never, "cache/report.pdf"]

    # When the log is asked which of them imagecache wrote: a lookup each, then one pass
    monkeypatch.setattr(ownership, "LOOKUP_COST", 0)
    by_lookup = ownership.written_files(app, fid, asked)
    monkeypatch.setattr(ownership, "LOOKUP_COST", 10**9)
    by_pass = ownership.written_files(app, fid, asked)

    # Then both say the same: every generated file, the one that came back no longer counted
    assert by_lookup == by_pass
    assert sorted(by_pass) == sorted(made)
    assert [rel for rel, w in by_pass.items() if not w.counted] == [made[0]]
    assert by_pass[made[1]].event.path == made[1] and by_pass[made[1]].event.folder_id == fid


def test_a_folder_put_back_after_another_was_marked_is_checked_again(
    app: App, tmp_path: Path
) -> None:
    # Given a cache folder, a copy of it put at its path and marked by adding it again
    folder = tmp_path / "cache"
    _generate(app, _library(tmp_path / "lib", 2, 0), folder)
    first = tmp_path / "first"
    folder.rename(first)
    shutil.copytree(first, folder)
    library.add_folder(app, folder)
    assert maintenance.cleanup(app)["left_alone"] == []

    # When the first directory is put back at the path
    folder.rename(tmp_path / "copy")
    first.rename(folder)
    put_back = maintenance.cleanup(app)
    # Then it is another directory than the one last marked: left alone until added again
    assert _left_alone(put_back) == {str(folder): "replaced"}
    library.add_folder(app, folder)
    assert maintenance.cleanup(app)["left_alone"] == []
    # And adding it once more records nothing new
    marks = app.db.events.count_documents({"type": "CacheFolderMarked"})
    library.add_folder(app, folder)
    assert app.db.events.count_documents({"type": "CacheFolderMarked"}) == marks == 3


def test_only_half_written_files_of_our_renditions_are_removed(app: App, tmp_path: Path) -> None:
    # Given a generated folder, and temporary files left by a writer that is gone: one of an
    # image the log knows, one of an id it never issued, one of a name outside the layout,
    # and a link at a temporary name
    folder = tmp_path / "cache"
    _generate(app, _library(tmp_path / "lib", 2, 0), folder)
    known = _renditions(folder)[0]
    gone = "no_such_host.1.2.tmp-imagecache"
    ours = known.parent / f".{known.name}.{gone}"
    never = folder / rendition_relpath("cache", "ab" + "0" * 30, "jpg")
    theirs = [
        never.parent / f".{never.name}.{gone}",
        folder / "cache" / f".notes.txt.{gone}",
    ]
    for p in (ours, *theirs):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
        os.utime(p, (OLD, OLD))
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me")
    link = known.parent / f".{known.stem}.webp.{gone}"
    link.symlink_to(target)

    # When half-written files are removed
    removed = maintenance.remove_partials(app)

    # Then only the one of our rendition went
    assert removed == 1 and not ours.exists()
    assert all(p.exists() for p in theirs) and link.is_symlink()
    assert target.read_bytes() == b"keep me"

"""Only our files are ever deleted, through the command line and the API on the real
MongoDB-wire server: user files in a cache folder, library roots that overlap one, and
folder statistics forged straight into the database."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from PIL import Image
from starlette.testclient import TestClient

from domain.ids import rendition_relpath
from domain.ownership import MARKER_NAME, Marker, folder_id_of
from ops import library
from ops.bootstrap import bootstrap
from ops.settings import Settings
from tests.e2e.conftest import REPO, Imagecache

pytestmark = pytest.mark.e2e

OLD = time.time() - 30 * 86_400  # older than any cleanup cutoff
TOKEN = "test-token-only-our-files"


@pytest.fixture
def ic(tmp_path: Path, mongodb_uri: str) -> Iterator[Imagecache]:
    """The command line on a fresh database of the test server, actors in process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGECACHE_", "MONGODB_", "RABBITMQ_"))
    }
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    env.update(
        PYTHONPATH=str(REPO), MONGODB_URI=mongodb_uri, IMAGECACHE_DB=name,
        IMAGECACHE_DATA=str(tmp_path / "var"), IMAGECACHE_WORKER_PROCESSES="1",
    )  # fmt: skip
    yield Imagecache(env)
    pymongo.MongoClient(mongodb_uri).drop_database(name)


def _ok(ic: Imagecache, *args: str) -> Any:
    """Run a command that must succeed; its JSON output when it printed some."""
    done = ic.run(*args)
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout) if "--json" in args else done


def _album(root: Path, n: int = 3, name: str = "album") -> Path:
    album = root / name
    album.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (640, 480), (40 * i, 90, 160)).save(album / f"p{i}.jpg", quality=80)
    return root


def _plant(folder: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """Put a user's files into a folder, old enough for any cleanup."""
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (OLD, OLD))
    return files


def _intact(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / rel).read_bytes() == data for rel, data in files.items())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ours(folder: Path) -> list[Path]:
    """The rendition files imagecache wrote (every name it writes ends in .jpg here)."""
    return sorted(p for k in ("cache", "thumbnail") for p in (folder / k).rglob("*.jpg"))


NEVER_ISSUED = rendition_relpath("thumbnail", "abcd" + "0" * 28, "jpg")
USER_FILES = {
    "cache/report.pdf": b"%PDF a report",
    "cache/ab/cd/notes.txt": b"notes",
    "thumbnail/x/y/z/photo.jpg": b"a photo",
}


def test_user_files_in_a_cache_folder_are_never_deleted_whatever_the_order(
    tmp_path: Path, ic: Imagecache
) -> None:
    # Given a cache folder added empty, then a user's files put into it at several depths
    cache = tmp_path / "cache"
    fid = _ok(ic, "folders", "add", str(cache), "--json")["id"]
    planted = _plant(cache, USER_FILES)
    # And a library of two albums generated into it, then a file with a layout name and an
    # id this installation never issued, and the renditions of one album made orphans
    lib = _album(_album(tmp_path / "library", name="kept"), name="removed")
    _ok(ic, "up", str(lib), "--no-serve", "--json")
    planted |= _plant(cache, {NEVER_ISSUED: b"looks like ours"})
    (removed,) = [c for c in _ok(ic, "collections", "list", "--json") if c["name"] == "removed"]
    _ok(ic, "collections", "remove", removed["id"])

    # When cleanup runs (not a dry run), then eviction of everything, repair and reconcile
    cleaned = _ok(ic, "cleanup", "--older-than-days", "0", "--json")
    _ok(ic, "folders", "change", fid, "--capacity", "1")
    evicted = _ok(ic, "evict", "--json")
    repaired = _ok(ic, "repair", "--json")
    reconciled = _ok(ic, "reconcile", "--json")

    # Then every file imagecache wrote was deleted (the removed album's by cleanup, the
    # other's by eviction), and not one of the user's
    assert _intact(cache, planted)
    assert cleaned["folders"][0]["files"] == 6 and evicted["folders"][0]["evicted"] == 6
    assert cleaned["foreign"] == 4  # report.pdf, notes.txt, thumbnail/x, the look-alike
    assert [p for p in _ours(cache) if str(p.relative_to(cache)) not in planted] == []
    assert repaired["left_alone"] == [] and reconciled["folders"][0]["foreign"] == 4
    assert not reconciled["folders"][0]["drift"]


@pytest.mark.parametrize(
    "files",
    [USER_FILES, {"thumbnail/x/y/z/photo.jpg": b"a photo"}, {NEVER_ISSUED: b"looks like ours"}],
    ids=["several", "deep", "layout-look-alike"],
)
def test_a_folder_holding_a_users_files_is_refused(
    tmp_path: Path, ic: Imagecache, files: dict[str, bytes]
) -> None:
    # Given a folder that already holds a user's files, at any depth
    folder = tmp_path / "theirs"
    planted = _plant(folder, files)

    # When it is added as a cache folder
    done = ic.run("folders", "add", str(folder))

    # Then it is refused, saying how many entries are in the way, naming none
    assert done.returncode == 1 and "already holds files imagecache did not write" in done.stderr
    assert "entries" in done.stderr and not any(Path(r).name in done.stderr for r in files)
    assert "Traceback" not in done.stderr
    # And nothing was added, written or changed there
    assert _ok(ic, "folders", "list", "--json") == []
    assert _snapshot(folder) == planted


def test_a_library_root_overlapping_a_cache_folder_is_refused_by_up(
    tmp_path: Path, ic: Imagecache
) -> None:
    # Given a cache folder holding a user's photos, beside the library
    cache = tmp_path / "cache"
    _ok(ic, "folders", "add", str(cache))
    photos = _album(cache / "photos")  # (a cache folder the user keeps photos in)
    before = _snapshot(photos)

    # When `up` is given a library inside the cache folder, or one holding it
    inside = ic.run("up", str(photos), "--no-serve")
    around = ic.run("up", str(tmp_path), "--no-serve")

    # Then both are refused with what was wrong, and no picture was touched
    for done in (inside, around):
        assert done.returncode == 1 and "overlaps the cache folder" in done.stderr
        assert "Traceback" not in done.stderr
    assert _snapshot(photos) == before
    assert _ok(ic, "collections", "list", "--json") == []


def _orphaned_folder(tmp_path: Path, ic: Imagecache) -> tuple[Path, list[Path]]:
    """A cache folder with a generated library whose renditions are orphans now."""
    cache = tmp_path / "cache"
    _ok(ic, "folders", "add", str(cache))
    _ok(ic, "up", str(_album(tmp_path / "library")), "--no-serve", "--json")
    (collection,) = _ok(ic, "collections", "list", "--json")
    _ok(ic, "collections", "remove", collection["id"])
    return cache, _ours(cache)


@pytest.mark.parametrize("where", ["inside", "around"])
def test_a_root_in_the_settings_overlapping_a_cache_folder_is_reported_and_left_alone(
    tmp_path: Path, ic: Imagecache, where: str
) -> None:
    # Given a cache folder whose files are all orphans now
    cache, orphans = _orphaned_folder(tmp_path, ic)
    # And IMAGECACHE_LIBRARY_ROOTS naming a folder of photos inside it, or one holding it
    photos = _album(cache / "photos") if where == "inside" else tmp_path
    pictures = photos if where == "inside" else tmp_path / "library"
    before = _snapshot(pictures)
    rooted = Imagecache({**ic.env, "IMAGECACHE_LIBRARY_ROOTS": str(photos)})

    # When `up` runs, a collection under that root is added, and cleanup runs
    up = rooted.run("up", str(_album(tmp_path / "other")), "--no-serve")
    added = rooted.run("collections", "add", str(photos))
    cleaned = _ok(rooted, "cleanup", "--older-than-days", "0", "--json")

    # Then `up` says the root overlaps the cache folder, the collection is refused, and
    # cleanup leaves the folder alone, saying why: not even its own orphans are deleted
    assert up.returncode == 0 and f"library root {photos} overlaps" in up.stderr
    assert added.returncode == 1 and "overlaps the cache folder" in added.stderr
    (alone,) = cleaned["left_alone"]
    assert (alone["path"], alone["reason"]) == (str(cache), "overlaps")
    assert "IMAGECACHE_LIBRARY_ROOTS" in alone["hint"] and cleaned["folders"] == []
    assert _snapshot(pictures) == before and all(p.exists() for p in orphans)


def test_collections_registered_through_the_api_are_checked_against_cache_folders(
    tmp_path: Path, ic: Imagecache
) -> None:
    # Given a cache folder whose files are orphans now, and roots in the settings: one of
    # photos inside that cache folder, one holding it
    from web.app import create_app

    cache, orphans = _orphaned_folder(tmp_path, ic)
    photos = _album(cache / "photos")
    before = _snapshot(photos)
    env = {
        **ic.env, "IMAGECACHE_API_TOKEN": TOKEN, "IMAGECACHE_LIBRARY_ROOTS": str(tmp_path),
        "IMAGECACHE_ALLOWED_HOSTS": "testserver",  # the name TestClient gives itself
    }  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with bootstrap(Settings.from_env(env)) as app, TestClient(create_app(app, env)) as client:
        # When collections inside the cache folder, and under the root holding it, are
        # registered, and cleanup runs (not a dry run)
        inside = client.post("/api/v1/collections", json={"path": str(photos)}, headers=auth)
        lib = _album(tmp_path / "third")
        under = client.post("/api/v1/collections", json={"path": str(lib)}, headers=auth)
        cleaned = client.post(
            "/api/v1/cache/folders/cleanup",
            json={"dry_run": False, "older_than_days": 0},
            headers=auth,
        )  # fmt: skip

    # Then both are refused with what was wrong, and cleanup leaves the folder alone
    for refused in (inside, under):
        assert refused.status_code == 400, refused.text
        assert "overlaps the cache folder" in refused.json()["detail"]
    assert cleaned.status_code == 200
    assert [a["reason"] for a in cleaned.json()["left_alone"]] == ["overlaps"]
    assert _snapshot(photos) == before and all(p.exists() for p in orphans)


def test_forged_folder_statistics_make_nothing_deleted_anywhere(
    tmp_path: Path, ic: Imagecache
) -> None:
    # Given a cache folder whose files are all orphans now
    cache, orphans = _orphaned_folder(tmp_path, ic)
    marker = (cache / MARKER_NAME).read_text()
    # And folders of a user's files, with copies of those orphans at the same names (so
    # by name they look like ours): one without a marker, one with another installation's,
    # one with a copy of the real folder's marker
    victims = {}
    for name, marker_text in (
        ("plain", None),
        ("foreign-marker", Marker(folder_id_of(str(tmp_path / "foreign-marker")), "f" * 32)),
        ("copied-marker", marker),
    ):
        victim = tmp_path / name
        shutil.copytree(cache, victim)
        (victim / MARKER_NAME).unlink()
        _plant(victim, USER_FILES)
        if isinstance(marker_text, Marker):
            (victim / MARKER_NAME).write_text(marker_text.text())
        elif marker_text is not None:
            (victim / MARKER_NAME).write_text(marker_text)
        victims[victim] = _snapshot(victim)
    # And the folder statistics forged straight into the database: each victim as a folder
    # far over its capacity with renditions to evict, and the real folder's path swapped
    db = pymongo.MongoClient(ic.env["MONGODB_URI"])[ic.env["IMAGECACHE_DB"]]
    (real,) = list(db.folder_stats.find())
    for victim in list(victims)[:2]:
        fid = folder_id_of(str(victim))
        db.folder_stats.insert_one(
            {**real, "_id": fid, "path": str(victim), "capacity_bytes": 1, "bytes": 10**9,
             "files": 99, "priority": 99, "removed": False}
        )  # fmt: skip
        for n, p in enumerate(orphans):
            rel = str(p.relative_to(cache))
            db.renditions.insert_one(
                {"_id": f"forged-{fid}-{n}", "image_id": p.stem, "kind": rel.split("/")[0],
                 "folder_id": fid, "path": rel, "bytes": 1, "spec_hash": "x",
                 "collection_id": "c", "deleted": False, "generated_at": 1.0}
            )  # fmt: skip
    copied = list(victims)[2]
    db.folder_stats.update_one(
        {"_id": real["_id"]}, {"$set": {"path": str(copied), "capacity_bytes": 1}}
    )

    # When cleanup (not a dry run) and eviction run
    cleaned = _ok(ic, "cleanup", "--older-than-days", "0", "--json")
    evicted = _ok(ic, "evict", "--json")

    # Then nothing was deleted in any victim, nor in the real folder, and each report names
    # every forged folder as one the log does not know
    for victim, before in victims.items():
        assert _snapshot(victim) == before, victim
    assert all(p.exists() for p in orphans)
    for report in (cleaned, evicted):
        alone = {a["path"]: a["reason"] for a in report["left_alone"]}
        assert alone == dict.fromkeys(map(str, victims), "unknown"), report
        assert report["folders"] == []
    assert db.events.count_documents({"type": "RenditionDeleted"}) == 0


def test_the_marker_names_the_folder_and_this_installation(tmp_path: Path, ic: Imagecache) -> None:
    # Given two cache folders of one data folder
    first, second = tmp_path / "first", tmp_path / "second"
    ids = [_ok(ic, "folders", "add", str(p), "--json")["id"] for p in (first, second)]

    # Then each carries a marker naming it and one installation, the same for both
    markers = [json.loads((p / MARKER_NAME).read_text()) for p in (first, second)]
    assert [m["folder_id"] for m in markers] == ids
    assert markers[0]["installation_id"] == markers[1]["installation_id"]
    with bootstrap(Settings.from_env(ic.env)) as app:
        assert library.folder_id(str(first)) == ids[0]
        (event,) = app.db.events.find({"type": "InstallationIdentified"})
        assert event["data"]["installation_id"] == markers[0]["installation_id"]

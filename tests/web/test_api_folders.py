"""Cache folders over HTTP: statistics, add, change, remove (refused while it holds files)."""

from __future__ import annotations

from pathlib import Path

from tests.web.conftest import AUTH, Site, populate

FOLDERS = "/api/v1/cache/folders"


def test_add_change_and_remove_an_empty_folder(site: Site, tmp_path: Path) -> None:
    new = tmp_path / "cache2"
    new.mkdir()
    r = site.client.post(
        FOLDERS, json={"path": str(new), "capacity_bytes": 10**9, "priority": 5}, headers=AUTH
    )
    assert r.status_code == 201
    folder = r.json()
    assert (folder["capacity_bytes"], folder["priority"], folder["files"]) == (10**9, 5, 0)
    fid = folder["id"]
    changed = site.client.patch(f"{FOLDERS}/{fid}", json={"priority": 9}, headers=AUTH).json()
    assert (changed["capacity_bytes"], changed["priority"]) == (10**9, 9)
    stats = site.client.get(f"{FOLDERS}/statistics", headers=AUTH).json()["folders"]
    assert {f["id"] for f in stats} >= {fid}
    removed = site.client.delete(f"{FOLDERS}/{fid}", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["removed"] is True
    assert fid not in {
        f["id"] for f in site.client.get(f"{FOLDERS}/statistics", headers=AUTH).json()["folders"]
    }


def test_a_folder_holding_files_is_not_removed(site: Site) -> None:
    populate(site)
    folder = site.client.get(f"{FOLDERS}/statistics", headers=AUTH).json()["folders"][0]
    assert folder["files"] > 0
    r = site.client.delete(f"{FOLDERS}/{folder['id']}", headers=AUTH)
    assert r.status_code == 409
    assert "files" in r.json()["detail"]
    assert site.client.get(f"{FOLDERS}/{folder['id']}", headers=AUTH).json()["removed"] is False


def test_bad_folders_are_refused(site: Site, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for path in (
        "relative/dir",
        str(tmp_path / "missing"),
        str(tmp_path / "afile"),
        str(site.library),
        str(site.library / "album-0"),
        "/",
    ):
        r = site.client.post(FOLDERS, json={"path": path}, headers=AUTH)
        assert r.status_code == 400, path
    assert not (tmp_path / "missing").exists()  # the API never creates folders
    bad = site.client.post(
        FOLDERS, json={"path": str(tmp_path), "capacity_bytes": -1}, headers=AUTH
    )
    assert bad.status_code == 400


def test_unknown_folders_are_404(site: Site) -> None:
    unknown = f"{FOLDERS}/{'c' * 16}"
    assert site.client.get(unknown, headers=AUTH).status_code == 404
    assert site.client.patch(unknown, json={"priority": 1}, headers=AUTH).status_code == 404
    assert site.client.delete(unknown, headers=AUTH).status_code == 404


def test_cleanup_dry_run_then_execute_and_reconcile(site: Site) -> None:
    ids = populate(site)
    info = site.client.get("/api/v1/info", headers=AUTH).json()
    if not info["maintenance"]:
        return  # ops.maintenance is not there: the routes are not offered
    folder = site.client.get(f"{FOLDERS}/statistics", headers=AUTH).json()["folders"][0]
    # A file imagecache never wrote, with a layout-looking name, is never an orphan: kept
    planted = Path(folder["path"]) / "thumbnail" / "ff" / "ee" / ("ffee" + "0" * 28 + ".jpg")
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"not ours")
    # The renditions of a removed collection are what cleanup takes
    removed = site.client.delete(f"/api/v1/collections/{ids[0]}", headers=AUTH)
    assert removed.status_code == 200, removed.text
    # The dry run (the default) reports them and deletes nothing
    dry = site.client.post(f"{FOLDERS}/cleanup", json={"older_than_days": 0}, headers=AUTH)
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    files = sum(f["files"] for f in dry.json()["folders"])
    assert files > 0 and dry.json()["foreign"] == 1
    doomed = [Path(folder["path"]) / f["path"] for f in dry.json()["folders"][0]["sample"]]
    assert doomed and all(p.exists() for p in doomed)
    done = site.client.post(
        f"{FOLDERS}/cleanup", json={"dry_run": False, "older_than_days": 0}, headers=AUTH
    )
    assert done.status_code == 200 and sum(f["files"] for f in done.json()["folders"]) == files
    assert not any(p.exists() for p in doomed) and planted.exists()
    # Reconcile measures the disk (only what imagecache wrote): nothing drifted
    rec = site.client.post(f"{FOLDERS}/reconcile", headers=AUTH)
    assert rec.status_code == 200
    assert [f["drift"] for f in rec.json()["folders"]] == [False]

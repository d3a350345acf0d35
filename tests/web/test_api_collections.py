"""Collections over HTTP: register under a root, list, detail, scan, images with status."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.web.conftest import AUTH, Site, populate


def test_register_scans_and_lists_collections(site: Site) -> None:
    # When the library root is registered
    r = site.client.post("/api/v1/collections", json={"path": str(site.library)}, headers=AUTH)
    # Then every album is a collection, scanned
    assert r.status_code == 201
    found = {c["images"] for c in r.json()["collections"]}
    assert found == {4, 5}  # album-1 also holds broken.jpg
    listed = site.client.get("/api/v1/collections", headers=AUTH).json()
    assert listed["total"] == 2
    assert [c["name"] for c in listed["collections"]] == ["album-0", "album-1"]
    assert listed["collections"][1]["unsupported"] == 1  # notes.txt is listed, not dropped


def test_register_outside_the_roots_is_400_and_reveals_nothing(site: Site, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for path in (str(outside), "/etc", "/nonexistent/x", f"{site.library}/../elsewhere", "rel/x"):
        r = site.client.post("/api/v1/collections", json={"path": path}, headers=AUTH)
        assert r.status_code == 400, path
        assert r.headers["content-type"] == "application/problem+json"
        assert "does not exist" not in r.json()["detail"]  # no existence oracle


def test_register_validates_the_body(site: Site) -> None:
    for body in ({}, {"path": 3}, {"path": "x", "extra": 1}, [1]):
        r = site.client.post("/api/v1/collections", json=body, headers=AUTH)
        assert r.status_code == 400, body
    json_type = {**AUTH, "content-type": "application/json"}
    r = site.client.post("/api/v1/collections", content=b"{not json", headers=json_type)
    assert r.status_code == 400


def test_detail_scan_and_images_with_status(site: Site) -> None:
    ids = populate(site)
    cid = ids[0]
    detail = site.client.get(f"/api/v1/collections/{cid}", headers=AUTH).json()
    assert detail["renditions"] == {"cache": 4, "thumbnail": 4}
    assert detail["jobs"] == 1

    page = site.client.get(f"/api/v1/collections/{cid}/images?limit=3", headers=AUTH).json()
    assert page["total"] == 4 and len(page["images"]) == 3
    assert [i["path"] for i in page["images"]] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert all(i["renditions"]["thumbnail"]["status"] == "current" for i in page["images"])
    assert "folder" not in str(page)  # no cache paths in the listing

    # Given an image changed on disk, when the collection is scanned, then it is stale
    Image.new("RGB", (300, 200), (1, 2, 3)).save(site.library / "album-0" / "p0.jpg")
    scan = site.client.post(f"/api/v1/collections/{cid}/scan", headers=AUTH).json()
    assert scan["changed"] == 1
    first = site.client.get(f"/api/v1/collections/{cid}/images?limit=1", headers=AUTH).json()
    assert first["images"][0]["renditions"]["cache"]["status"] == "stale"


def test_unknown_and_invalid_collection_ids(site: Site) -> None:
    assert site.client.get("/api/v1/collections/" + "a" * 16, headers=AUTH).status_code == 404
    assert site.client.get("/api/v1/collections/XYZ", headers=AUTH).status_code == 400
    r = site.client.post("/api/v1/collections/" + "a" * 16 + "/scan", headers=AUTH)
    assert r.status_code == 404
    assert "collections list" in r.json()["detail"] or "list" in r.json()["detail"]

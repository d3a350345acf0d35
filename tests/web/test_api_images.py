"""Serving renditions: caching headers, 304, helpful 404s, and no way out of a cache folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.web.conftest import AUTH, Site

SECRET = b"top secret, outside every cache folder"


def _image(site: Site, kind: str = "thumbnail") -> tuple[str, Path]:
    """An image id and the real file of its rendition."""
    cid = site.client.get("/api/v1/collections", headers=AUTH).json()["collections"][0]["id"]
    image = site.client.get(f"/api/v1/collections/{cid}/images", headers=AUTH).json()["images"][0]
    doc = site.app.read.rendition(image["id"], kind)
    assert doc is not None
    folder = site.app.read.folder_path(doc["folder_id"])
    assert folder is not None
    return image["id"], Path(folder) / doc["path"]


def test_serves_the_file_with_caching_headers(generated: Site) -> None:
    image_id, file = _image(generated)
    r = generated.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=AUTH)
    assert r.status_code == 200
    assert r.content == file.read_bytes()
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["etag"].startswith('"') and r.headers["last-modified"].endswith("GMT")
    assert "max-age" in r.headers["cache-control"]
    big = generated.client.get(f"/api/v1/images/{image_id}/cache", headers=AUTH)
    assert big.status_code == 200 and len(big.content) > len(r.content)


def test_conditional_requests_answer_304(generated: Site) -> None:
    image_id, _ = _image(generated)
    url = f"/api/v1/images/{image_id}/thumbnail"
    first = generated.client.get(url, headers=AUTH)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for extra in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"x", W/{etag}'},
        {"If-Modified-Since": modified},
    ):
        r = generated.client.get(url, headers={**AUTH, **extra})
        assert r.status_code == 304, extra
        assert r.content == b"" and r.headers["etag"] == etag
    stale = generated.client.get(url, headers={**AUTH, "If-None-Match": '"other"'})
    assert stale.status_code == 200
    old = generated.client.get(
        url, headers={**AUTH, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200


def test_missing_rendition_is_404_saying_what_to_do(generated: Site) -> None:
    r = generated.client.get(f"/api/v1/images/{'0' * 32}/thumbnail", headers=AUTH)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert "/images" in body["detail"]


def test_file_gone_from_disk_is_404_without_a_path(site: Site) -> None:
    from tests.web.conftest import populate

    populate(site)
    image_id, file = _image(site)
    file.unlink()
    r = site.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=AUTH)
    assert r.status_code == 404
    detail = r.json()["detail"]
    # A plain regenerate skips it (it is still recorded as current): repair, or force
    assert "imagecache repair" in detail and '"force": true' in detail
    assert str(site.data) not in r.text and "/tmp" not in r.text and file.name not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/images/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/api/v1/images/%2e%2e/thumbnail",
        "/api/v1/images/..%5C..%5Cetc/cache",
        "/api/v1/images/0123abcd%2F..%2F..%2Fsecret/cache",
        "/api/v1/images/../../../../etc/passwd",
        "/api/v1/images/%252e%252e%252fetc/thumbnail",
    ],
)
def test_path_tricks_in_the_url_never_reach_a_file(generated: Site, path: str) -> None:
    r = generated.client.get(path, headers=AUTH)
    assert r.status_code in (400, 404)
    assert b"root:" not in r.content
    assert r.headers["content-type"] == "application/problem+json"


def test_a_symlinked_rendition_is_not_followed_outside(site: Site, tmp_path: Path) -> None:
    from tests.web.conftest import populate

    populate(site)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(SECRET)
    image_id, file = _image(site)
    # Given the rendition file is replaced by a symlink to a file outside the cache folder
    file.unlink()
    os.symlink(secret, file)
    r = site.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=AUTH)
    assert r.status_code == 404 and SECRET not in r.content
    # Given a directory on the way is a symlink to a directory outside
    image_id, file = _image(site, "cache")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / file.name).write_bytes(SECRET)
    shutil.rmtree(file.parent)
    os.symlink(outside, file.parent)
    r = site.client.get(f"/api/v1/images/{image_id}/cache", headers=AUTH)
    assert r.status_code == 404 and SECRET not in r.content


def test_a_tampered_read_model_path_cannot_escape(site: Site, tmp_path: Path) -> None:
    from tests.web.conftest import populate

    populate(site)
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    image_id, _ = _image(site)
    doc = site.app.read.rendition(image_id, "thumbnail")
    assert doc is not None
    depth = len(Path(site.app.read.folder_path(doc["folder_id"]) or "/").parts)
    for bad in (
        "../" * depth + str(tmp_path / "secret.jpg").lstrip("/"),
        str(tmp_path / "secret.jpg"),
        "thumbnail/../../secret.jpg",
        "",
    ):
        site.app.db["renditions"].update_one({"_id": doc["_id"]}, {"$set": {"path": bad}})
        r = site.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=AUTH)
        assert r.status_code == 404, bad
        assert SECRET not in r.content


def test_invalid_ids_are_400(generated: Site) -> None:
    for bad in ("XYZ", "abc", "0" * 65, "g" * 32):
        r = generated.client.get(f"/api/v1/images/{bad}/thumbnail", headers=AUTH)
        assert r.status_code == 400, bad

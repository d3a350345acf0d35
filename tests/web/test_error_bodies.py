"""Error bodies name no server path: only the path the request itself sent may come back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.web.conftest import AUTH, Site
from web.redact import HIDDEN, Redactor

COLLECTIONS = "/api/v1/collections"
FOLDERS = "/api/v1/cache/folders"


def _failing_requests(site: Site) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, url, body) of requests that fail, each about a path near server paths."""
    base, lib, data = site.library.parent, site.library, site.data
    (base / "elsewhere").mkdir(exist_ok=True)
    (base / "foreign").mkdir(exist_ok=True)
    (base / "foreign" / "notes.txt").write_text("someone's notes")
    link_file = lib / "alias.jpg"  # a link inside the root to a picture: not an archive
    if not link_file.is_symlink():
        link_file.symlink_to(lib / "album-1" / "p0.jpg")
    loop = lib / "loop"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    album = lib / "album-0"
    cache = next(f for f in site.app.read.folders() if not f["removed"])
    paths: list[tuple[str, str]] = [
        (COLLECTIONS, str(base / "elsewhere")),  # outside the roots
        (COLLECTIONS, str(lib / "nothing-here")),  # missing
        (COLLECTIONS, str(lib / "album-1" / "p0.jpg")),  # a file, not an archive
        (COLLECTIONS, str(link_file)),  # the same, through a link
        (COLLECTIONS, str(loop)),  # a link to itself
        (COLLECTIONS, str(lib) + "/../var"),  # the data folder, by a detour
        (COLLECTIONS, str(lib / ("n" * 300))),  # a name too long
        (COLLECTIONS, str(lib) + "/a\x00b"),  # a NUL
        (COLLECTIONS, "library/album-0"),  # relative
        (FOLDERS, str(album)),  # inside a library root
        (FOLDERS, str(album) + "/"),  # the same, as a folder
        (FOLDERS, str(lib)),  # a library root itself
        (FOLDERS, str(base)),  # above the root and the data folder
        (FOLDERS, str(data)),  # the data folder: above the cache folder
        (FOLDERS, str(Path(cache["path"]) / "thumbnail")),  # inside the cache folder
        (FOLDERS, str(base / "foreign")),  # holds files imagecache did not write
        (FOLDERS, str(base / "missing")),  # missing
        (FOLDERS, str(loop)),
        (FOLDERS, str(base) + "/" + "m" * 256),
    ]
    found: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", url, {"path": p}) for url, p in paths
    ]
    found += [
        ("DELETE", f"{FOLDERS}/{cache['id']}", None),  # still holds files
        ("GET", f"/api/v1/images/{'ab' * 16}/thumbnail", None),
        ("GET", f"{COLLECTIONS}/{'cd' * 8}", None),
        ("GET", "/static/nothing.js", None),
    ]
    return found


def _server_paths(site: Site) -> list[str]:
    base = site.library.parent
    return [str(base.parent), os.path.realpath(base.parent), str(site.data)]


def test_no_error_body_names_a_server_path(generated: Site) -> None:
    # Given a library with its renditions, links, and folders beside it
    for method, url, body in _failing_requests(generated):
        # When a request fails
        r = generated.client.request(method, url, json=body, headers=AUTH)
        assert 400 <= r.status_code < 500, (url, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        # Then its body names no server path but the one it sent (or its own URL)
        sent = (body or {}).get("path", "")
        text = " ".join(str(v) for v in problem.values())
        rest = text.replace(sent, "") if sent else text
        for server_path in _server_paths(generated):
            assert server_path not in rest, (url, sent, problem["detail"])
        # And it says what went wrong
        assert problem["detail"] and problem["title"]


def test_paths_are_named_by_what_they_are(generated: Site) -> None:
    # Given a folder inside a library root, and one inside the cache folder
    lib = generated.library
    cache = next(f for f in generated.app.read.folders() if not f["removed"])

    r = generated.client.post(FOLDERS, json={"path": str(lib / "album-0")}, headers=AUTH)
    # Then the root is named by its name, the path sent stays as sent
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert str(lib / "album-0") in detail and f'library root "{lib.name}"' in detail

    inner = str(Path(cache["path"]) / "thumbnail")
    detail = generated.client.post(FOLDERS, json={"path": inner}, headers=AUTH).json()["detail"]
    assert inner in detail and f"cache folder {cache['id']}" in detail

    # And a link's target is not shown: the message says what was sent
    detail = generated.client.post(
        COLLECTIONS, json={"path": str(lib / "alias.jpg")}, headers=AUTH
    ).json()["detail"]
    assert detail.startswith(f"{lib / 'alias.jpg'} is a file but not a ZIP/CBZ archive")


def test_the_redactor_names_collections_and_hides_unknown_paths(generated: Site) -> None:
    # Given a registered collection
    doc = next(iter(generated.app.read.collections()))
    redact = Redactor(generated.app).path_free

    # Then its path becomes its name and id, an unknown path is hidden, and the path
    # the request sent, an API route and other words stay
    text = redact(
        f"cache folder /sent/x overlaps the collection {doc['path']}; see /etc/passwd."
        " or GET /api/v1/collections/{collection_id}/images and/or retry",
        ["/sent/x"],
    )
    assert text == (
        f'cache folder /sent/x overlaps the collection "{doc["name"]}" ({doc["_id"]});'
        f" see {HIDDEN}. or GET /api/v1/collections/{{collection_id}}/images and/or retry"
    )
    # And a path below a known one keeps only its tail
    below = redact(f"cannot read {generated.data}/cache/x/y: denied", [])
    assert below.startswith("cannot read ") and str(generated.data) not in below
    assert "(at " in below and below.endswith(": denied")

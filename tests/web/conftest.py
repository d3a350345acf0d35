"""Fixtures for the web tests: a wired App on the real MongoDB-wire server, a small library.

Actors run in process (StubBroker); `App.start_worker()` makes them process.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ops import library
from ops.bootstrap import App, bootstrap
from ops.settings import Settings
from web.app import create_app

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_library(root: Path, albums: int = 2, per_album: int = 4) -> Path:
    """Albums of small JPEGs, one corrupt file, and a text file."""
    for a in range(albums):
        folder = root / f"album-{a}"
        folder.mkdir(parents=True)
        for i in range(per_album):
            colour = ((60 * i) % 256, 120, (200 - 40 * a) % 256)
            Image.new("RGB", (640 + 16 * i, 480), colour).save(folder / f"p{i}.jpg", quality=80)
    (root / "album-1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "album-1" / "notes.txt").write_text("not an image")
    return root


@dataclass
class Site:
    """A wired App, its web app, a test client and the paths around it."""

    app: App
    web: Starlette
    client: TestClient
    env: dict[str, str]
    library: Path
    data: Path

    def wait(self, job_ids: list[str], timeout: float = 60) -> list[dict[str, Any]]:
        return library.wait_for(self.app, job_ids, timeout=timeout)


def site_env(base: Path, mongodb_uri: str, **extra: str) -> dict[str, str]:
    return {
        "MONGODB_URI": mongodb_uri,
        "IMAGECACHE_DB": f"w_{uuid.uuid4().hex[:12]}",
        "IMAGECACHE_DATA": str(base / "var"),
        "IMAGECACHE_LIBRARY_ROOTS": str(base / "library"),
        "IMAGECACHE_API_TOKEN": TOKEN,
        "IMAGECACHE_WORKER_THREADS": "2",
        # Starlette's TestClient calls the server "testserver"; uvicorn's tests use 127.0.0.1.
        "IMAGECACHE_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        **extra,
    }


def open_site(base: Path, mongodb_uri: str, **extra: str) -> Iterator[Site]:
    lib = make_library(base / "library")
    env = site_env(base, mongodb_uri, **extra)
    try:
        with bootstrap(Settings.from_env(env)) as app:
            library.ensure_default_folder(app)
            web = create_app(app, env)
            with TestClient(web, raise_server_exceptions=False) as client:
                yield Site(app, web, client, env, lib, base / "var")
    finally:
        with pymongo.MongoClient(mongodb_uri) as c:
            c.drop_database(env["IMAGECACHE_DB"])


@pytest.fixture
def site(tmp_path: Path, mongodb_uri: str) -> Iterator[Site]:
    """A fresh App with the default cache folder and an unregistered library."""
    yield from open_site(tmp_path, mongodb_uri)


def populate(site: Site) -> list[str]:
    """Register and scan the library, generate everything; return the collection ids."""
    r = site.client.post("/api/v1/collections", json={"path": str(site.library)}, headers=AUTH)
    assert r.status_code == 201, r.text
    ids = [c["collection_id"] for c in r.json()["collections"]]
    site.app.start_worker(2)
    r = site.client.post("/api/v1/regenerate", json={"all": True}, headers=AUTH)
    assert r.status_code == 202, r.text
    site.wait([j["job_id"] for j in r.json()["jobs"]])
    return ids


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str) -> Iterator[Site]:
    """One App per test module with the library registered and everything generated."""
    for s in open_site(tmp_path_factory.mktemp("site"), mongodb_uri):
        populate(s)
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    server: Any
    thread: threading.Thread


def serve(web: Starlette) -> Iterator[LiveServer]:
    """Run the web app with uvicorn in a thread on a free loopback port until the test ends."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

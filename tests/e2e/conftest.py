"""Helpers to run the real `imagecache` command against real services."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def make_library(root: Path, folders: int = 2, per_folder: int = 5) -> dict[str, int]:
    """A small library: folders of JPEG/PNG, a CBZ, one corrupt file, one text file."""
    import io
    import zipfile

    valid = 0
    for f in range(folders):
        folder = root / f"album-{f}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            img = Image.new("RGB", (1600 + 40 * i, 1000), (40 * i % 256, 90, 200 - 10 * f))
            img.save(folder / f"p{i}.jpg", quality=85)
            valid += 1
    Image.new("RGBA", (500, 700), (0, 200, 0, 128)).save(root / "album-0" / "alpha.png")
    valid += 1
    (root / "album-1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "album-1" / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(root / "comic.cbz", "w") as zf:
        for i in range(3):
            buf = io.BytesIO()
            Image.new("RGB", (900, 1400), (i * 60, 20, 20)).save(buf, "JPEG")
            zf.writestr(f"page-{i}.jpg", buf.getvalue())
            valid += 1
    return {"valid": valid, "corrupt": 1, "unsupported": 1}


class Imagecache:
    """Runs `python -m ops.cli` with one test's environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *args],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGECACHE_", "MONGODB_", "RABBITMQ_"))
    }
    env["IMAGECACHE_DATA"] = str(tmp_path / "var")
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def distributed(tmp_path: Path, mongodb_uri: str, rabbitmq_url: str) -> Iterator[Imagecache]:
    """imagecache on the real MongoDB-wire server and RabbitMQ, in a fresh db and queue."""
    env = _base_env(tmp_path)
    name = uuid.uuid4().hex[:10]
    env.update(
        MONGODB_URI=mongodb_uri,
        RABBITMQ_URL=rabbitmq_url,
        IMAGECACHE_DB=f"e2e_{name}",
        IMAGECACHE_QUEUE=f"imagecache-{name}",
    )
    yield Imagecache(env)
    import pymongo

    pymongo.MongoClient(mongodb_uri).drop_database(f"e2e_{name}")


@pytest.fixture
def embedded(tmp_path: Path) -> Imagecache:
    """imagecache in embedded mode: its own SecantusDB, actors in process."""
    return Imagecache(_base_env(tmp_path))


def outcomes_by_image(env: dict[str, str]) -> dict[tuple[str, str], list[dict[str, object]]]:
    """Every terminal outcome in the log of `env`'s database, by (image path, kind)."""
    from ops.bootstrap import bootstrap
    from ops.settings import Settings

    found: dict[tuple[str, str], list[dict[str, object]]] = {}
    with bootstrap(Settings.from_env(env)) as app:
        app.projector.catch_up()
        paths = {}
        for c in app.read.collections():
            for img in app.read.images_of(c["_id"]):
                paths[img["_id"]] = f"{c['path']}/{img['path']}"
        folders = {f["_id"]: f["path"] for f in app.read.folder_docs()}
        types = ["RenditionGenerated", "RenditionSkipped", "RenditionFailed"]
        for record in app.db.events.find({"type": {"$in": types}}):
            data = dict(record["data"])
            data["type"] = record["type"]
            if record["type"] == "RenditionGenerated":
                data["file"] = f"{folders[data['folder_id']]}/{data['path']}"
            found.setdefault((paths[data["image_id"]], data["kind"]), []).append(data)
    return found

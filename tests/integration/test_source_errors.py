"""The generator on a real MongoDB-wire server: whatever a source (or the renderer) raises, a
batch records one outcome per image and rendition and the job ends."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from actors.sources import SourceRef
from domain.errors import TransientIOError
from domain.specs import RenditionSpec
from ops import library
from ops.bootstrap import App, bootstrap
from ops.settings import Settings
from tests.archives import hostile_archive, picture
from tests.integration.test_maintenance import _env

pytestmark = pytest.mark.integration

LIMIT = 4 << 20


@pytest.fixture
def app(tmp_path: Path, mongodb_uri: str) -> Iterator[App]:
    """Wired on a fresh database, with no worker: the test runs the generator itself."""
    # Batches of 16: every member of the hostile archive travels in one message
    env = _env(
        tmp_path, mongodb_uri, IMAGECACHE_MAX_SOURCE_BYTES=str(LIMIT), IMAGECACHE_BATCH_SIZE="16"
    )
    with bootstrap(Settings.from_env(env)) as wired:
        yield wired
    pymongo.MongoClient(mongodb_uri).drop_database(env["IMAGECACHE_DB"])


def _planned(app: App, lib: Path) -> tuple[str, list[dict[str, Any]]]:
    """Register and scan `lib`, plan one job; return it and its messages, unsent."""
    sent: list[dict[str, Any]] = []
    app.actors.publish = sent.extend  # type: ignore[method-assign]
    library.ensure_default_folder(app)
    library.add_root(app, lib)
    ids = library.add_collections(app, lib)
    library.scan_collections(app, ids)
    (job,) = library.regenerate(app, ids).jobs
    return job.job_id, sent


def _outcomes(app: App, job_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(image path, kind) -> its one outcome of the job; fails on a second one."""
    paths = {
        d["_id"]: d["path"] for c in app.read.collections() for d in app.read.images_of(c["_id"])
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for record in app.db.events.find({"stream": f"job:{job_id}"}):
        if record["type"] in ("RenditionGenerated", "RenditionSkipped", "RenditionFailed"):
            key = (paths[record["data"]["image_id"]], record["data"]["kind"])
            assert key not in found, f"two outcomes for {key}"
            found[key] = {"type": record["type"], **record["data"]}
    return found


def test_a_hostile_archive_job_ends_with_one_outcome_each(app: App, tmp_path: Path) -> None:
    # Given a job over a CBZ of good pages mixed with every kind of bad member, in one batch
    lib = tmp_path / "lib"
    lib.mkdir()
    expected = hostile_archive(lib / "hostile.cbz", bomb_bytes=LIMIT)
    job_id, (message,) = _planned(app, lib)

    # When the batch runs once, as on its first delivery (a retry would follow an escape)
    app.generator.run(message, final_attempt=False)
    app.projector.catch_up()

    # Then the job has finished, with exactly one outcome per image and rendition: the good
    # pages made, each bad one failed with its class and a one-line message
    view = app.read.job(job_id)
    assert view is not None and view["status"] == "finished", view
    found = _outcomes(app, job_id)
    assert len(found) == 2 * len(expected)
    for (name, _kind), out in found.items():
        if expected[name]:
            assert out["type"] == "RenditionFailed", (name, out)
            assert out["error_class"] == expected[name], (name, out)
            assert out["message"] and "\n" not in out["message"]
        else:
            assert out["type"] == "RenditionGenerated", (name, out)


def _renderer_raising(exc: BaseException, on: str, real: Any) -> Any:
    def render(ref: SourceRef, specs: list[RenditionSpec], pixels: int, size: int) -> Any:
        if ref.member == on:
            raise exc
        return real(ref, specs, pixels, size)

    return render


def _folder(lib: Path, names: list[str]) -> None:
    album = lib / "album"
    album.mkdir(parents=True)
    for name in names:
        (album / name).write_bytes(picture())


def test_a_renderer_raising_the_unexpected_fails_that_image_and_logs_it_once(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job of three images whose renderer breaks its promise on the second one
    _folder(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg"])
    job_id, (message,) = _planned(app, tmp_path / "lib")
    app.generator.renderer = _renderer_raising(KeyError("tile"), "b.jpg", app.generator.renderer)

    # When the batch runs
    with caplog.at_level(logging.WARNING):
        counts = app.generator.run(message, final_attempt=False)
    app.projector.catch_up()

    # Then that image failed (both renditions), the others were made, and the job ended
    assert counts == {"generated": 4, "skipped": 0, "failed": 2}
    view = app.read.job(job_id)
    assert view is not None and view["status"] == "finished"
    failed = [o for o in _outcomes(app, job_id).values() if o["type"] == "RenditionFailed"]
    assert {o["error_class"] for o in failed} == {"corrupt"}
    assert all(o["message"].startswith("unexpected KeyError while rendering") for o in failed)
    # And the log shows it once, with its traceback
    traced = [r for r in caplog.records if r.exc_info]
    assert len(traced) == 1 and "b.jpg" in traced[0].getMessage()


def test_a_transient_error_is_retried_and_fails_as_io_on_the_last_attempt(
    app: App, tmp_path: Path
) -> None:
    # Given a job whose second image cannot be read for now (EIO)
    _folder(tmp_path / "lib", ["a.jpg", "b.jpg"])
    job_id, (message,) = _planned(app, tmp_path / "lib")
    app.generator.renderer = _renderer_raising(
        TransientIOError("read failed (EIO: Input/output error) b.jpg"), "b.jpg",
        app.generator.renderer,
    )  # fmt: skip

    # When the batch runs before its last attempt, Then it asks for a retry
    with pytest.raises(TransientIOError):
        app.generator.run(message, final_attempt=False)
    # And on its last attempt, the image fails as io and the job ends
    counts = app.generator.run(message, final_attempt=True)
    app.projector.catch_up()
    assert counts == {"generated": 0, "skipped": 0, "failed": 2}
    found = _outcomes(app, job_id)
    assert {o["error_class"] for o in found.values() if o["type"] == "RenditionFailed"} == {"io"}
    view = app.read.job(job_id)
    assert view is not None and view["status"] == "finished"


def test_a_stopping_generator_leaves_the_rest_of_its_batch_to_the_next_run(
    app: App, tmp_path: Path
) -> None:
    # Given a batch of four images, and a process told to stop while the first one renders
    _folder(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    job_id, (message,) = _planned(app, tmp_path / "lib")
    real = app.generator.renderer

    def render_then_stop(*args: Any) -> Any:
        out = real(*args)
        app.generator.stopping.set()
        return out

    app.generator.renderer = render_then_stop

    # When the batch runs, Then it stops after that image: the rest has no outcome yet
    assert app.generator.run(message)["generated"] == 2
    app.projector.catch_up()
    view = app.read.job(job_id)
    assert view is not None and (view["status"], view["remaining"]) == ("running", 6)

    # And the next run (not stopping) makes exactly what was left
    app.generator.renderer = real
    app.generator.stopping.clear()
    assert app.generator.run(message)["generated"] == 6
    app.projector.catch_up()
    assert len(_outcomes(app, job_id)) == 8


def test_an_archive_member_gone_from_a_replaced_archive_fails_as_source_missing(
    app: App, tmp_path: Path
) -> None:
    # Given a planned job over an archive that is then replaced by one without its page
    lib = tmp_path / "lib"
    lib.mkdir()
    when = (2024, 5, 1, 12, 0, 0)
    with zipfile.ZipFile(lib / "book.cbz", "w") as archive:
        archive.writestr(zipfile.ZipInfo("p1.jpg", when), picture())
        archive.writestr(zipfile.ZipInfo("p2.jpg", when), picture())
    job_id, messages = _planned(app, lib)
    with zipfile.ZipFile(lib / "book.cbz", "w") as archive:
        archive.writestr(zipfile.ZipInfo("p1.jpg", when), picture())

    # When it runs, Then the page that is gone failed and says to scan again; the other made
    for message in messages:
        app.generator.run(message)
    found = _outcomes(app, job_id)
    assert found[("p1.jpg", "cache")]["type"] == "RenditionGenerated"
    gone = found[("p2.jpg", "cache")]
    assert gone["error_class"] == "source_missing" and "scan the collection" in gone["message"]

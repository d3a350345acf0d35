"""The page in headless Chromium (Debian's package, driven by Playwright; nothing downloaded).

A real App and uvicorn on a loopback port: sign in, see the cache folders, watch a
job run, pause and resume it, open a thumbnail. Every test runs under the page's CSP and
fails on a violation (or any page error). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.web.conftest import AUTH, TOKEN, LiveServer, Site, open_site, serve
from web.sessions import COOKIE

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: ops/test installs it (ensure_chromium)"
        if os.environ.get("IMAGECACHE_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(tmp_path: Path, mongodb_uri: str) -> Iterator[tuple[Site, LiveServer]]:
    # One thread and one image per message, so a job runs long enough to watch.
    for site in open_site(
        tmp_path, mongodb_uri, IMAGECACHE_WORKER_THREADS="1", IMAGECACHE_BATCH_SIZE="1"
    ):
        site.app.start_projector()
        yield from ((site, server) for server in serve(site.web))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    # Chromium reports what the Content-Security-Policy blocked on the console
    p.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield p
    context.close()
    assert errors == [], errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/")
    dialog = page.locator("#sign-in-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("input[name=token]").fill(TOKEN)
    page.locator("#sign-in-submit").click()
    dialog.wait_for(state="hidden")


def big_album(site: Site, images: int = 48) -> Path:
    """An album of larger pictures (gradients: real decode and resize work)."""
    album = site.library / "big"
    album.mkdir()
    base = Image.linear_gradient("L").resize((2400, 1600))
    for i in range(images):
        Image.merge("RGB", (base, base.rotate(90 + i, expand=False), base.transpose(0))).save(
            album / f"big-{i:03}.jpg", quality=90
        )
    return album


def test_folders_and_a_job_paused_and_resumed(live: tuple[Site, LiveServer], page: Any) -> None:
    site, server = live
    big_album(site)
    r = site.client.post("/api/v1/collections", json={"path": str(site.library)}, headers=AUTH)
    big = next(c["collection_id"] for c in r.json()["collections"] if c["images"] == 48)
    bulk = site.client.post("/api/v1/regenerate", json={"collections": [big]}, headers=AUTH)
    job_id = bulk.json()["jobs"][0]["job_id"]

    # Given a signed-in page, the cache folders tab shows the default folder
    sign_in(page, server.url)
    folder = page.locator(".folder").first
    folder.wait_for()
    assert "Files" in folder.inner_text()
    shot(page, "folders")

    # The job is queued (no worker yet); pause it from the page
    page.locator("#tab-jobs").click()
    row = page.locator(f"tr[data-job='{job_id}']")
    row.locator(".badge", has_text="queued").wait_for()
    row.locator("button[data-action=pause]").click()
    row.locator(".badge", has_text="paused").wait_for()

    # When a worker starts and the job is resumed, the page shows it running, then finished
    site.app.start_worker(1)
    row.locator("button[data-action=resume]").click()
    row.locator(".badge", has_text="running").wait_for(timeout=20_000)
    progress = row.locator(".pct").inner_text()
    shot(page, "job-running")
    row.locator(".badge", has_text="finished").wait_for(timeout=90_000)
    assert row.locator(".pct").inner_text() == "100.0 %"
    assert progress != ""
    row.locator("td").nth(1).click()
    page.locator("#job-detail").get_by_text("Failures (0)").wait_for()
    shot(page, "job-finished")

    # And the folder's statistics grew
    page.locator("#tab-folders").click()
    page.locator(".folder dd", has_text="96").first.wait_for(timeout=10_000)


def test_gallery_opens_a_thumbnail(live: tuple[Site, LiveServer], page: Any) -> None:
    site, server = live
    from tests.web.conftest import populate

    populate(site)
    sign_in(page, server.url)
    page.locator("#tab-collections").click()
    thumb = page.locator(".gallery figure img").first
    thumb.wait_for()
    loaded = "i => i.complete && i.naturalWidth > 0"
    page.wait_for_function(f"() => [...document.querySelectorAll('.gallery img')].every({loaded})")
    assert thumb.get_attribute("loading") == "lazy"
    shot(page, "gallery")

    # Clicking a thumbnail opens the cache image
    page.locator(".gallery figure").first.click()
    viewer = page.locator("#viewer-img")
    viewer.wait_for()
    page.wait_for_function("() => document.getElementById('viewer-img').naturalWidth > 0")
    assert "/cache" in (viewer.get_attribute("src") or "")
    shot(page, "viewer")


def test_failures_by_class_and_cleanup_dry_run(live: tuple[Site, LiveServer], page: Any) -> None:
    site, server = live
    from tests.web.conftest import populate

    populate(site)
    sign_in(page, server.url)
    # The job of album-1 lists its corrupt image by class, with the image's name
    page.locator("#tab-jobs").click()
    failed_row = page.locator("tr.job", has=page.locator("td.error", has_text="2"))
    failed_row.locator("td").nth(1).click()
    detail = page.locator("#job-detail")
    detail.get_by_role("button", name="corrupt (2)").wait_for()
    assert "broken.jpg" in detail.inner_text()
    shot(page, "job-failures")
    # The folders tab offers cleanup (a dry run first) when maintenance is available
    page.locator("#tab-folders").click()
    if page.locator("#maintenance-actions").is_visible():
        page.locator("#cleanup-days").fill("0")
        page.locator("#cleanup-dry-run").click()
        page.locator("#cleanup-result h2", has_text="dry run").wait_for()
        shot(page, "cleanup-dry-run")


def test_a_collection_is_removed_from_the_page(live: tuple[Site, LiveServer], page: Any) -> None:
    site, server = live
    from tests.web.conftest import populate

    ids = populate(site)
    sign_in(page, server.url)
    page.locator("#tab-collections").click()
    first = page.locator("#collections li[data-collection]").first
    first.wait_for()
    gone = first.get_attribute("data-collection")
    first.click()
    # Removing asks first, then the list no longer shows it, and the API agrees
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#collection-head button[data-action=remove]").click()
    page.wait_for_function(
        f"() => !document.querySelector('#collections li[data-collection=\"{gone}\"]')"
    )
    listed = site.client.get("/api/v1/collections", headers=AUTH)
    assert gone in ids and gone not in [c["id"] for c in listed.json()["collections"]]


STORED = """() => ({
    local: Object.entries(localStorage).map(([k, v]) => k + "=" + v).join(";"),
    session: Object.entries(sessionStorage).map(([k, v]) => k + "=" + v).join(";"),
    cookie: document.cookie,
})"""


def test_enter_signs_in_and_the_page_keeps_no_token(
    live: tuple[Site, LiveServer], page: Any
) -> None:
    _, server = live
    # Given the sign-in dialog: When the token is typed and Enter pressed
    page.goto(server.url + "/")
    dialog = page.locator("#sign-in-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("input[name=token]").fill(TOKEN)
    dialog.locator("input[name=token]").press("Enter")

    # Then the page is signed in
    dialog.wait_for(state="hidden")
    page.locator("#sign-out").wait_for(state="visible")
    page.locator(".folder").first.wait_for()

    # And neither its storage nor its script-readable cookies hold the token or the
    # session id (the session cookie is HttpOnly)
    stored = page.evaluate(STORED)
    session_cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    for where, text in stored.items():
        assert TOKEN not in text, where
        assert session_cookie["value"] not in text, where
    assert stored["cookie"] == ""
    assert page.locator("input[name=token]").input_value() == ""


def test_the_session_survives_a_reload_and_ends_at_sign_out(
    live: tuple[Site, LiveServer], page: Any
) -> None:
    site, server = live
    populate_ids = site.client.post(
        "/api/v1/collections", json={"path": str(site.library)}, headers=AUTH
    ).json()
    assert populate_ids["collections"]
    # Given a signed-in page, reloaded: it is still signed in without the token
    sign_in(page, server.url)
    page.reload()
    page.locator("#sign-out").wait_for(state="visible")
    assert not page.locator("#sign-in-dialog").is_visible()

    # When it makes a change after the reload (its CSRF value came from the session)
    page.locator("#tab-collections").click()
    page.locator("#collection-head button", has_text="Scan").click()
    page.locator("#notice", has_text="scan finished").wait_for()

    # Then signing out ends the session: the old cookie, replayed, reads nothing
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)["value"]
    page.locator("#sign-out").click()
    page.locator("#sign-in").wait_for(state="visible")
    replay = page.context.request.get(
        server.url + "/api/v1/collections", headers={"Cookie": f"{COOKIE}={cookie}"}
    )
    assert replay.status == 401

"""The Host check (DNS rebinding) and the security headers on the page and the API."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from starlette.testclient import TestClient

from domain.errors import InvalidInput
from tests.web.conftest import AUTH, Site
from web.app import create_app
from web.settings import ANY_IP, WebSettings, default_hosts

PAGE_URLS = ["/", "/static/app.js", "/static/style.css"]
API_URLS = ["/api/v1/collections", "/api/v1/health", "/api/v1/openapi.json", "/metrics"]


def _client(site: Site, base: str, **env: str) -> TestClient:
    settings = {k: v for k, v in site.env.items() if k != "IMAGECACHE_ALLOWED_HOSTS"}
    return TestClient(create_app(site.app, {**settings, **env}), base_url=base)


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:8642", "http://localhost", "http://[::1]:8642", "http://LOCALHOST."]
)
def test_the_default_allows_the_listening_host_and_loopback(generated: Site, base: str) -> None:
    # Given the default setting (the server listens on 127.0.0.1): When the page is reached
    # by a loopback name, Then it answers
    client = _client(generated, base)
    assert client.get("/api/v1/collections", headers=AUTH).status_code == 200
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "base", ["http://attacker.example:8642", "http://testserver", "http://127.0.0.1.evil.example"]
)
def test_another_host_name_is_refused_before_anything_is_read(generated: Site, base: str) -> None:
    # Given the default setting: When a page reaches us by a name of its own (DNS rebinding)
    client = _client(generated, base)
    for r in (client.get("/api/v1/collections", headers=AUTH), client.get("/")):
        # Then it gets a 400 problem that says what to do, and no data
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "unknown host"
        assert "IMAGECACHE_ALLOWED_HOSTS" in r.json()["detail"]
    # Not even the open parts answer, nor does a change go through
    assert client.get("/api/v1/health").status_code == 400
    r = client.post("/api/v1/cache/regenerate", json={"all": True}, headers=AUTH)
    assert r.status_code == 400


def test_a_request_without_host_is_refused(generated: Site) -> None:
    client = _client(generated, "http://127.0.0.1")
    r = client.get("/api/v1/health", headers={"host": ""})
    assert r.status_code == 400 and "no Host header" in r.json()["detail"]


def test_the_allowed_hosts_setting(generated: Site) -> None:
    # Given IMAGECACHE_ALLOWED_HOSTS naming a host and a domain's subdomains
    setting = {"IMAGECACHE_ALLOWED_HOSTS": "photos.lan, *.example.org"}

    # Then those names are allowed, and the setting replaces the default
    for base, status in [
        ("http://photos.lan:8642", 200),
        ("http://a.example.org", 200),
        ("http://example.org", 400),
        ("http://notexample.org", 400),
        ("http://127.0.0.1", 400),
    ]:
        got = _client(generated, base, **setting).get("/api/v1/health").status_code
        assert got == status, base
    # And `*` allows any host (behind a proxy that checks it)
    any_host = _client(generated, "http://whatever.example", IMAGECACHE_ALLOWED_HOSTS="*")
    assert any_host.get("/api/v1/health").status_code == 200


def test_listening_on_every_address_allows_addresses_and_own_names() -> None:
    # A page that rebinds DNS always reaches us by its own name, never by an IP address
    hosts = default_hosts("0.0.0.0")
    web = WebSettings("t" * 20, hosts=hosts)
    assert ANY_IP in hosts and "localhost" in hosts
    assert web.host_allowed("192.168.1.20:8642") and web.host_allowed("[fe80::1]")
    assert not web.host_allowed("attacker.example")
    assert default_hosts("photos.lan") == ("photos.lan", "localhost", "127.0.0.1", "[::1]")


@pytest.mark.parametrize("bad", ["a/b", "x*y.org", ","])
def test_a_malformed_allowed_hosts_setting_is_refused(bad: str) -> None:
    if bad == ",":
        # Only separators: the same as unset
        assert WebSettings.from_env({"IMAGECACHE_ALLOWED_HOSTS": bad}, "t").hosts is not None
        return
    with pytest.raises(InvalidInput, match="IMAGECACHE_ALLOWED_HOSTS"):
        WebSettings.from_env({"IMAGECACHE_ALLOWED_HOSTS": bad}, "t")


def _assert_guarded(headers: Mapping[str, str], page: bool) -> None:
    h = {k.lower(): v for k, v in headers.items()}
    csp = h["content-security-policy"]
    for rule in ("frame-ancestors 'none'", "base-uri 'none'"):
        assert rule in csp
    assert csp.startswith("default-src 'self'" if page else "default-src 'none'")
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"


def test_security_headers_on_the_page_and_the_api(generated: Site) -> None:
    client = generated.client
    for url in PAGE_URLS:
        r = client.get(url)
        assert r.status_code == 200, url
        _assert_guarded(r.headers, page=True)
    for url in API_URLS:
        r = client.get(url, headers=AUTH)
        assert r.status_code == 200, url
        _assert_guarded(r.headers, page=False)
    # Errors too: unauthorised, not found, invalid, an unknown host
    for r in (
        client.get("/api/v1/collections"),
        client.get("/api/v1/nothing-here", headers=AUTH),
        client.get("/api/v1/collections?limit=--5", headers=AUTH),
        _client(generated, "http://evil.example").get("/api/v1/health"),
    ):
        assert r.status_code in (400, 401, 404)
        _assert_guarded(r.headers, page=False)


def test_the_page_has_no_inline_script_or_style(generated: Site) -> None:
    # The CSP allows neither, so the page must not need them
    html = generated.client.get("/").text
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert " onclick=" not in html.lower()

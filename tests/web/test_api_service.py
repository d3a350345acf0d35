"""The event log, service info, the OpenAPI document, metrics and error answers."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import AUTH, Site
from web.app import endpoints


def test_events_are_paged_by_seq(generated: Site) -> None:
    first = generated.client.get("/api/v1/events?limit=5", headers=AUTH).json()
    assert [e["seq"] for e in first["events"]] == [1, 2, 3, 4, 5]
    nxt = generated.client.get(
        f"/api/v1/events?after={first['next_after']}&limit=5", headers=AUTH
    ).json()
    assert nxt["events"][0]["seq"] == 6
    assert first["head"] >= nxt["next_after"]
    end = generated.client.get(f"/api/v1/events?after={first['head']}", headers=AUTH).json()
    assert end["events"] == [] and end["next_after"] == first["head"]


def test_openapi_describes_every_route(generated: Site) -> None:
    doc = generated.client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for e in endpoints():
        op = doc["paths"][e.path][e.method.lower()]
        assert op["responses"] and op["summary"]
    assert "/metrics" in doc["paths"] and "/" in doc["paths"]
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_metrics_read_the_read_models(generated: Site) -> None:
    text = generated.client.get("/metrics", headers=AUTH).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    generated_thumbs = samples[
        ("imagecache_renditions_total", (("kind", "thumbnail"), ("outcome", "generated")))
    ]
    assert generated_thumbs == 8
    assert samples[("imagecache_renditions_failed_total", (("class", "corrupt"),))] == 2
    assert samples[("imagecache_jobs", (("status", "finished"),))] == 2
    assert samples[("imagecache_projector_lag_events", ())] >= 0
    assert any(name == "imagecache_folder_files" and v == 16 for (name, _), v in samples.items())
    assert ("imagecache_queue_messages", (("queue", "imagecache"), ("state", "ready"))) in samples
    assert ("imagecache_generation_seconds_count", (("kind", "cache"),)) in samples
    assert samples[("imagecache_generation_seconds_count", (("kind", "cache"),))] == 8


def test_unknown_routes_and_methods_are_problems(generated: Site) -> None:
    r = generated.client.get("/api/v1/nothing-here", headers=AUTH)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = generated.client.put("/api/v1/collections", headers=AUTH)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"


def test_info_says_what_is_available(generated: Site) -> None:
    info = generated.client.get("/api/v1/info", headers=AUTH).json()
    assert info["kinds"] == ["cache", "thumbnail"] and info["open_reads"] is False


def test_a_broker_that_refuses_a_publish_is_503_not_500() -> None:
    import dramatiq.errors

    from web.problems import to_response

    # When RabbitMQ drops the connection while the API publishes a regenerate
    answer = to_response(dramatiq.errors.ConnectionClosed(OSError("gone")), "/api/v1/x")

    # Then the caller learns a service is away and that nothing planned is lost
    assert answer.status_code == 503
    body = json.loads(bytes(answer.body))
    assert body["title"] == "service unavailable" and "recovery sends it" in body["detail"]

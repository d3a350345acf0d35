"""Bulk operations and jobs over HTTP: plan, list, filter, detail, control, history, failures."""

from __future__ import annotations

from tests.web.conftest import AUTH, Site

JOBS = "/api/v1/cache/processing-jobs"


def _register(site: Site) -> list[str]:
    r = site.client.post("/api/v1/collections", json={"path": str(site.library)}, headers=AUTH)
    return [c["collection_id"] for c in r.json()["collections"]]


def test_regenerate_plans_jobs_and_they_finish(site: Site) -> None:
    ids = _register(site)
    # When thumbnails are regenerated for one collection
    r = site.client.post(
        "/api/v1/thumbnails/regenerate", json={"collections": [ids[1]]}, headers=AUTH
    )
    assert r.status_code == 202
    bulk = r.json()
    assert len(bulk["jobs"]) == 1 and bulk["jobs"][0]["to_process"] == 5
    job_id = bulk["jobs"][0]["job_id"]
    queued = site.client.get(f"{JOBS}/{job_id}", headers=AUTH).json()
    assert queued["status"] == "queued" and queued["kinds"] == ["thumbnail"]
    # Then the job runs to the end, with the corrupt image failed by class
    site.app.start_worker(2)
    site.wait([job_id])
    job = site.client.get(f"{JOBS}/{job_id}", headers=AUTH).json()
    assert (job["status"], job["generated"], job["failed"]) == ("finished", 4, 1)
    assert job["failed_by_class"] == {"corrupt": 1}
    assert job["percent"] == 100.0 and job["remaining"] == 0

    failures = site.client.get(f"{JOBS}/{job_id}/failures", headers=AUTH).json()
    assert failures["total"] == 1
    assert failures["failures"][0]["path"] == "broken.jpg"
    assert failures["failures"][0]["error_class"] == "corrupt"
    only_io = site.client.get(f"{JOBS}/{job_id}/failures?class=io", headers=AUTH).json()
    assert only_io["total"] == 0

    history = site.client.get(f"{JOBS}/{job_id}/events?limit=3", headers=AUTH).json()
    assert len(history["events"]) == 3
    rest = site.client.get(
        f"{JOBS}/{job_id}/events?after={history['next_after']}", headers=AUTH
    ).json()
    types = {e["type"] for e in history["events"] + rest["events"]}
    assert {"JobPlanned", "RenditionGenerated", "RenditionFailed"} <= types

    # A second request finds nothing missing
    again = site.client.post(
        "/api/v1/thumbnails/regenerate", json={"collections": [ids[1]]}, headers=AUTH
    ).json()
    assert again["jobs"] == [] or again["jobs"][0]["to_process"] == 1  # only the corrupt one

    # Retry-failed plans a new job linked to this one
    retry = site.client.post(f"{JOBS}/{job_id}/retry-failed", headers=AUTH)
    assert retry.status_code == 200 and retry.json()["retry_of"] == job_id


def test_pause_resume_cancel_and_conflicts(site: Site) -> None:
    ids = _register(site)
    bulk = site.client.post("/api/v1/regenerate", json={"collections": ids[:1]}, headers=AUTH)
    job_id = bulk.json()["jobs"][0]["job_id"]
    paused = site.client.post(f"{JOBS}/{job_id}/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    listed = site.client.get(f"{JOBS}?status=paused", headers=AUTH).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    site.app.start_worker(2)
    resumed = site.client.post(f"{JOBS}/{job_id}/resume", headers=AUTH).json()
    assert resumed["status"] in ("queued", "running", "finished")
    site.wait([job_id])
    assert site.client.get(f"{JOBS}/{job_id}", headers=AUTH).json()["status"] == "finished"
    # A finished job can be neither paused nor cancelled: 409 with what to do
    for action in ("pause", "cancel"):
        r = site.client.post(f"{JOBS}/{job_id}/{action}", headers=AUTH)
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
    assert site.client.post(f"{JOBS}/{job_id}/retry-failed", headers=AUTH).status_code == 409


def test_list_filters_and_paging(site: Site) -> None:
    ids = _register(site)
    site.client.post("/api/v1/cache/regenerate", json={"all": True}, headers=AUTH)
    everything = site.client.get(f"{JOBS}?limit=1", headers=AUTH).json()
    assert everything["total"] == 2 and len(everything["jobs"]) == 1
    second = site.client.get(f"{JOBS}?limit=1&offset=1", headers=AUTH).json()
    assert second["jobs"][0]["id"] != everything["jobs"][0]["id"]
    one = site.client.get(f"{JOBS}?collection={ids[0]}", headers=AUTH).json()
    assert [j["collection_id"] for j in one["jobs"]] == [ids[0]]
    assert site.client.get(f"{JOBS}?status=finished", headers=AUTH).json()["total"] == 0
    assert site.client.get(f"{JOBS}?status=bogus", headers=AUTH).status_code == 400
    assert site.client.get(f"{JOBS}?limit=0", headers=AUTH).status_code == 400
    assert site.client.get(f"{JOBS}?offset=-1", headers=AUTH).status_code == 400


def test_regenerate_bodies_are_checked(site: Site) -> None:
    for body in (
        {},
        {"collections": []},
        {"collections": ["x"]},
        {"all": "yes"},
        {"all": True, "collections": ["a" * 16]},
        {"force": 1},
    ):
        r = site.client.post("/api/v1/cache/regenerate", json=body, headers=AUTH)
        assert r.status_code == 400, body
    r = site.client.post("/api/v1/cache/regenerate", json={"collections": ["a" * 16]}, headers=AUTH)
    assert r.status_code == 404
    assert site.client.get(f"{JOBS}/{'b' * 32}", headers=AUTH).status_code == 404
    assert site.client.post(f"{JOBS}/{'b' * 32}/pause", headers=AUTH).status_code == 404

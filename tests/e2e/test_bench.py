"""Every `imagecache bench` command at a tiny size, against the real services: it runs to the
end, prints one JSON object, and its figures hang together.

No figure here is a speed judged against a target (speed lives in the benchmarks
themselves); what is checked is what a broken benchmark would get wrong: a missing figure,
a ratio of the wrong pair, a count that does not add up, or a render kernel whose quality or
memory has slipped below the issue's bounds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

Bench = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IMAGECACHE_BENCH_DIR: the 12 MP set, made once and shared by render and pipeline."""
    return tmp_path_factory.mktemp("bench-sources")


@pytest.fixture(scope="module")
def bench(sources: Path, mongodb_uri: str, rabbitmq_url: str) -> Bench:
    """Runs `imagecache bench NAME ARGS --json` and returns its JSON object."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGECACHE_", "MONGODB_", "RABBITMQ_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        IMAGECACHE_BENCH_DIR=str(sources),
        MONGODB_URI=mongodb_uri,
        RABBITMQ_URL=rabbitmq_url,
    )

    def run(name: str, *args: str, embedded: bool = False, table: bool = False) -> Any:
        run_env = dict(env)
        if embedded:  # the bench starts a database of its own
            del run_env["MONGODB_URI"]
        command = [sys.executable, "-m", "ops.cli", "bench", name, *args]
        done = subprocess.run(
            command if table else [*command, "--json"],
            cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"bench {name} failed:\n{done.stderr[-3000:]}"
        return done.stdout if table else json.loads(done.stdout)

    return run


def test_render_kernel_keeps_its_quality_and_memory_bounds(
    bench: Bench, sources: Path, shared_corpus: Path
) -> None:
    r = bench("render", "--count", "2")
    assert r["count"] == 2
    assert r["kernel_ips"] > 0 and r["naive_ips"] > 0
    assert r["ratio"] == pytest.approx(r["kernel_ips"] / r["naive_ips"], rel=1e-9)
    # The quality and memory bounds hold on any machine, unlike its speed targets.
    assert 0.98 <= r["ssim_min"] <= r["ssim_mean"] <= 1.0
    assert 0.98 <= r["ssim_chroma_min"] <= 1.0
    assert r["imported_rss_mb"] < r["peak_rss_mb"] <= 200
    assert r["met"] == {
        "kernel_ips": r["kernel_ips"] >= 20,
        "ratio": r["ratio"] >= 4,
        "ssim_min": True,
        "peak_rss_mb": True,
    }
    # The sources went where IMAGECACHE_BENCH_DIR says, not into the checkout.
    assert len(list((sources / "12mp").glob("*.jpg"))) == 2
    assert len(list((sources / "50mp").glob("*.jpg"))) == 1


def test_pipeline_through_rabbitmq_and_embedded(bench: Bench, shared_corpus: Path) -> None:
    # The bench itself fails unless `up` reports every image generated in both renditions.
    r = bench("pipeline", "--count", "4")
    assert r["images"] == 4
    for mode in ("rabbitmq", "embedded"):
        assert r[f"{mode}_ips"] > 0
        expected = r[f"{mode}_ips"] / r["kernel_2proc_ips"]
        assert r[f"{mode}_ratio"] == pytest.approx(expected, rel=1e-9)
        # The whole command includes start-up and shutdown: never faster than its pipeline.
        assert r[f"{mode}_wall_ips"] <= r[f"{mode}_ips"]


def test_plan_publishes_only_what_is_not_current(bench: Bench) -> None:
    r = bench("plan", "--images", "2000", "--uncached", "500", "--per-collection", "500")
    assert r["broker"] == "rabbitmq"
    assert r["library_images"] == 2000
    assert r["library_to_process"] == 200  # the 10 % not current, found by the real planner
    assert r["uncached_images"] == 500
    assert r["library_ratio"] == pytest.approx(
        r["library_seconds"] / r["library_baseline_seconds"], rel=1e-9
    )
    assert r["library_messages_per_s"] > 0 and r["uncached_messages_per_s"] > 0
    # The same request again finds every image it would plan queued in the first one's jobs
    assert r["library_again_queued"] == 200 and r["library_again_seconds"] > 0


def test_recovery_resends_exactly_the_undone_half(bench: Bench) -> None:
    r = bench("recovery", "--planned", "4000", embedded=True)
    assert (r["planned"], r["outcome_events"], r["remaining"]) == (4000, 4000, 2000)
    assert r["messages"] == math.ceil(2000 / 8)  # the default batch of 8 images a message
    assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0


def test_replay_rebuilds_every_projection(bench: Bench) -> None:
    r = bench("replay", "--events", "2000", "--one", "200", "--batch", "500")
    assert (r["events"], r["one"], r["batched"]) == (2000, 200, 1800)
    assert r["log_events"] > r["events"]  # the scans and plans the outcomes belong to
    docs = r["projected_docs"]
    assert docs["job_state"] > 0 and docs["job_outcomes"] > 0 and docs["renditions"] > 0
    assert r["ratios"]["append_one"] == pytest.approx(
        r["append_one_eps"] / r["raw_insert_one_dps"], rel=1e-6
    )
    assert r["ratios"]["project"] == pytest.approx(r["project_eps"] / r["raw_read_dps"], rel=1e-6)


def test_cleanup_finds_every_orphan_and_prints_a_table(bench: Bench) -> None:
    r = bench("cleanup", "--files", "2000")
    assert r["files"] == 2000
    assert r["orphans_found"] == 1000
    table = bench("cleanup", "--files", "400", table=True)
    assert "files/s" in table and "{" not in table


def test_serve_answers_every_request(bench: Bench) -> None:
    r = bench("serve", "--images", "20", "--jobs", "120", "--seconds", "1", "--connections", "2")
    assert r["tool"] in ("wrk", "python")
    rows = {name: row for name, row in r.items() if isinstance(row, dict)}
    assert "jobs list first page, API" in rows and "jobs list last page, API" in rows
    for name, row in rows.items():
        assert row["requests"] > 0, name
        assert row["non_2xx"] == 0, name


def test_archive_streams_a_zero_member_and_parses_its_archive_once(bench: Bench) -> None:
    r = bench("archive", "--members", "1000", "--zero-mb", "64")
    assert (r["members"], r["zero_mb"], r["archive_parses"]) == (1000, 64, 1)
    with_it, without = r["peak_rss_mb"]["with"], r["peak_rss_mb"]["without"]
    assert r["render_peak_ratio"] == pytest.approx(with_it["render"] / without["render"], rel=1e-9)
    assert r["render_ratio"] == pytest.approx(
        r["render_ms"]["archive"] / r["render_ms"]["folder"], rel=1e-9
    )
    assert r["scan_ratio"] == pytest.approx(r["scan_us"]["archive"] / r["scan_us"]["folder"])
    assert r["parse_ms"] > 0
    # The 64 MB member was streamed: the render processes grew by half of it at most
    assert with_it["render"] - without["render"] < 32

"""`GET /metrics`: Prometheus text, read from the read models at scrape time.

Counts (renditions by kind and outcome, failures by class, bytes, jobs by
status, folder usage) come from `job_state` and `folder_stats`, so they are
exact, survive restarts and agree with the API. The generation-time histogram
is different: a histogram needs observations, and the read models keep no
per-rendition times. This process observes the `ms` of every
`RenditionGenerated` event appended to the log since it started (by any
worker), reading the new part of the log at each scrape: like any process-
local Prometheus histogram it starts from zero on restart.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from domain import events as ev
from domain.views import job_status
from ops.bootstrap import App

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
READ_PAGE = 5000
MAX_PAGES_PER_SCRAPE = 40  # at most 200k events per scrape; the rest waits for the next one
JOB_STATUSES = ("queued", "running", "paused", "cancelled", "finished")


class GenerationTimes:
    """Bucket counts of generation seconds per kind, fed from the log after a start position."""

    def __init__(self, app: App, start: int) -> None:
        self._app = app
        self._after = start
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self._count: dict[str, int] = defaultdict(int)
        self._sum: dict[str, float] = defaultdict(float)

    def observe(self, kind: str, seconds: float) -> None:
        buckets = self._buckets[kind]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                buckets[i] += 1
        self._count[kind] += 1
        self._sum[kind] += seconds

    def refresh(self) -> None:
        """Observe the generation times appended since the last refresh."""
        for _ in range(MAX_PAGES_PER_SCRAPE):
            batch = self._app.events.read(after=self._after, limit=READ_PAGE)
            if not batch:
                return
            for s in batch:
                if isinstance(s.event, ev.RenditionGenerated):
                    self.observe(s.event.kind, s.event.ms / 1000.0)
            self._after = batch[-1].seq

    def family(self) -> HistogramMetricFamily:
        with self._lock:
            self.refresh()
            h = HistogramMetricFamily(
                "imagecache_generation_seconds",
                "Time to render one rendition (RenditionGenerated.ms) seen since this process"
                " started",
                labels=["kind"],
            )
            for kind in sorted(self._count):
                cumulative = [
                    (str(b), float(n)) for b, n in zip(BUCKETS, self._buckets[kind], strict=True)
                ]
                cumulative.append(("+Inf", float(self._count[kind])))
                h.add_metric([kind], cumulative, self._sum[kind])
            return h


class ReadModelCollector(Collector):
    """Reads the read models, the projector and the broker on every scrape."""

    def __init__(self, app: App, times: GenerationTimes) -> None:
        self._app = app
        self._times = times

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._folders()
        yield from self._log()
        yield from self._queue()
        yield self._times.family()

    def _jobs(self) -> Iterator[Metric]:
        outcomes: dict[tuple[str, str], int] = defaultdict(int)
        by_class: dict[str, int] = defaultdict(int)
        statuses: dict[str, int] = dict.fromkeys(JOB_STATUSES, 0)
        written = 0
        for doc in self._app.read.job_counters():
            statuses[job_status(doc)] = statuses.get(job_status(doc), 0) + 1
            written += int(doc.get("bytes", 0))
            for kind, counts in (doc.get("by_kind") or {}).items():
                for outcome, n in counts.items():
                    outcomes[(kind, outcome)] += int(n)
            for cls, n in (doc.get("failed_by_class") or {}).items():
                by_class[cls] += int(n)
        renditions = CounterMetricFamily(
            "imagecache_renditions", "Rendition outcomes by kind", labels=["kind", "outcome"]
        )
        for kind in self._app.settings.specs:
            for outcome in ("generated", "skipped", "failed"):
                renditions.add_metric([kind, outcome], outcomes.get((kind, outcome), 0))
        yield renditions
        failed = CounterMetricFamily(
            "imagecache_renditions_failed", "Failed renditions by error class", labels=["class"]
        )
        for cls, n in sorted(by_class.items()):
            failed.add_metric([cls], n)
        yield failed
        yield CounterMetricFamily(
            "imagecache_written_bytes", "Bytes of renditions written", value=written
        )
        jobs = GaugeMetricFamily("imagecache_jobs", "Processing jobs by status", labels=["status"])
        for status, n in statuses.items():
            jobs.add_metric([status], n)
        yield jobs

    def _folders(self) -> Iterator[Metric]:
        specs: list[tuple[str, str, str]] = [
            ("bytes", "imagecache_folder_used_bytes", "Bytes of renditions in the folder"),
            ("capacity_bytes", "imagecache_folder_capacity_bytes", "Capacity (0: the disk)"),
            ("files", "imagecache_folder_files", "Rendition files in the folder"),
            ("usage", "imagecache_folder_usage_ratio", "Used bytes / capacity"),
            ("full", "imagecache_folder_full", "1 when the folder is full"),
            ("near_full", "imagecache_folder_near_full", "1 when the folder is near full"),
        ]
        folders = self._app.read.folders()
        for key, name, text in specs:
            family = GaugeMetricFamily(name, text, labels=["folder", "path"])
            for f in folders:
                family.add_metric([f["id"], str(f["path"])], float(f[key]))
            yield family

    def _log(self) -> Iterator[Metric]:
        head = self._app.events.head()
        position = self._app.projector.position()
        yield GaugeMetricFamily("imagecache_log_head", "The event log's last seq", value=head)
        yield GaugeMetricFamily(
            "imagecache_projector_lag_events",
            "Events the projections are behind the log's head",
            value=max(head - position, 0),
        )

    def _queue(self) -> Iterator[Metric]:
        counts = queue_depth(self._app)
        if counts is None:
            return
        family = GaugeMetricFamily(
            "imagecache_queue_messages", "Messages waiting in the broker", labels=["queue", "state"]
        )
        queue = self._app.actors.generate_batch.queue_name
        for state, n in counts.items():
            family.add_metric([queue, state], n)
        yield family


def queue_depth(app: App) -> dict[str, int] | None:
    """Ready, delayed (and dead, on RabbitMQ) messages of the generation queue, if known."""
    broker: Any = app.actors.broker
    queue = app.actors.generate_batch.queue_name
    try:
        if hasattr(broker, "get_queue_message_counts"):
            ready, delayed, dead = broker.get_queue_message_counts(queue)
            return {"ready": int(ready), "delayed": int(delayed), "dead": int(dead)}
        queues = getattr(broker, "queues", None)
        if isinstance(queues, dict) and queue in queues:
            delayed_q = queues.get(f"{queue}.DQ")
            return {
                "ready": int(queues[queue].qsize()),
                "delayed": int(delayed_q.qsize()) if delayed_q is not None else 0,
            }
    except Exception:
        return None  # the broker did not answer: leave the metric out rather than fail
    return None


def make_registry(app: App) -> CollectorRegistry:
    """A registry of its own per web app, holding the read-model collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadModelCollector(app, GenerationTimes(app, app.events.head())))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)

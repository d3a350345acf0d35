"""Settings from an environment mapping that is passed in (never grabbed at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from domain.errors import InvalidInput
from domain.specs import RenditionSpec


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a whole number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    """Everything configurable; see README.md for each variable."""

    data_dir: Path
    mongodb_uri: str | None
    database: str
    rabbitmq_url: str | None
    library_roots: tuple[str, ...]
    cache_dir: Path
    cache_capacity: int
    host: str
    port: int
    batch_size: int
    worker_threads: int
    worker_processes: int
    max_pixels: int
    gap_timeout: float
    confirm_delivery: bool
    queue: str
    quarantine_after: int
    stale_after: float
    alert_threshold: float
    alert_webhook: str | None
    orphan_days: float
    specs: dict[str, RenditionSpec] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        data = Path(env.get("IMAGECACHE_DATA", "./var")).expanduser().absolute()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        roots = tuple(r for r in env.get("IMAGECACHE_LIBRARY_ROOTS", "").split(os.pathsep) if r)
        fmt = env.get("IMAGECACHE_FORMAT", "jpeg")
        cache_side = _int(env, "IMAGECACHE_CACHE_SIZE", 1920)
        thumb_side = _int(env, "IMAGECACHE_THUMBNAIL_SIZE", 300)
        specs = {
            "cache": RenditionSpec(
                "cache", cache_side, cache_side, fmt, _int(env, "IMAGECACHE_CACHE_QUALITY", 85)
            ),
            "thumbnail": RenditionSpec(
                "thumbnail",
                thumb_side,
                thumb_side,
                fmt,
                _int(env, "IMAGECACHE_THUMBNAIL_QUALITY", 80),
            ),
        }
        return cls(
            data_dir=data,
            mongodb_uri=env.get("MONGODB_URI") or None,
            database=env.get("IMAGECACHE_DB", "imagecache"),
            rabbitmq_url=env.get("RABBITMQ_URL") or None,
            library_roots=roots,
            cache_dir=Path(env.get("IMAGECACHE_CACHE_DIR", str(data / "cache"))).absolute(),
            cache_capacity=_int(env, "IMAGECACHE_CACHE_CAPACITY", 0),
            host=env.get("IMAGECACHE_HOST", "127.0.0.1"),
            port=_int(env, "IMAGECACHE_PORT", 8642),
            # Measured (96 x 12 MP, 2 worker processes on RabbitMQ), images/s by batch size:
            # 1: 11.2, 4: 11.7, 8: 13.2, 16: 13.5, 32: 12.5. Larger batches starve workers
            # at the end of small jobs and redo more after a crash.
            batch_size=max(1, _int(env, "IMAGECACHE_BATCH_SIZE", 8)),
            worker_threads=max(1, _int(env, "IMAGECACHE_WORKER_THREADS", cpus)),
            worker_processes=max(1, _int(env, "IMAGECACHE_WORKER_PROCESSES", cpus)),
            max_pixels=_int(env, "IMAGECACHE_MAX_PIXELS", 100_000_000),
            gap_timeout=_float(env, "IMAGECACHE_GAP_TIMEOUT", 5.0),
            confirm_delivery=env.get("IMAGECACHE_CONFIRM_DELIVERY", "0") == "1",
            queue=env.get("IMAGECACHE_QUEUE", "imagecache"),
            quarantine_after=_int(env, "IMAGECACHE_QUARANTINE_AFTER", 3),
            stale_after=_float(env, "IMAGECACHE_STALE_AFTER", 120.0),
            alert_threshold=_float(env, "IMAGECACHE_ALERT_THRESHOLD", 0.10),
            alert_webhook=env.get("IMAGECACHE_ALERT_WEBHOOK") or None,
            orphan_days=_float(env, "IMAGECACHE_ORPHAN_DAYS", 7.0),
            specs=specs,
        )

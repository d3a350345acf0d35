"""Settings from an environment mapping that is passed in (never grabbed at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from domain.errors import InvalidInput
from domain.sizes import parse_size
from domain.specs import RenditionSpec

FORMATS = ("jpeg", "webp", "avif")
N = TypeVar("N", int, float)


def env_int(
    env: Mapping[str, str], name: str, default: int, lo: int | None = None, hi: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a whole number") from None
    return _within(name, raw, value, lo, hi)


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{name}={raw!r} is not a finite number")
    return _within(name, raw, value, lo, hi)


def _within(name: str, raw: str, value: N, lo: N | None, hi: N | None) -> N:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            bounds = f"at least {_number(lo)}"
        elif lo is None:
            bounds = f"at most {_number(hi)}"
        else:
            bounds = f"from {_number(lo)} to {_number(hi)}"
        raise InvalidInput(f"{name}={raw!r} is out of range: it must be {bounds}")
    return value


def _number(value: float | None) -> str:
    """A bound as people write it: whole numbers in full (1048576, not 1.04858e+06)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def env_size(env: Mapping[str, str], name: str, default: int) -> int:
    """A size setting: `2G`, `500M`, `1.5T` (powers of 1024), `750MB` (of 1000), or bytes."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().startswith("-"):
        raise InvalidInput(f"{name}={raw!r} is out of range: it must be at least 0")
    try:
        return parse_size(raw)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}={raw!r}: {exc}") from None


def flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A yes/no setting: 1/0, true/false, yes/no, on/off (any case)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name}={env[name]!r} is not a yes/no value: use 1 or 0")


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
    max_source_bytes: int
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
        fmt = env.get("IMAGECACHE_FORMAT", "jpeg").strip().lower()
        if fmt not in FORMATS:
            raise InvalidInput(
                f"IMAGECACHE_FORMAT={env['IMAGECACHE_FORMAT']!r} is not an output format:"
                f" use {', '.join(FORMATS)}"
            )
        cache_side = env_int(env, "IMAGECACHE_CACHE_SIZE", 1920, lo=16, hi=16384)
        thumb_side = env_int(env, "IMAGECACHE_THUMBNAIL_SIZE", 300, lo=16, hi=16384)
        cache_quality = env_int(env, "IMAGECACHE_CACHE_QUALITY", 85, lo=1, hi=100)
        thumb_quality = env_int(env, "IMAGECACHE_THUMBNAIL_QUALITY", 80, lo=1, hi=100)
        max_pixels = env_int(env, "IMAGECACHE_MAX_PIXELS", 100_000_000, lo=1)
        # Bytes a source may hold: 8 a pixel by default (16-bit RGBA, uncompressed), so no
        # image under the pixel limit is refused for its size. A ZIP member is checked before
        # it is read and streamed within it; 1 MiB at least, or every photo would fail.
        max_source_bytes = env_int(
            env,
            "IMAGECACHE_MAX_SOURCE_BYTES",
            max(8 * max_pixels, 1 << 20),
            lo=1 << 20,
            hi=1 << 40,
        )
        specs = {
            "cache": RenditionSpec("cache", cache_side, cache_side, fmt, cache_quality),
            "thumbnail": RenditionSpec("thumbnail", thumb_side, thumb_side, fmt, thumb_quality),
        }
        return cls(
            data_dir=data,
            mongodb_uri=env.get("MONGODB_URI") or None,
            database=env.get("IMAGECACHE_DB", "imagecache"),
            rabbitmq_url=env.get("RABBITMQ_URL") or None,
            library_roots=roots,
            cache_dir=Path(env.get("IMAGECACHE_CACHE_DIR", str(data / "cache"))).absolute(),
            cache_capacity=env_size(env, "IMAGECACHE_CACHE_CAPACITY", 0),
            host=env.get("IMAGECACHE_HOST", "127.0.0.1"),
            port=env_int(env, "IMAGECACHE_PORT", 8642, lo=1, hi=65535),
            # Measured (96 x 12 MP, 2 worker processes on RabbitMQ), images/s by batch size:
            # 1: 11.2, 4: 11.7, 8: 13.2, 16: 13.5, 32: 12.5. Larger batches starve workers
            # at the end of small jobs and redo more after a crash.
            batch_size=env_int(env, "IMAGECACHE_BATCH_SIZE", 8, lo=1, hi=1000),
            worker_threads=env_int(env, "IMAGECACHE_WORKER_THREADS", cpus, lo=1, hi=256),
            worker_processes=env_int(env, "IMAGECACHE_WORKER_PROCESSES", cpus, lo=1, hi=256),
            max_pixels=max_pixels,
            max_source_bytes=max_source_bytes,
            gap_timeout=env_float(env, "IMAGECACHE_GAP_TIMEOUT", 5.0, lo=0.1),
            confirm_delivery=flag(env, "IMAGECACHE_CONFIRM_DELIVERY"),
            queue=env.get("IMAGECACHE_QUEUE", "imagecache"),
            quarantine_after=env_int(env, "IMAGECACHE_QUARANTINE_AFTER", 3, lo=1),
            stale_after=env_float(env, "IMAGECACHE_STALE_AFTER", 120.0, lo=1.0),
            alert_threshold=env_float(env, "IMAGECACHE_ALERT_THRESHOLD", 0.10, lo=0.0, hi=1.0),
            alert_webhook=env.get("IMAGECACHE_ALERT_WEBHOOK") or None,
            orphan_days=env_float(env, "IMAGECACHE_ORPHAN_DAYS", 7.0, lo=0.0),
            specs=specs,
        )

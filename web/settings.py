"""The web layer's own settings, read from an environment mapping that is passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ops.settings import env_float, flag

BODY_LIMIT = 64 * 1024
SESSION_SECONDS = 12 * 3600.0


@dataclass(frozen=True)
class WebSettings:
    """The API token, open reads, the body limit, the session lifetime."""

    token: str
    open_reads: bool = False
    body_limit: int = BODY_LIMIT
    session_seconds: float = SESSION_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str], token: str, listen: str = "127.0.0.1") -> WebSettings:
        return cls(
            token=token,
            open_reads=flag(env, "IMAGECACHE_OPEN_READS"),
            session_seconds=env_float(
                env, "IMAGECACHE_SESSION_SECONDS", SESSION_SECONDS, lo=1.0, hi=366 * 86400.0
            ),
        )

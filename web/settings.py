"""The web layer's own settings, read from an environment mapping that is passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ops.settings import flag

BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class WebSettings:
    """The API token, whether reads are open to anonymous callers, the body size limit."""

    token: str
    open_reads: bool = False
    body_limit: int = BODY_LIMIT

    @classmethod
    def from_env(cls, env: Mapping[str, str], token: str) -> WebSettings:
        return cls(token=token, open_reads=flag(env, "IMAGECACHE_OPEN_READS"))

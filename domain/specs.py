"""Rendition specs: what a cache image or thumbnail looks like, and its hash."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass

from domain.errors import InvalidSpec

KINDS = ("cache", "thumbnail")
FORMATS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True)
class RenditionSpec:
    """One kind of derived file: scaled to fit inside box_w x box_h, never enlarged."""

    kind: str
    box_w: int
    box_h: int
    format: str = "jpeg"
    quality: int = 85
    background: str = "#ffffff"  # alpha is flattened onto this for JPEG

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidSpec(f"unknown rendition kind {self.kind!r}")
        if self.format not in FORMATS:
            raise InvalidSpec(f"unknown output format {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise InvalidSpec(f"quality {self.quality} is outside 1-100")
        if self.box_w < 1 or self.box_h < 1:
            raise InvalidSpec(f"box {self.box_w}x{self.box_h} must be positive")

    @property
    def extension(self) -> str:
        return FORMATS[self.format]

    @functools.cached_property
    def hash(self) -> str:
        """A short stable hash: any change of the spec makes stored outcomes stale."""
        canon = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RenditionSpec:
        return cls(**data)  # type: ignore[arg-type]

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The output size for a source of width x height: fit inside the box, never enlarge."""
        scale = min(self.box_w / width, self.box_h / height, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))


DEFAULT_SPECS: dict[str, RenditionSpec] = {
    "cache": RenditionSpec("cache", 1920, 1920, "jpeg", 85),
    "thumbnail": RenditionSpec("thumbnail", 300, 300, "jpeg", 80),
}


def kinds_from_choice(choice: str) -> tuple[str, ...]:
    """`cache`, `thumbnail` or `both` as the tuple of kinds it means."""
    if choice == "both":
        return KINDS
    if choice in KINDS:
        return (choice,)
    raise InvalidSpec(f"unknown kind choice {choice!r}; use cache, thumbnail or both")

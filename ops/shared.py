"""Where the shared image corpus is: `shared/` beside this checkout.

A checkout made by cloning another one (`git clone . /tmp/x`, as CI does into a temporary
folder) looks beside the repository it was cloned from too, and IMAGECACHE_SHARED names the
folder outright.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The first `shared/` folder found; the one beside this checkout when there is none."""
    beside = REPO.parent / "shared"
    candidates = [beside]
    if named := os.environ.get("IMAGECACHE_SHARED"):
        candidates.insert(0, Path(named))
    origin = _origin_path()
    if origin is not None:
        candidates.append(origin.parent / "shared")
    return next((c for c in candidates if c.is_dir()), beside)


def _origin_path() -> Path | None:
    """The local folder this checkout was cloned from, if it was."""
    try:
        url = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, check=False, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or ":" in url.split("/")[0]:
        return None  # a remote (https://, ssh://, host:path), not a folder here
    path = (REPO / url).resolve()
    return path if path.is_dir() else None

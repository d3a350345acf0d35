"""A small demo library of generated pictures, for `up` with no path."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw


def _picture(seed: int, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    draw = ImageDraw.Draw(img)
    w, h = size
    for i in range(12):
        x, y = (seed * 131 + i * 977) % w, (seed * 71 + i * 613) % h
        r = 20 + (seed * 7 + i * 13) % (min(w, h) // 4)
        colour = ((i * 40 + seed) % 256, (i * 90) % 256, (255 - i * 20) % 256)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    draw.text((10, 10), f"imagecache demo {seed}", fill=(255, 255, 255))
    return img


def make_demo_library(dest: Path, folders: int = 3, per_folder: int = 8) -> Path:
    """Create (once) a few folders of JPEGs and one CBZ under `dest`; return `dest`."""
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    seed = 0
    for f in range(folders):
        folder = dest / f"album-{f + 1}"
        folder.mkdir(exist_ok=True)
        for _ in range(per_folder):
            seed += 1
            size = (2400, 1600) if seed % 3 else (1200, 1800)
            _picture(seed, size).save(folder / f"photo-{seed:03d}.jpg", quality=90)
    with zipfile.ZipFile(dest / "comic-1.cbz", "w") as zf:
        for page in range(per_folder):
            seed += 1
            buf = io.BytesIO()
            _picture(seed, (1000, 1500)).save(buf, "JPEG", quality=88)
            zf.writestr(f"page-{page + 1:03d}.jpg", buf.getvalue())
    (dest / ".complete").write_text("")
    return dest

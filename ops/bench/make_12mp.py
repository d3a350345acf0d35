"""Deterministic benchmark sources: 12 MP camera-like JPEGs made from the shared photo corpus."""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

from ops.shared import shared_dir

CORPUS_PHOTOS = shared_dir() / "corpus" / "photos"
SIZE_12MP = (4000, 3000)
SIZE_50MP = (8660, 5774)
QUALITY = 92
# Every few images carry an orientation tag, as phone and camera pictures do.
ORIENTATIONS = (1, 6, 1, 1, 8, 1, 3, 1)
GRAIN = 8  # peak-to-peak, in 8-bit levels


def bench_dir() -> Path:
    """Where the benchmarks keep the sources they make: $IMAGECACHE_BENCH_DIR, else var/bench."""
    given = os.environ.get("IMAGECACHE_BENCH_DIR")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "var" / "bench"


def make_set(dest: Path, count: int, source_dir: Path = CORPUS_PHOTOS) -> list[Path]:
    """`count` 4000x3000 JPEG q92 files in `dest`, made once and reused; same bytes every run."""
    sources = sorted(p for p in source_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        raise FileNotFoundError(f"no JPEG photos in {source_dir}")
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        source = sources[index % len(sources)]
        orientation = ORIENTATIONS[index % len(ORIENTATIONS)]
        path = dest / f"{index:03d}_{source.stem[:24]}_o{orientation}.jpg"
        if not _is_complete(path, SIZE_12MP):
            _derive(source, path, SIZE_12MP, orientation, seed=index)
        made.append(path)
    return made


def make_large(dest: Path, size: tuple[int, int] = SIZE_50MP) -> Path:
    """One large JPEG (50 MP by default) for the peak-memory measurement, made once."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"large_{size[0]}x{size[1]}.jpg"
    if not _is_complete(path, size):
        sources = sorted(p for p in CORPUS_PHOTOS.iterdir() if p.suffix.lower() == ".jpg")
        _derive(sources[0], path, size, 1, seed=50)
    return path


def _is_complete(path: Path, size: tuple[int, int]) -> bool:
    try:
        with Image.open(path) as im:
            return im.size == size
    except (OSError, ValueError):
        return False


def _derive(source: Path, path: Path, size: tuple[int, int], orientation: int, seed: int) -> None:
    with Image.open(source) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    picture = ImageOps.fit(upright, size, Image.Resampling.LANCZOS)
    # Upscaled photos are smoother than a sensor's output, which would make decoding and
    # encoding look faster than on real camera files; a fixed grain restores detail.
    picture = _add_grain(picture, seed)
    exif = Image.Exif()
    exif[0x0112] = orientation
    partial = path.with_suffix(".part")
    picture.save(partial, "JPEG", quality=QUALITY, exif=exif.tobytes())
    partial.replace(path)


def _add_grain(picture: Image.Image, seed: int) -> Image.Image:
    width, height = picture.size
    noise = Image.frombytes("L", picture.size, random.Random(seed).randbytes(width * height))
    noise = noise.point(lambda v: v * GRAIN // 255)
    grain = Image.merge("RGB", (noise, noise, noise))
    return ImageChops.add(picture, grain, scale=1.0, offset=-GRAIN // 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=make_set.__doc__)
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="default: $IMAGECACHE_BENCH_DIR/12mp, else var/bench/12mp",
    )
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args(argv)
    for path in make_set(args.dest or bench_dir() / "12mp", args.count):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

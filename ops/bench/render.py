"""`imagecache bench render`: the render kernel against naive Pillow on one pinned core.

Per image of the set, side by side in one run: a 1920 cache image and a 300 thumbnail by
`actors.render.render`, then the same by naive Pillow (open, convert, thumbnail, save, once per
size). Images/s are counted on CPU time (what one core delivers, whatever else runs on the
machine) and on wall time. Quality: SSIM on luma of the kernel's cache image (through a q100
JPEG) against a full decode resized with Lanczos, and on its chroma (Cb and Cr, compared at
half size, the resolution a 4:2:0 JPEG keeps): luma alone would not see chroma go wrong.
Memory: peak RSS of a subprocess rendering one 50 MP JPEG.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageCms, ImageMath, ImageOps

from actors.pool import BLOCKS_MAX
from actors.render import render
from domain.specs import DEFAULT_SPECS, RenditionSpec
from ops.bench.make_12mp import CORPUS_PHOTOS, bench_dir, make_large, make_set

SPECS = (DEFAULT_SPECS["cache"], DEFAULT_SPECS["thumbnail"])
TARGETS = {"kernel_ips": 20.0, "ratio": 4.0, "ssim_min": 0.98, "peak_rss_mb": 200.0}
C1 = (0.01 * 255) ** 2  # SSIM constants for 8-bit data
C2 = (0.03 * 255) ** 2

_PEAK_CHILD = """
import json, sys
from pathlib import Path
from actors.pool import BLOCKS_MAX
from actors.render import render
from domain.specs import DEFAULT_SPECS

def high_water_kb():  # this process's own peak; ru_maxrss would carry the parent's over exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

imported = high_water_kb()
out = render(Path(sys.argv[1]), [DEFAULT_SPECS["cache"], DEFAULT_SPECS["thumbnail"]])
print(json.dumps({"imported_kb": imported, "peak_kb": high_water_kb()}))
"""


def run(argv: list[str]) -> int:
    """Run the render benchmark; print a table (or JSON); 0, or 1 if --check and a target fails."""
    parser = argparse.ArgumentParser(prog="imagecache bench render", description=__doc__)
    parser.add_argument("--set", choices=("12mp", "photos"), default="12mp", dest="image_set")
    parser.add_argument("--count", type=int, default=24, help="images in the set (default 24)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the set (default 1)")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: last)")
    parser.add_argument(
        "--blocks-max",
        type=int,
        default=None,
        help="keep N freed Pillow memory blocks for reuse, for kernel and naive alike; default:"
        f" the kernel as workers run it ({BLOCKS_MAX}), naive Pillow with Pillow's default (0)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    core = importlib.import_module("PIL._imaging")
    default_blocks = core.get_blocks_max()
    # By default each side runs as it would for real: the kernel with the tuning every
    # rendering process gets (actors.pool.tune_process), naive Pillow with Pillow's defaults.
    kernel_blocks = BLOCKS_MAX if args.blocks_max is None else args.blocks_max
    naive_blocks = default_blocks if args.blocks_max is None else args.blocks_max
    if args.image_set == "12mp":
        files = make_set(bench_dir() / "12mp", args.count)
    else:
        files = sorted(p for p in CORPUS_PHOTOS.iterdir() if p.suffix in (".jpg", ".png"))
        files = files[: args.count]
    result: dict[str, Any] = {
        "set": args.image_set,
        "count": len(files),
        "cpu": cpu,
        "blocks_max": kernel_blocks,
        "naive_blocks_max": naive_blocks,
    }
    result.update(_speed(files, args.repeat, {"kernel": kernel_blocks, "naive": naive_blocks}))
    result.update(_quality(files))
    result.update(_peak_rss(make_large(bench_dir() / "50mp"), kernel_blocks))
    result["targets"] = TARGETS
    result["met"] = {
        "kernel_ips": result["kernel_ips"] >= TARGETS["kernel_ips"],
        "ratio": result["ratio"] >= TARGETS["ratio"],
        "ssim_min": result["ssim_min"] >= TARGETS["ssim_min"],
        "peak_rss_mb": result["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
    }
    print(json.dumps(result) if args.json else _table(result))
    return 1 if args.check and not all(result["met"].values()) else 0


def naive(path: Path, specs: tuple[RenditionSpec, ...]) -> list[bytes]:
    """What a first attempt does: a fresh open, convert, thumbnail and save for every size."""
    outputs = []
    for spec in specs:
        with Image.open(path) as im:
            picture = im.convert("RGB")
            picture.thumbnail((spec.box_w, spec.box_h))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=spec.quality)
            outputs.append(buffer.getvalue())
    return outputs


def _speed(files: list[Path], repeat: int, blocks: dict[str, int]) -> dict[str, float]:
    core = importlib.import_module("PIL._imaging")
    render(files[0], SPECS)  # warm up: imports, Pillow plugin registry, ICC profiles
    naive(files[0], SPECS)
    cpu = {"kernel": 0.0, "naive": 0.0}
    wall = {"kernel": 0.0, "naive": 0.0}
    for _ in range(repeat):
        for path in files:  # interleaved, so a noisy neighbour hurts both alike
            for name, job in (("kernel", render), ("naive", naive)):
                core.set_blocks_max(blocks[name])  # (outside the timing)
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                job(path, SPECS)
                cpu[name] += time.process_time() - cpu_start
                wall[name] += time.perf_counter() - wall_start
    done = len(files) * repeat
    return {
        "kernel_ips": done / cpu["kernel"],
        "naive_ips": done / cpu["naive"],
        "ratio": cpu["naive"] / cpu["kernel"],
        "kernel_ips_wall": done / wall["kernel"],
        "naive_ips_wall": done / wall["naive"],
    }


def _quality(files: list[Path]) -> dict[str, float]:
    # The kernel's pixels are judged through a q100 JPEG, so that the resize path is measured
    # and not the encoder; at the served quality both sides are also compared, for context.
    lossless = replace(SPECS[0], quality=100)
    kernel, chroma, served, reference_served = [], [], [], []
    for path in files:
        with Image.open(path) as full:
            upright = _srgb(ImageOps.exif_transpose(full)).convert("RGB")
        near, out = render(path, [lossless, SPECS[0]])
        reference = upright.resize((near.width, near.height), Image.Resampling.LANCZOS)
        kernel.append(ssim(_decoded(near.data), reference))
        chroma.append(_chroma_ssim(_decoded(near.data), reference))
        served.append(ssim(_decoded(out.data), reference))
        encoded = io.BytesIO()
        reference.save(encoded, "JPEG", quality=SPECS[0].quality)
        reference_served.append(ssim(_decoded(encoded.getvalue()), reference))
    return {
        "ssim_min": min(kernel),
        "ssim_mean": sum(kernel) / len(kernel),
        "ssim_chroma_min": min(chroma),
        "ssim_chroma_mean": sum(chroma) / len(chroma),
        "ssim_min_served": min(served),
        "ssim_min_served_reference": min(reference_served),
    }


def _chroma_ssim(a: Image.Image, b: Image.Image) -> float:
    """The lower SSIM of the two chroma planes, each at half size (0.1 s, not 0.35 at full)."""
    half = ((a.width + 1) // 2, (a.height + 1) // 2)
    planes = [im.convert("YCbCr").resize(half, Image.Resampling.BOX).split()[1:] for im in (a, b)]
    return min(ssim(x, y) for x, y in zip(*planes, strict=True))


def _srgb(im: Image.Image) -> Image.Image:
    """The full image in sRGB, by its embedded profile: the reference is colour managed too."""
    profile = im.info.get("icc_profile")
    if not profile:
        return im
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    converted = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"))
    return converted if converted is not None else im


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _peak_rss(source: Path, blocks_max: int | None) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    if blocks_max is not None:
        env["PILLOW_BLOCKS_MAX"] = str(blocks_max)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, str(source)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=root,
    )
    child = json.loads(done.stdout)
    # RUSAGE_CHILDREN's ru_maxrss keeps the RSS this (large) process had when it forked the
    # child, since Linux carries maxrss over exec; kept for reference, the child's VmHWM counts.
    inherited_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with Image.open(source) as im:
        width, height = im.size
    return {
        "peak_rss_mb": child["peak_kb"] / 1024,
        "children_maxrss_mb": inherited_kb / 1024,
        "imported_rss_mb": child["imported_kb"] / 1024,
        "peak_source": f"{width}x{height} JPEG ({width * height / 1e6:.0f} MP)",
    }


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of the two images' luma, 8x8 sliding windows (Wang et al. 2004); 1.0 = same."""
    if a.size != b.size:
        raise ValueError(f"sizes differ: {a.size} and {b.size}")
    x, y = a.convert("L").convert("F"), b.convert("L").convert("F")
    mx, my = _window_mean(x), _window_mean(y)
    xx = _window_mean(_eval(lambda v: v["x"] * v["x"], x=x))
    yy = _window_mean(_eval(lambda v: v["y"] * v["y"], y=y))
    xy = _window_mean(_eval(lambda v: v["x"] * v["y"], x=x, y=y))
    ssim_map = _eval(
        lambda v: (
            (2 * v["mx"] * v["my"] + C1)
            * (2 * (v["xy"] - v["mx"] * v["my"]) + C2)
            / (
                (v["mx"] * v["mx"] + v["my"] * v["my"] + C1)
                * (v["xx"] - v["mx"] * v["mx"] + v["yy"] - v["my"] * v["my"] + C2)
            )
        ),
        mx=mx,
        my=my,
        xx=xx,
        yy=yy,
        xy=xy,
    )
    mean = ssim_map.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(mean, float)
    return mean


def _window_mean(im: Image.Image) -> Image.Image:
    # Sums of 2, 4, then 8 neighbours by adding shifted copies: exact, and all of it in C.
    for horizontal in (True, False):
        for shift in (1, 2, 4):
            width, height = im.size
            if horizontal:
                first, second = (0, 0, width - shift, height), (shift, 0, width, height)
            else:
                first, second = (0, 0, width, height - shift), (0, shift, width, height)
            im = _eval(lambda v: v["a"] + v["b"], a=im.crop(first), b=im.crop(second))
    return _eval(lambda v: v["s"] / 64.0, s=im)


def _eval(expression: Any, **images: Image.Image) -> Image.Image:
    result = ImageMath.lambda_eval(expression, **images)
    assert isinstance(result, Image.Image)
    return result


def _table(r: dict[str, Any]) -> str:
    met = {key: "ok" if value else "MISSED" for key, value in r["met"].items()}
    t = r["targets"]
    return "\n".join(
        [
            f"render bench: set {r['set']}, {r['count']} images, pinned to cpu {r['cpu']}"
            + f", Pillow blocks_max {r['blocks_max']} (naive {r['naive_blocks_max']})",
            f"{'':28}{'images/s cpu':>14}{'images/s wall':>15}",
            f"{'kernel (cache+thumbnail)':28}{r['kernel_ips']:>14.2f}{r['kernel_ips_wall']:>15.2f}"
            f"   target >= {t['kernel_ips']:g}: {met['kernel_ips']}",
            f"{'naive Pillow':28}{r['naive_ips']:>14.2f}{r['naive_ips_wall']:>15.2f}",
            f"{'speed-up (cpu)':28}{r['ratio']:>13.2f}x"
            f"{'':15}   target >= {t['ratio']:g}x: {met['ratio']}",
            f"{'SSIM luma min / mean':28}{r['ssim_min']:>14.4f}{r['ssim_mean']:>15.4f}"
            f"   target >= {t['ssim_min']:g}: {met['ssim_min']}",
            f"{'  as served (q85): min':28}{r['ssim_min_served']:>14.4f}"
            f"   (reference itself at q85: {r['ssim_min_served_reference']:.4f})",
            f"{'SSIM chroma min / mean':28}{r['ssim_chroma_min']:>14.4f}"
            f"{r['ssim_chroma_mean']:>15.4f}",
            f"{'peak RSS, ' + r['peak_source']:44}{r['peak_rss_mb']:>7.0f} MB"
            f"   target <= {t['peak_rss_mb']:g}: {met['peak_rss_mb']}"
            f"  (interpreter + imports {r['imported_rss_mb']:.0f} MB)",
        ]
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

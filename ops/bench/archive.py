"""`imagecache bench archive`: what a zip bomb and a huge archive cost, each against a baseline
measured in the same run.

`imagecache bench archive [--members N] [--zero-mb MB] [--pages N] [--json]`

- Memory: the peak RSS of `imagecache up --no-serve` (embedded: itself, its database and its
  render processes, each process's own peak from /proc/PID/status VmHWM) on a library whose
  CBZ of --pages pictures also holds a --zero-mb MB zero-filled member, against the same
  library without that member. The member is streamed, not read whole, so the render
  processes should not grow by anything like its size.
- Time per member: scanning and then rendering every member of a CBZ of --members tiny
  pictures, against the same pictures as plain files in a folder, one process, through the
  production reader (`render_member`: no link followed, checked against the scan, bounded).
  No database: registering and recording 100,000 images costs the same whoever holds them.
  Also measured: one parse of the archive's central directory, which every member paid
  before archives were kept open (0.66 s a member at 100,000 members).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from PIL import Image

from actors.pool import render_member, tune_process
from actors.sources import ARCHIVES, SourceRef, list_members
from domain.specs import DEFAULT_SPECS
from ops.bench.common import embedded_env, report
from ops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
POLL = 0.05  # seconds between looks at the process tree of `up`


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagecache bench archive")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--zero-mb", type=int, default=300)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"members": args.members, "zero_mb": args.zero_mb}
    with tempfile.TemporaryDirectory(prefix="icbench-") as tmp:
        figures.update(_memory(Path(tmp), args.pages, args.zero_mb))
        figures.update(_per_member(Path(tmp), args.members))
    mb, ms, us = figures["peak_rss_mb"], figures["render_ms"], figures["scan_us"]
    rows = [
        (f"up, with a {args.zero_mb} MB zero member", f"{mb['with']['render']:,.0f} MB",
         f"peak of a render process; up {mb['with']['up']:,.0f} MB, database"
         f" {mb['with']['database']:,.0f} MB"),
        ("up, same library without it", f"{mb['without']['render']:,.0f} MB",
         f"baseline; up {mb['without']['up']:,.0f} MB, database"
         f" {mb['without']['database']:,.0f} MB"),
        ("ratio", f"{figures['render_peak_ratio']:.2f}",
         f"largest process of all: {figures['largest_process_ratio']:.2f}"),
        (f"render, {args.members:,}-member CBZ", f"{ms['archive']:.2f} ms/member",
         f"archive parsed {figures['archive_parses']} times"),
        ("render, same pictures as files", f"{ms['folder']:.2f} ms/member", "baseline"),
        ("ratio", f"{figures['render_ratio']:.2f}", ""),
        ("scan, the CBZ", f"{us['archive']:.1f} us/member", ""),
        ("scan, the folder", f"{us['folder']:.1f} us/member", "baseline"),
        ("ratio", f"{figures['scan_ratio']:.2f}", ""),
        ("one parse of its central directory", f"{figures['parse_ms']:,.0f} ms",
         "what every member cost when each reopened the archive"),
    ]  # fmt: skip
    report(rows, figures, args.json)
    return 0


# -- memory ---------------------------------------------------------------------------------


def _memory(tmp: Path, pages: int, zero_mb: int) -> dict[str, Any]:
    peaks: dict[str, dict[str, float]] = {}
    for case in ("without", "with"):
        lib = tmp / f"library-{case}"
        lib.mkdir()
        with zipfile.ZipFile(lib / "book.cbz", "w", zipfile.ZIP_DEFLATED) as archive:
            for n in range(pages):
                archive.writestr(f"p{n:03d}.jpg", _picture((1600, 1200), n))
            if case == "with":
                _zeros(archive, "zeros.jpg", zero_mb << 20)
        summary, peaks[case] = _up(tmp / f"data-{case}", lib)
        want = (2 * pages, 2 if case == "with" else 0)
        if (summary["generated"], summary["failed"]) != want:
            raise SystemExit(f"bench archive: up made {summary}, not {want}")
    return {
        "pages": pages,
        "peak_rss_mb": peaks,
        # The render processes read the member: with it streamed they should not grow by it.
        "render_peak_ratio": peaks["with"]["render"] / peaks["without"]["render"],
        "largest_process_ratio": peaks["with"]["largest"] / peaks["without"]["largest"],
    }


def _up(data: Path, lib: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Run `up --no-serve --json`; its summary, and the peak RSS (MB) of its processes: the
    largest of each kind (up itself, its database, its render processes) and of all."""
    env = embedded_env(str(data), drop=("MONGODB_", "RABBITMQ_", "IMAGECACHE_"))
    # Two render processes, whatever the machine: the member is read in one of them.
    env.update(PYTHONPATH=str(REPO), IMAGECACHE_WORKER_PROCESSES="2")
    command = [sys.executable, "-m", "ops.cli", "up", str(lib), "--no-serve", "--json"]
    seen: dict[int, tuple[str, float]] = {}  # pid -> (its kind, its peak RSS in MB)
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as up:
        while up.poll() is None:
            for pid, kind in _tree(up.pid):
                peak = _peak_mb(pid)
                if peak is not None:
                    seen[pid] = (kind, max(peak, seen.get(pid, ("", 0.0))[1]))
            time.sleep(POLL)
        out, err = up.communicate()
    if up.returncode != 0:
        raise SystemExit(f"bench archive: up failed:\n{err.decode()[-3000:]}")
    found = {"largest": max(peak for _, peak in seen.values())}
    for kind, peak in seen.values():
        if kind != "helper":
            found[kind] = max(peak, found.get(kind, 0.0))
    return orjson.loads(out), found


def _tree(top: int) -> Iterator[tuple[int, str]]:
    """`top` and its descendants, each with what it is: up, render, database or helper."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, todo = {top}, [top]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in family:
                family.add(child)
                todo.append(child)
    for pid in family:
        yield pid, _kind(pid, top, parents.get(pid, 0))


def _kind(pid: int, top: int, parent: int) -> str:
    if pid == top:
        return "up"
    command = _cmdline(pid)
    if "secantus" in command or "ops.dbserver" in command:
        return "database"
    # Render processes are forked by the forkserver, and look like it.
    return "render" if "forkserver" in _cmdline(parent) and parent != top else "helper"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _zeros(archive: zipfile.ZipFile, name: str, size: int) -> None:
    """A deflated member of `size` zero bytes, written as it streams."""
    block = bytes(1 << 20)
    with archive.open(name, "w", force_zip64=size > 0x7FFF0000) as out:
        for start in range(0, size, len(block)):
            out.write(block[: min(len(block), size - start)])


def _picture(size: tuple[int, int], n: int) -> bytes:
    buffer = io.BytesIO()
    base = Image.linear_gradient("L").resize(size)
    Image.merge("RGB", [base, base.rotate(90 * (n % 4), expand=False), base]).save(
        buffer, "JPEG", quality=85
    )
    return buffer.getvalue()


# -- time per member ------------------------------------------------------------------------


def _per_member(tmp: Path, members: int) -> dict[str, Any]:
    folder, path = tmp / "pictures", tmp / "huge.cbz"
    folder.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        for n in range(members):
            data = _tiny(n)
            (folder / f"p{n:06d}.jpg").write_bytes(data)
            archive.writestr(f"p{n:06d}.jpg", data)
    settings = Settings.from_env({})
    specs = list(DEFAULT_SPECS.values())
    tune_process()
    started = time.perf_counter()
    zipfile.ZipFile(path).close()
    parse = time.perf_counter() - started
    scan: dict[str, float] = {}
    render: dict[str, float] = {}
    parsed = ARCHIVES.parsed
    for kind, collection in (("folder", folder), ("archive", path)):
        started = time.perf_counter()
        listed = list(list_members(collection, kind, str(tmp)))
        scan[kind] = (time.perf_counter() - started) / len(listed) * 1e6
        refs = [SourceRef(str(collection), kind, m.path, str(tmp), m.size, m.mtime) for m in listed]
        started = time.perf_counter()
        for ref in refs:
            render_member(ref, specs, settings.max_pixels, settings.max_source_bytes)
        render[kind] = (time.perf_counter() - started) / len(refs) * 1000
    return {
        "scan_us": scan,
        "scan_ratio": scan["archive"] / scan["folder"],
        "render_ms": render,
        "render_ratio": render["archive"] / render["folder"],
        "archive_parses": ARCHIVES.parsed - parsed,
        "parse_ms": parse * 1000,
    }


def _tiny(n: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (n % 256, (n >> 8) % 256, 160)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()

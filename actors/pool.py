"""Rendering on every core: a process pool behind in-process actors (embedded mode).

Actor threads do the I/O (reading messages, writing files, appending events);
the CPU work of decoding, resizing and encoding runs in worker processes, so
one Python process is not held to one core by the GIL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from actors.reading import open_member
from actors.render import Rendered, render, unexpected
from actors.sources import SourceRef
from domain.errors import RenderError, TransientIOError
from domain.specs import RenditionSpec

log = logging.getLogger("imagecache.pool")


def render_member(
    ref: SourceRef, specs: Sequence[RenditionSpec], max_pixels: int, max_bytes: int
) -> list[Rendered]:
    """Open one image of a collection and render it (in this thread): the renditions, or a
    RenderError that says why not. Nothing else escapes, whatever the source holds."""
    try:
        with open_member(ref, max_bytes=max_bytes) as fp:
            return render(fp, specs, max_pixels=max_pixels)
    except RenderError:
        raise
    except MemoryError as exc:
        raise TransientIOError("ran out of memory while rendering") from exc
    except Exception as exc:
        raise unexpected(exc, "rendering") from exc


BLOCKS_MAX = 4  # freed 16 MB image blocks a rendering process keeps for reuse


def tune_process() -> None:
    """Prepare a rendering process: load Pillow's plugins once (their lazy loading is not
    thread-safe) and let Pillow reuse image memory blocks (+14% images/s measured here,
    at most 4 x 16 MB kept)."""
    from PIL import Image
    from PIL import _imaging as core

    Image.init()
    core.set_blocks_max(BLOCKS_MAX)


def _render_process(owner: int) -> None:
    """Initializer of a render process: tuned, and gone when its owner is gone (SIGKILL
    included), so a killed `up` leaves no orphaned render processes behind. Ctrl-C, which
    a terminal sends to the whole process group, is the owner's to handle: a render process
    ignores it (instead of dying mid-render with a KeyboardInterrupt traceback) and ends
    with its pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_process()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


class PoolRenderer:
    """Renders in a pool of `processes` worker processes; a crashed pool is replaced."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: children start clean, without the parent's threads and connections.
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(
            self._processes, mp_context=context, initializer=_render_process,
            initargs=(os.getpid(),),
        )  # fmt: skip

    def __call__(
        self, ref: SourceRef, specs: Sequence[RenditionSpec], max_pixels: int, max_bytes: int
    ) -> list[Rendered]:
        pool = self._pool
        try:
            future = pool.submit(render_member, ref, list(specs), max_pixels, max_bytes)
            return future.result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    log.error("a render process died (on %s?); starting a new pool", ref.member)
                    self._pool = self._new_pool()
            raise TransientIOError(f"the render process died while rendering {ref.member}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

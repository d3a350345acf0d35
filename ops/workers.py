"""`imagecache worker`: a supervisor of Dramatiq worker processes on RabbitMQ.

Each child process runs the actors with its own threads and connections. A
child that dies unexpectedly (a decoder crash, the OOM killer) is restarted;
its unacknowledged messages go back to RabbitMQ and run again.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("imagecache.workers")

RESTART_DELAY = 1.0


def child_command(threads: int) -> list[str]:
    return [sys.executable, "-m", "ops.cli", "worker", "--child", "--threads", str(threads)]


def supervise(processes: int, threads: int, stop: threading.Event) -> int:
    """Run `processes` worker children until `stop`; restart any that die; return 0."""
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(slot: int) -> None:
        children[slot] = subprocess.Popen(child_command(threads))
        log.info("worker process %d started (pid %d)", slot, children[slot].pid)

    for slot in range(processes):
        spawn(slot)
    while not stop.wait(0.5):
        for slot, child in list(children.items()):
            code = child.poll()
            if code is not None:
                log.warning(
                    "worker process %d (pid %d) exited with %s; restarting", slot, child.pid, code
                )
                time.sleep(RESTART_DELAY)
                spawn(slot)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in children.values():
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop in time; killing it", child.pid)
            child.kill()
    return 0

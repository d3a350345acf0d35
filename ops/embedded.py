"""The embedded MongoDB-wire server (SecantusDB), shared by the processes of one data folder.

WiredTiger allows one process per data folder, so the first imagecache process
starts the server and writes its address to `embedded.json`; later processes
(a CLI command while `up` runs) connect to that address instead.

Long-running commands (`up`, `serve`, workers) run the server as a child
process: it is pure Python, and in our own process it would share one GIL with
the actors and the projector. Short commands run it in process (0.1 s to start
instead of about 1.5 s). Either way it stops with its owner, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pymongo

from domain.errors import ServiceUnavailable

log = logging.getLogger("imagecache.embedded")

START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


def _answers(uri: str, timeout_ms: int = 1500) -> bool:
    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms
        )
        client.admin.command("ping")
        client.close()
        return True
    except pymongo.errors.PyMongoError:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _child_preexec() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), so no server leaks;
    and a process group of its own, so that Ctrl-C in a terminal (SIGINT to the foreground
    group; SecantusDB stops on it) leaves the database up until the parent has finished
    with it and stops it itself."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _waking_accept(uri: str) -> Iterator[None]:
    """While stopping a server, connect to its port now and then.

    SecantusDB's stop closes its listening socket and joins the accept thread with a 2 s
    timeout, but on Linux closing a socket does not wake a thread blocked in accept(): every
    stop took 2 s. A connection wakes it, and it then sees that it must stop.
    """
    address = urllib.parse.urlsplit(uri)
    host, port = address.hostname or "127.0.0.1", address.port
    done = threading.Event()

    def poke() -> None:
        while not done.wait(0.05):
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=0.2).close()

    thread = threading.Thread(target=poke, name="wake-accept", daemon=True)
    if port is not None:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread.is_alive():
            thread.join(timeout=1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """Start (or join) the embedded server of a data folder; `.uri` to connect."""

    def __init__(self, data_dir: Path, *, separate_process: bool = False) -> None:
        self._dir = data_dir
        self._marker = data_dir / "embedded.json"
        self._separate = separate_process
        self._server: Any = None
        self._child: subprocess.Popen[bytes] | None = None
        self.uri = ""

    @property
    def owner(self) -> bool:
        """Whether this process started the server (else it joined another process's)."""
        return self._server is not None or self._child is not None

    def __enter__(self) -> EmbeddedServer:
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._marker.exists():
            with contextlib.suppress(ValueError, OSError, KeyError):
                found = json.loads(self._marker.read_text())
                if _alive(int(found["pid"])) and _answers(found["uri"]):
                    self.uri = str(found["uri"])
                    return self
        try:
            import secantus  # noqa: F401  (only to say clearly when it is missing)
        except ImportError as exc:
            raise ServiceUnavailable(
                "no MONGODB_URI is set and the embedded server is not installed",
                hint="install the `embedded` extra (./ops/up does) or set MONGODB_URI",
            ) from exc
        storage = self._dir / "db"
        pid = self._start_child(storage) if self._separate else self._start_here(storage)
        tmp = self._marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "uri": self.uri}))
        tmp.replace(self._marker)
        log.info("embedded database on %s (data in %s)", self.uri, storage)
        return self

    def _start_here(self, storage: Path) -> int:
        from secantus import SecantusDBServer

        # replica_set_name=None turns the change log off: with it, writes slow down over time.
        self._server = SecantusDBServer(storage_path=str(storage), replica_set_name=None)
        try:
            self._server.__enter__()
        except Exception as exc:
            raise ServiceUnavailable(
                f"the embedded database in {storage} did not start: {exc}"
            ) from exc
        self.uri = str(self._server.uri)
        return os.getpid()

    def _start_child(self, storage: Path) -> int:
        port = _free_port()
        config = self._dir / "secantusd.toml"
        config.touch()  # an empty config: never pick up one from elsewhere on the machine
        log_path = self._dir / "db.log"
        code = "import sys; from secantus.cli import main; sys.exit(main())"
        args = [sys.executable, "-c", code, "--standalone", "--host", "127.0.0.1",
                "--port", str(port), "--storage-path", str(storage), "--config", str(config),
                "--log-level", "WARNING"]  # fmt: skip
        with open(log_path, "ab") as out:
            self._child = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_child_preexec
            )
        self.uri = f"mongodb://127.0.0.1:{port}/"
        deadline = time.monotonic() + START_TIMEOUT
        # Wait for the port with plain connects every 20 ms, then ask the server once: a
        # client's server selection retries a refused connection only every 500 ms.
        while not _listening(port) or not _answers(self.uri, timeout_ms=500):
            if self._child.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                self._stop_child()
                raise ServiceUnavailable(
                    f"the embedded database in {storage} did not start: {tail.strip()[-500:]}",
                    hint=f"see {log_path}",
                )
            time.sleep(0.02)
        return self._child.pid

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            with _waking_accept(self.uri):
                child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.error("the embedded database did not stop in 30 s; killing it")
            child.kill()
            child.wait()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.owner:
            with contextlib.suppress(OSError):
                self._marker.unlink()
        if self._server is not None:
            with _waking_accept(self.uri):
                self._server.__exit__(et, e, tb)
            self._server = None
        self._stop_child()

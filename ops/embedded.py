"""The embedded MongoDB-wire server (SecantusDB), shared by the processes of one data folder.

WiredTiger allows one process per data folder, so the first imagecache process
starts the server and writes its address to `embedded.json`; later processes
(a CLI command while `up` runs) connect to that address instead.

Long-running commands (`up`, `serve`, workers) run the server as a child
process: it is pure Python, and in our own process it would share one GIL with
the actors and the projector. Short commands run it in process (0.1 s to start
instead of about 1.5 s). Either way it stops with its owner, SIGKILL included.

It admits only the data folder's processes (see `ops.dbauth`, `ops.dbserver`): they read
the credentials from `db-credentials.json` (0600) in the data folder (0700); the address
file holds no secret, and is 0600 too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pymongo

from domain.errors import ServiceUnavailable
from ops import dbauth
from ops.dbserver import PRIVATE_UMASK, ServerThread, waking_accept
from ops.private import make_private_folder, open_private, tighten_tree, write_private

log = logging.getLogger("imagecache.embedded")

START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1
_ROOT = Path(__file__).resolve().parents[1]  # holds the `ops` package the child runs


def _answers(address: str, timeout_ms: int = 1500) -> bool:
    """Whether a server answers at `address`: `ping` needs no credentials."""
    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            address, serverSelectionTimeoutMS=timeout_ms
        )
        client.admin.command("ping")
        client.close()
        return True
    except pymongo.errors.PyMongoError:
        return False


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
    group) leaves the database up until the parent has finished with it and stops it
    itself."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedServer:
    """Start (or join) the embedded server of a data folder; `.uri` (with the credentials)
    to connect, `.address` (without) to show."""

    def __init__(self, data_dir: Path, *, separate_process: bool = False) -> None:
        self._dir = data_dir
        self._marker = data_dir / "embedded.json"
        self._credentials = data_dir / dbauth.CREDENTIALS_FILE
        self._separate = separate_process
        self._thread: ServerThread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.uri = ""

    @property
    def owner(self) -> bool:
        """Whether this process started the server (else it joined another process's)."""
        return self._thread is not None or self._child is not None

    def __enter__(self) -> EmbeddedServer:
        try:
            make_private_folder(self._dir)
        except OSError as exc:
            raise ServiceUnavailable(
                f"cannot make the data folder {self._dir} private: {exc.strerror}",
                hint="set IMAGECACHE_DATA to a folder this user owns",
            ) from None
        if self._marker.exists():
            with contextlib.suppress(ValueError, OSError, KeyError):
                found = json.loads(self._marker.read_text())
                if _alive(int(found["pid"])) and _answers(found["uri"]):
                    self.address = str(found["uri"])
                    self.uri = dbauth.load(self._credentials).uri(self.address)
                    return self
        try:
            import secantus  # noqa: F401  (only to say clearly when it is missing)
        except ImportError as exc:
            raise ServiceUnavailable(
                "no MONGODB_URI is set and the embedded server is not installed",
                hint="install the `embedded` extra (./ops/up does) or set MONGODB_URI",
            ) from exc
        storage = self._dir / "db"
        tighten_tree(storage)  # made by an older version, or left by a killed process
        creds = dbauth.load_or_create(self._credentials)
        pid = self._start_child(storage) if self._separate else self._start_here(storage, creds)
        self.uri = creds.uri(self.address)
        marker = {"pid": pid, "uri": self.address}  # no secret: the address alone
        write_private(self._marker, json.dumps(marker).encode())
        log.info("embedded database on %s (data in %s)", self.address, storage)
        return self

    def _start_here(self, storage: Path, creds: dbauth.DbCredentials) -> int:
        self._thread = ServerThread(storage, creds)
        try:
            self.address = self._thread.start(START_TIMEOUT)
        except Exception as exc:
            self._thread = None
            raise ServiceUnavailable(
                f"the embedded database in {storage} did not start: {exc}"
            ) from exc
        return os.getpid()

    def _start_child(self, storage: Path) -> int:
        log_path = self._dir / "db.log"
        ready, ready_w = os.pipe()
        args = [sys.executable, "-m", "ops.dbserver", "--storage", str(storage),
                "--credentials", str(self._credentials), "--ready-fd", str(ready_w)]  # fmt: skip
        # The child runs this checkout's `ops`, wherever it was started from.
        path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
        out = open_private(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            self._child = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_child_preexec,
                pass_fds=(ready_w,), umask=PRIVATE_UMASK, env={**os.environ, "PYTHONPATH": path},
            )  # fmt: skip
        finally:
            os.close(out)
            os.close(ready_w)
        try:
            port = self._read_port(ready)
        finally:
            os.close(ready)
        if port is None:
            tail = log_path.read_text(errors="replace")[-2000:]
            self._stop_child()
            raise ServiceUnavailable(
                f"the embedded database in {storage} did not start: {tail.strip()[-500:]}",
                hint=f"see {log_path}",
            )
        self.address = f"mongodb://127.0.0.1:{port}/"
        return self._child.pid if self._child is not None else 0

    def _read_port(self, ready: int) -> int | None:
        """The port the child writes once it listens; None if it stopped or took too long."""
        deadline = time.monotonic() + START_TIMEOUT
        got = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([ready], [], [], 0.5)
            if readable:
                chunk = os.read(ready, 64)
                if not chunk:  # the child closed it: it stopped without listening
                    return None
                got += chunk
                if got.endswith(b"\n"):
                    return int(got)
        return None

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            with waking_accept(self.address):
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
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
            if not thread.private_umask:  # the files WiredTiger made meanwhile (not Linux)
                tighten_tree(self._dir / "db")
        self._stop_child()

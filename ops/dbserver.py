"""The embedded SecantusDB server, authenticated from its first moment and private on disk.

The user is written into the storage before the socket is bound: there is no moment at
which the server listens without authentication. Whatever the server creates on disk is
0600 (0700 for folders): it runs under umask 077, in a process of its own
(`python -m ops.dbserver`, which `ops.embedded` starts for long-running commands), or in a
thread of its own in this process, whose umask (Linux: unshare(CLONE_FS)) is not the
process's, so that cache images keep theirs.

The child process reads the credentials from their 0600 file: argv and the environment,
which other users can read in /proc, carry only paths.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ops.dbauth import DbCredentials, load, provision

log = logging.getLogger("imagecache.embedded")

PRIVATE_UMASK = 0o077
_CLONE_FS = 0x200


def open_server(storage: Path, creds: DbCredentials) -> Any:
    """A started SecantusDBServer on `storage`, on a free port of 127.0.0.1, that admits only
    `creds`; its user is set up before it listens."""
    from secantus import SecantusDBServer

    # replica_set_name=None turns the change log off (with it, writes slow down over time);
    # no test commands (failpoints): the daemon's default, and nothing here uses them.
    server = SecantusDBServer(
        host="127.0.0.1", port=0, storage_path=str(storage), replica_set_name=None,
        require_auth=True, enable_test_commands=False,
    )  # fmt: skip
    try:
        removed = provision(server.storage, creds)
        if removed:
            log.warning(
                "removed database users that only someone without credentials could have"
                " added, while the embedded database had no authentication: %s",
                ", ".join(removed),
            )
        server.start()
    except BaseException:
        with contextlib.suppress(Exception):
            server.stop()
        raise
    return server


@contextlib.contextmanager
def waking_accept(address: str) -> Iterator[None]:
    """While stopping a server, connect to its port now and then.

    SecantusDB's stop closes its listening socket and joins the accept thread with a 2 s
    timeout, but on Linux closing a socket does not wake a thread blocked in accept(): every
    stop took 2 s. A connection wakes it, and it then sees that it must stop.
    """
    parts = urllib.parse.urlsplit(address)
    host, port = parts.hostname or "127.0.0.1", parts.port
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


def stop_server(server: Any) -> None:
    """Stop a server that `open_server` started, promptly."""
    with waking_accept(server.uri):
        server.stop()


def private_umask_for_this_thread() -> bool:
    """Give this thread (and the threads it starts) umask 077, leaving the process's alone;
    False where the system cannot (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_FS) != 0:
            return False
    except (OSError, AttributeError):
        return False
    os.umask(PRIVATE_UMASK)
    return True


class ServerThread:
    """The server in a thread of this process that opens, serves and closes it: WiredTiger's
    files are made under that thread's umask, and SecantusDB closes cleanly only from a
    thread that used the storage."""

    def __init__(self, storage: Path, creds: DbCredentials) -> None:
        self._storage, self._creds = storage, creds
        self._ready, self._stop = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self.server: Any = None
        self.private_umask = False
        self._thread = threading.Thread(target=self._run, name="embedded-db", daemon=True)

    def _run(self) -> None:
        try:
            self.private_umask = private_umask_for_this_thread()
            self.server = open_server(self._storage, self._creds)
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        self._stop.wait()
        stop_server(self.server)

    def start(self, timeout: float) -> str:
        """Start the server; its address (mongodb://127.0.0.1:PORT/). Raises what kept it
        from starting."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self._stop.set()  # it stops as soon as it has started
            raise TimeoutError(f"the database did not start in {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        return str(self.server.uri)

    def stop(self) -> None:
        """Stop the server and wait until its storage is closed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    """The child process: serve `storage` until SIGTERM, writing the port to `--ready-fd`."""
    parser = argparse.ArgumentParser(prog="python -m ops.dbserver")
    parser.add_argument("--storage", type=Path, required=True)
    parser.add_argument("--credentials", type=Path, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args(argv)
    os.umask(PRIVATE_UMASK)  # as ops.embedded starts it; again, for anyone who runs it by hand
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = open_server(args.storage, load(args.credentials))
    except Exception as exc:
        print(f"the embedded database in {args.storage} did not start: {exc}", file=sys.stderr)
        return 1
    with os.fdopen(args.ready_fd, "w") as ready:
        ready.write(f"{server.port}\n")
    stop.wait()
    stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())

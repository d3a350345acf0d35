"""The embedded MongoDB-wire server (SecantusDB), shared by the processes of one data folder.

WiredTiger allows one process per data folder, so the first imagecache process
starts the server and writes its address to `embedded.json`; later processes
(a CLI command while `up` runs) connect to that address instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import pymongo

from domain.errors import ServiceUnavailable

log = logging.getLogger("imagecache.embedded")


def _answers(uri: str) -> bool:
    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=1500)
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


class EmbeddedServer:
    """Start (or join) the embedded server of a data folder; `.uri` to connect."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._marker = data_dir / "embedded.json"
        self._server: Any = None
        self.uri = ""

    def __enter__(self) -> EmbeddedServer:
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._marker.exists():
            with contextlib.suppress(ValueError, OSError):
                found = json.loads(self._marker.read_text())
                if _alive(int(found["pid"])) and _answers(found["uri"]):
                    self.uri = str(found["uri"])
                    return self
        try:
            from secantus import SecantusDBServer
        except ImportError as exc:
            raise ServiceUnavailable(
                "no MONGODB_URI is set and the embedded server is not installed",
                hint="install the `embedded` extra (./ops/up does) or set MONGODB_URI",
            ) from exc
        storage = self._dir / "db"
        # replica_set_name=None turns the change log off: with it, writes slow down over time.
        self._server = SecantusDBServer(storage_path=str(storage), replica_set_name=None)
        try:
            self._server.__enter__()
        except Exception as exc:
            raise ServiceUnavailable(
                f"the embedded database in {storage} did not start: {exc}"
            ) from exc
        self.uri = str(self._server.uri)
        tmp = self._marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "uri": self.uri}))
        tmp.replace(self._marker)
        log.info("embedded database on %s (data in %s)", self.uri, storage)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._marker.unlink()
            self._server.__exit__(et, e, tb)
            self._server = None

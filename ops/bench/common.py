"""Shared pieces of the benchmarks: a throwaway database and result printing."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pymongo
from pymongo.database import Database

from ops.embedded import EmbeddedServer


@contextlib.contextmanager
def scratch_db() -> Iterator[Database[Any]]:
    """A fresh database on MONGODB_URI, or on an embedded server (its own process) in a
    temporary folder."""
    with contextlib.ExitStack() as stack:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icbench-")))
            # A process of its own, as `up` and the workers run it: never sharing our GIL.
            uri = stack.enter_context(EmbeddedServer(tmp, separate_process=True)).uri
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
        name = f"bench_{uuid.uuid4().hex[:10]}"
        try:
            yield client[name]
        finally:
            client.drop_database(name)
            client.close()


def embedded_env(data: str, *, drop: tuple[str, ...] = ("MONGODB_", "RABBITMQ_")) -> dict[str, str]:
    """This environment for a run on an embedded database in `data`: no MONGODB_URI, no
    RabbitMQ (and with IMAGECACHE_ in `drop`, no other imagecache setting either)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["IMAGECACHE_DATA"] = data
    return env


def report(rows: Sequence[tuple[str, str, str]], figures: dict[str, Any], as_json: bool) -> None:
    """Print a table of (figure, value, target or baseline), or the figures as one JSON object."""
    if as_json:
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")

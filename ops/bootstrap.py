"""The one place that wires imagecache together: settings in, a running App out."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymongo
from pymongo.database import Database

from actors.broker import Actors, declare, make_broker, redact, start_worker
from actors.files import LocalFileStore
from actors.generate import Generator
from domain.errors import InvalidInput, ServiceUnavailable
from ops.embedded import EmbeddedServer
from ops.settings import Settings
from projections.event_log import MongoEventLog
from projections.projector import Projector
from projections.readmodels import ReadModels

log = logging.getLogger("imagecache")


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class App:
    """Everything a command, the API, a worker or the scheduler uses."""

    settings: Settings
    client: pymongo.MongoClient[Any]
    db: Database[Any]
    events: MongoEventLog
    read: ReadModels
    projector: Projector
    files: LocalFileStore
    clock: SystemClock
    actors: Actors
    generator: Generator
    # Embedded, and the database was started by another imagecache process of this data
    # folder (`up` or `serve`), whose actors may be running jobs right now.
    shared: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _workers: list[Any] = field(default_factory=list)
    _pool: Any = None

    def start_projector(self) -> None:
        """Keep the projections caught up in a background thread."""
        t = threading.Thread(
            target=self.projector.run_forever, args=(self._stop,), name="projector", daemon=True
        )
        t.start()
        self._threads.append(t)

    def start_folder_projector(self, idle: float = 1.0) -> None:
        """Keep just `folder_stats` caught up, once a second: what a worker machine needs to
        choose cache folders by what is in them when no serve or scheduler projects. (Only
        that projection, and slowly: the others are projected by serve, up or the scheduler,
        and every projector pass is load on the database the workers write to.)"""
        projector = Projector(
            self.events, self.db, self.clock, projections=("folder_stats",),
            gap_timeout=self.settings.gap_timeout,
        )  # fmt: skip
        t = threading.Thread(
            target=projector.run_forever, args=(self._stop, idle), name="folder-projector",
            daemon=True,
        )  # fmt: skip
        t.start()
        self._threads.append(t)

    def start_worker(self, threads: int | None = None) -> None:
        """Run generation actors in this process; in embedded mode render on every core."""
        if threads is None and self.settings.rabbitmq_url is None and self._pool is None:
            processes = self.settings.worker_processes
            if processes > 1:
                from actors.pool import PoolRenderer

                self._pool = PoolRenderer(processes)
                self.generator.renderer = self._pool
            # Threads do the I/O while the pool renders: two per process keep it busy.
            threads = 2 * processes
        self._workers.append(
            start_worker(self.actors.broker, threads or self.settings.worker_threads)
        )

    def close(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.stop()
        for t in self._threads:
            t.join(timeout=5)
        if self._pool is not None:
            self._pool.close()
        self.actors.broker.close()
        self.client.close()


def connect(uri: str, database: str) -> tuple[pymongo.MongoClient[Any], Database[Any]]:
    """A client and database, or ServiceUnavailable with what to do."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=10_000, tz_aware=False
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        client.close()
        reason = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0][:300]
        raise ServiceUnavailable(
            f"MongoDB at {redact(uri)} did not answer: {reason}",
            hint="start it, or correct MONGODB_URI (without it, imagecache runs its own"
            " embedded database: a different, empty one)",
        ) from exc
    return client, client[database]


@contextlib.contextmanager
def bootstrap(settings: Settings, *, long_running: bool = False) -> Iterator[App]:
    """Start or join the services of `settings` and yield a wired App; stop them on exit.

    `long_running` commands get the embedded database in a process of its own."""
    with contextlib.ExitStack() as stack:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the data folder {settings.data_dir}: {exc.strerror}",
                hint="set IMAGECACHE_DATA to a folder this user can write",
            ) from None
        uri = settings.mongodb_uri
        shared = False
        if uri is None:
            server = EmbeddedServer(settings.data_dir, separate_process=long_running)
            uri = stack.enter_context(server).uri
            shared = not server.owner
        client, db = connect(uri, settings.database)
        clock = SystemClock()
        events = MongoEventLog(db, clock)
        events.ensure_indexes()
        read = ReadModels(db)
        projector = Projector(events, db, clock, gap_timeout=settings.gap_timeout)
        projector.upgrade()  # before the indexes: a rebuilt projection's were dropped with it
        read.ensure_indexes()
        files = LocalFileStore()
        generator = Generator(events, read, files, clock, max_pixels=settings.max_pixels)
        try:
            broker = make_broker(
                settings.rabbitmq_url,
                confirm_delivery=settings.confirm_delivery,
                check=long_running,
            )
        except Exception:
            client.close()
            raise
        actors = declare(broker, lambda: generator, settings.queue)
        app = App(
            settings, client, db, events, read, projector, files, clock, actors, generator, shared
        )
        try:
            yield app
        finally:
            app.close()

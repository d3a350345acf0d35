"""The one place that wires imagecache together: settings in, a running App out."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymongo
from pymongo.database import Database

from actors.broker import Actors, declare, make_broker, redact, short_reason, start_worker
from actors.files import LocalFileStore
from actors.generate import Generator
from domain.errors import InvalidInput, ServiceUnavailable
from ops.embedded import EmbeddedServer
from ops.private import make_private_folder, open_private
from ops.settings import Settings
from projections.event_log import MongoEventLog
from projections.projector import Projector
from projections.readmodels import ReadModels

log = logging.getLogger("imagecache")

RUNNER_LOCK = "runner.lock"
PICKUP_EVERY = 2.0  # seconds: how soon the runner takes up a job another command planned
PAUSED_EVERY = 60.0  # seconds: how often it looks whether a job paused for space can go on
_AUTH_FAILED = 18  # MongoDB's error code


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
    # Fully embedded (neither MONGODB_URI nor RABBITMQ_URL), one process of a data folder
    # runs the actors: the runner, which holds `runner.lock` (flock: let go even on SIGKILL).
    # It also picks up, every PICKUP_EVERY seconds, the unfinished jobs it has no message of:
    # planned by another command, or left by a process that died. `picked_up`: its first.
    picked_up: dict[str, int] = field(default_factory=dict)
    # Held while a job is planned or resumed and its messages published, and by each pick-up
    # pass: a pass between the job's events and its messages would send them twice.
    publishing: threading.RLock = field(default_factory=threading.RLock)
    _runner_lock: Any = None
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

    @property
    def embedded(self) -> bool:
        """Neither MONGODB_URI nor RABBITMQ_URL: everything on this machine, in process."""
        return self.settings.mongodb_uri is None and self.settings.rabbitmq_url is None

    @property
    def runner(self) -> bool:
        """Whether this process runs the work of its data folder (embedded)."""
        return self._runner_lock is not None

    def runner_pid(self) -> int | None:
        """The process that runs the actors of this data folder, if one does (embedded).

        Read from the lock file, never by taking the lock: a process becoming the runner at
        that moment would find it taken, and believe another one runs."""
        try:
            pid = int((self.settings.data_dir / RUNNER_LOCK).read_text().strip() or 0)
            if pid:
                os.kill(pid, 0)
                return pid
        except (OSError, ValueError):
            pass
        return None

    def _become_runner(self) -> bool:
        fd = open_private(self.settings.data_dir / RUNNER_LOCK, os.O_RDWR | os.O_APPEND)
        f = os.fdopen(fd, "a+")  # held open: the flock lasts as long as this file
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._runner_lock = f
        return True

    def start_worker(self, threads: int | None = None) -> bool:
        """Run generation actors in this process; in embedded mode render on every core.

        Embedded, only the runner of the data folder runs them: False when another process
        is the runner (it runs what this one plans)."""
        if self.embedded and self._runner_lock is None and not self._become_runner():
            self.actors.discard = True  # the runner takes up what this process plans
            return False
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
        if self.embedded and not any(t.name == "pickup" for t in self._threads):
            from ops.maintenance import remove_partials

            self.projector.catch_up()
            remove_partials(self)  # what a killed runner left half written, as recover does
            self.picked_up = self.pick_up()
            t = threading.Thread(target=self._pick_up_forever, name="pickup", daemon=True)
            t.start()
            self._threads.append(t)
        return True

    def pick_up(self, *, paused: bool = True) -> dict[str, int]:
        """Re-send what is left of the unfinished jobs this process has no message of (and,
        with `paused`, resume jobs paused for lack of space if there is room again)."""
        from ops.maintenance import resume_left

        in_flight = self.actors.in_flight
        assert in_flight is not None
        with self.publishing:
            resumed = resume_left(self, busy=lambda doc: in_flight.busy(doc["_id"]), paused=paused)
        if any(resumed.values()):
            log.info("picked up %d jobs: %d images left", len(resumed), sum(resumed.values()))
        return resumed

    def _pick_up_forever(self) -> None:
        last_paused = time.monotonic()
        every = PICKUP_EVERY
        while not self._stop.wait(every):
            # Paused jobs as seldom as the scheduler's recover: a folder that is just about
            # full must not pause and resume a job every few seconds.
            paused = time.monotonic() - last_paused >= PAUSED_EVERY
            started = time.monotonic()
            try:
                self.pick_up(paused=paused)
            except pymongo.errors.ConnectionFailure as exc:
                log.warning(
                    "picking up unfinished jobs: the database is unreachable (%s)",
                    short_reason(exc),
                )
            except Exception:
                log.warning("picking up unfinished jobs failed; trying again", exc_info=True)
            if paused:
                last_paused = time.monotonic()
            # A pass reads every job's state: with a long history, pass less often, so that
            # it never takes more than a twentieth of the time (of the database, mostly).
            every = max(PICKUP_EVERY, 20 * (time.monotonic() - started))

    def close(self) -> None:
        self._stop.set()
        self.generator.stopping.set()  # batches end between images: no wait for a whole one
        for worker in self._workers:
            worker.stop()
        for t in self._threads:
            t.join(timeout=5)
        if self._pool is not None:
            self._pool.close()
        if self._runner_lock is not None:
            with contextlib.suppress(OSError):
                self._runner_lock.seek(0)
                self._runner_lock.truncate()  # no pid of a process that is gone
            self._runner_lock.close()  # lets go of the flock
            self._runner_lock = None
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
        if isinstance(exc, pymongo.errors.OperationFailure) and exc.code == _AUTH_FAILED:
            raise ServiceUnavailable(
                f"MongoDB at {redact(uri)} refused the credentials: {short_reason(exc)}",
                hint="correct the user and password in MONGODB_URI; without it, stop every"
                " imagecache process of this data folder (an older version's too) and start"
                " again",
            ) from None
        raise ServiceUnavailable(
            f"MongoDB at {redact(uri)} did not answer: {short_reason(exc)}",
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
            make_private_folder(settings.data_dir)  # 0700: its state is for its processes only
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the data folder {settings.data_dir}, or make it private:"
                f" {exc.strerror}",
                hint="set IMAGECACHE_DATA to a folder this user can write (and owns)",
            ) from None
        uri = settings.mongodb_uri
        if uri is None:
            server = EmbeddedServer(settings.data_dir, separate_process=long_running)
            uri = stack.enter_context(server).uri
        client, db = connect(uri, settings.database)
        clock = SystemClock()
        events = MongoEventLog(db, clock)
        events.ensure_indexes()
        read = ReadModels(db)
        projector = Projector(events, db, clock, gap_timeout=settings.gap_timeout)
        projector.upgrade()  # before the indexes: a rebuilt projection's were dropped with it
        read.ensure_indexes()
        files = LocalFileStore()
        generator = Generator(
            events, read, files, clock, max_pixels=settings.max_pixels,
            max_source_bytes=settings.max_source_bytes,
        )  # fmt: skip
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
        app = App(settings, client, db, events, read, projector, files, clock, actors, generator)
        try:
            yield app
        finally:
            app.close()

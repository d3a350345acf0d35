"""Dramatiq wiring: the broker (RabbitMQ, or in-process), the actors, the in-process worker.

Actors are declared against a broker passed in, so nothing connects at import.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dramatiq
import pymongo.errors
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries

from actors.generate import Generator
from domain.errors import ServiceUnavailable

log = logging.getLogger("imagecache.broker")

QUEUE = "imagecache"
MAX_RETRIES = 5
RESEND_AFTER = 30.0  # seconds before the runner re-sends a job whose messages it sent itself


def redact(url: str) -> str:
    """A URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def make_broker(
    rabbitmq_url: str | None, *, confirm_delivery: bool = False, check: bool = True
) -> dramatiq.Broker:
    """RabbitMQ when a URL is given; else an in-process broker (embedded mode).

    With `check` it connects at once, so a long-running process with a wrong URL fails at
    start, clearly, not mid-job; without, it connects on first use (a command that only
    reads never needs the broker, and works while it is down)."""
    broker: dramatiq.Broker
    if rabbitmq_url:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=confirm_delivery)
        if check:
            try:
                _ = broker.connection
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc or 'connection refused or timed out'}"
                raise ServiceUnavailable(
                    f"RabbitMQ at {redact(rabbitmq_url)} did not answer ({reason})",
                    hint="start it (ops/services/rabbitmq start DIR), or correct RABBITMQ_URL",
                ) from exc
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(CurrentMessage())
    return broker


class InFlight(dramatiq.Middleware):
    """Per job, the messages this process sent and has not finished with (embedded mode).

    A message is finished when it is processed, skipped, or failed for good; a retry keeps
    it in flight. A job with none in flight, yet unfinished, is one that nothing here runs:
    planned by another command, or left by a process that died."""

    def __init__(self, resend_after: float = RESEND_AFTER) -> None:
        self._lock = threading.Lock()
        self._count: Counter[str] = Counter()
        self._sent_at: dict[str, float] = {}
        self.resend_after = resend_after

    def sent(self, message: dict[str, Any]) -> None:
        job = str(message.get("job_id"))
        with self._lock:
            self._count[job] += 1
            self._sent_at[job] = time.monotonic()

    def busy(self, job_id: str) -> bool:
        """Whether this process still has messages of the job, or sent some only lately: a
        batch that failed for good (the database away) is sent again, but not at once."""
        with self._lock:
            if self._count[job_id] > 0:
                return True
            sent = self._sent_at.get(job_id)
            return sent is not None and time.monotonic() - sent < self.resend_after

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:  # fmt: skip
        if exception is None or message.failed:
            self._done(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._done(message)

    def _done(self, message: Any) -> None:
        job = str(message.args[0].get("job_id")) if message.args else ""
        with self._lock:
            self._count[job] -= 1
            if self._count[job] <= 0:
                del self._count[job]


@dataclass
class Actors:
    """The declared actors and how to publish to them."""

    broker: dramatiq.Broker
    generate_batch: dramatiq.Actor[[dict[str, Any]], None]
    in_flight: InFlight | None = None  # in process only: what this process still has to do
    # Embedded, in a process that is not the runner of its data folder: nothing here would
    # ever run these messages, and the runner takes up the jobs from the log.
    discard: bool = False

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """Send generation messages, one per batch of images."""
        if self.discard:
            return
        for message in messages:
            if self.in_flight is not None:
                self.in_flight.sent(message)  # before: a worker thread may finish it at once
            self.generate_batch.send(message)


def short_reason(exc: BaseException, limit: int = 300) -> str:
    """A connection error's first line, without pymongo's timeouts and topology dump."""
    text = str(exc).split("\n", 1)[0].split(", Timeout:", 1)[0]
    text = text.split(" (configured timeouts", 1)[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def declare(
    broker: dramatiq.Broker, generator: Callable[[], Generator], queue: str = QUEUE
) -> Actors:
    """Declare the actors on `broker`; `generator` gives the worker-side handler lazily."""
    dramatiq.set_broker(broker)

    def generate_batch(message: dict[str, Any]) -> None:
        current = CurrentMessage.get_current_message()
        retries = int(current.options.get("retries", 0)) if current else MAX_RETRIES
        try:
            generator().run(message, final_attempt=retries >= MAX_RETRIES)
        except pymongo.errors.ConnectionFailure as exc:
            # The database is away: one line, not dramatiq's traceback for every message.
            # Retried with backoff; what is still undone when retries run out, recovery
            # re-sends (the job's images are in the log, not in this message).
            log.warning(
                "job %s: the database is unreachable (%s); batch retried later (attempt %d)",
                message.get("job_id"), short_reason(exc), retries + 1,
            )  # fmt: skip
            raise dramatiq.Retry(short_reason(exc)) from None

    decorate = dramatiq.actor(
        broker=broker,
        actor_name="generate_batch",
        queue_name=queue,
        max_retries=MAX_RETRIES,
        min_backoff=1_000,
        max_backoff=60_000,
        time_limit=15 * 60 * 1000,
    )
    in_flight = None
    if isinstance(broker, StubBroker):
        in_flight = InFlight()
        # Before Retries in the list: "after" hooks run in reverse order, so InFlight's runs
        # after Retries has marked a message that ran out of retries as failed.
        broker.add_middleware(in_flight, before=Retries)
    return Actors(broker, decorate(generate_batch), in_flight)


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    """Run actors in this process with `threads` worker threads until `.stop()`."""
    from actors.pool import tune_process

    tune_process()  # before the threads start
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
    worker.start()
    return worker

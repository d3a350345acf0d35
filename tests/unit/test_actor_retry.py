"""The generation actor when the database is away: one log line and a retry, no traceback."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pymongo.errors
import pytest

from actors.broker import declare, make_broker


class _Flaky:
    """A generator whose first run finds the database unreachable."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def run(self, message: dict[str, Any], *, final_attempt: bool) -> None:
        self.calls.append(final_attempt)
        if len(self.calls) == 1:
            raise pymongo.errors.ServerSelectionTimeoutError(
                "127.0.0.1:1: [Errno 111] Connection refused, Timeout: 30s, Topology Description:"
                " <TopologyDescription id: 1, topology_type: Unknown, servers: [...]>"
            )


def test_an_unreachable_database_retries_the_batch_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the actor on an in-process broker, with a generator that fails once
    broker = make_broker(None)
    flaky = _Flaky()
    actors = declare(broker, lambda: flaky, "retry-test")  # type: ignore[arg-type,return-value]
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        # When a batch is sent
        with caplog.at_level(logging.INFO):
            actors.publish([{"job_id": "j1", "items": []}])
            broker.join("retry-test", timeout=30_000)
            worker.join()
    finally:
        worker.stop()
        broker.close()

    # Then it ran twice (retried, not failed), and the log says so once, without a traceback
    assert flaky.calls == [False, False]
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.exc_info is None
    assert record.getMessage() == (
        "job j1: the database is unreachable (127.0.0.1:1: [Errno 111] Connection refused);"
        " batch retried later (attempt 1)"
    )


class _Broken:
    """A generator that always fails, as when the database stays away."""

    def run(self, message: dict[str, Any], *, final_attempt: bool) -> None:
        raise RuntimeError("always")


def test_a_batch_that_fails_for_good_is_no_longer_in_flight() -> None:
    # Given the actor on an in-process broker, whose batches always fail, and no retries
    broker = make_broker(None)
    actors = declare(broker, lambda: _Broken(), "failing-test")  # type: ignore[arg-type,return-value]
    in_flight = actors.in_flight
    assert in_flight is not None
    in_flight.resend_after = 0.0
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        # When a batch is sent and fails for good
        message = {"job_id": "j2", "items": []}
        in_flight.sent(message)
        assert in_flight.busy("j2")
        actors.generate_batch.send_with_options(args=(message,), max_retries=0)
        broker.join("failing-test", timeout=30_000, fail_fast=False)
        worker.join()
    finally:
        worker.stop()
        broker.close()

    # Then the job has nothing in flight here: the runner's pick-up sends it again
    assert not in_flight.busy("j2")


def test_a_process_that_is_not_the_runner_publishes_nothing() -> None:
    broker = make_broker(None)
    actors = declare(broker, lambda: _Broken(), "discard-test")  # type: ignore[arg-type,return-value]
    actors.discard = True
    actors.publish([{"job_id": "j3", "items": []}])
    assert broker.queues.get("discard-test") is None or broker.queues["discard-test"].qsize() == 0
    assert actors.in_flight is not None and not actors.in_flight.busy("j3")
    broker.close()

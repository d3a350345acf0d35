"""Fixtures for the real services that ./ops/test starts.

Without them a test skips on a laptop, but fails in CI or under ./ops/test
(IMAGECACHE_REQUIRE_SERVICES=1), so a missing service can never pass silently.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from ops.shared import shared_dir


def _services_required() -> bool:
    """True when a missing service must fail the run instead of skipping."""
    return (
        os.environ.get("IMAGECACHE_REQUIRE_SERVICES") == "1"
        or os.environ.get("CI", "").lower() == "true"
    )


def _require_env(name: str) -> str:
    """Return the environment variable NAME, or skip/fail the test that needs it."""
    value = os.environ.get(name, "")
    if value:
        return value
    message = f"{name} is not set: run the tests through ./ops/test, which starts the services"
    if _services_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """AMQP URL of the test RabbitMQ node."""
    return _require_env("RABBITMQ_URL")


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    """MongoDB URI of the test SecantusDB daemon."""
    return _require_env("MONGODB_URI")


@pytest.fixture(scope="session")
def services_dir() -> Path:
    """Folder holding rabbitmq/ and mongo/, for ops/services/* restart in tests."""
    return Path(_require_env("IMAGECACHE_SERVICES_DIR"))


@pytest.fixture
def mongo_db(mongodb_uri: str) -> Iterator[Database[dict[str, Any]]]:
    """A fresh database with a random name, dropped after the test."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        try:
            client.drop_database(name)
        finally:
            client.close()


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """The shared image corpus (shared/corpus beside the repository, see ops.shared)."""
    corpus = shared_dir() / "corpus"
    if not corpus.is_dir():
        message = f"no image corpus at {corpus}: clone the repository beside shared/"
        if _services_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return corpus

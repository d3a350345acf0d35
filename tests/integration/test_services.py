"""The services that ./ops/test starts answer, and SecantusDB keeps data across a restart."""

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
from pymongo import MongoClient
from pymongo.database import Database

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _random_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _get_one(channel: Any, queue: str, timeout: float = 5.0) -> bytes | None:
    """Return the body of one message from QUEUE, waiting up to TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, _properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is not None:
            return bytes(body)
        time.sleep(0.05)
    return None


def test_rabbitmq_publish_and_get_roundtrip(rabbitmq_url: str) -> None:
    # Given a connection and a fresh queue
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        queue = _random_name()
        channel.queue_declare(queue=queue, exclusive=True)
        body = uuid.uuid4().bytes

        # When a message is published to it
        channel.basic_publish(exchange="", routing_key=queue, body=body)

        # Then the same message can be read back
        assert _get_one(channel, queue) == body
    finally:
        connection.close()


def test_mongo_ping_and_insert_find_roundtrip(mongo_db: Database[dict[str, Any]]) -> None:
    # Given the server answers ping
    assert mongo_db.client.admin.command("ping")["ok"] == 1

    # When a document is inserted
    doc_id = uuid.uuid4().hex
    mongo_db.items.insert_one({"_id": doc_id, "size": 3})

    # Then it is found again
    assert mongo_db.items.find_one({"_id": doc_id}) == {"_id": doc_id, "size": 3}


def test_mongo_keeps_documents_across_a_restart(mongodb_uri: str, services_dir: Path) -> None:
    # Given an acknowledged document
    db_name, doc_id = _random_name(), uuid.uuid4().hex
    writer: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    with writer:
        writer[db_name].items.insert_one({"_id": doc_id, "state": "cached"})

    # When the daemon is restarted by the ops script
    mongo_dir = services_dir / "mongo"
    result = subprocess.run(
        [str(REPO_ROOT / "ops" / "services" / "mongo"), "restart", str(mongo_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"restart failed:\n{result.stdout}\n{result.stderr}"

    # Then it listens at the same URI and a new client reads the document back
    assert f"MONGODB_URI={mongodb_uri}\n" in (mongo_dir / "mongo.env").read_text()
    reader: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    with reader:
        try:
            found = reader[db_name].items.find_one({"_id": doc_id})
        finally:
            reader.drop_database(db_name)
    assert found == {"_id": doc_id, "state": "cached"}


@pytest.mark.parametrize("separate_process", [False, True])
def test_the_embedded_server_stops_cleanly_and_keeps_its_data(
    tmp_path: Path, separate_process: bool
) -> None:
    # Given an embedded server (in this process, or a child) holding one document
    import threading

    from ops.embedded import EmbeddedServer

    def accepting() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "secantus-accept" and t.is_alive()}

    before = accepting()
    with EmbeddedServer(tmp_path, separate_process=separate_process) as server:
        client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        client["t"]["docs"].insert_one({"_id": 1, "kept": True})
        client.close()

    # When it has stopped
    # Then its accept thread was woken and ended (closing a socket alone never wakes it),
    # and a new server on the same folder finds the document
    assert accepting() <= before
    with EmbeddedServer(tmp_path, separate_process=separate_process) as server:
        client = MongoClient(server.uri)
        assert client["t"]["docs"].find_one({"_id": 1}) == {"_id": 1, "kept": True}
        client.close()

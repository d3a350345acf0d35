"""The embedded database admits only its data folder's processes (DESIGN.md, invariant 7).

Every test runs the real SecantusDB server, in this process and as a child process, on a
data folder of its own, and talks to it with plain pymongo.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ops import dbauth
from ops.embedded import EmbeddedServer

pytestmark = pytest.mark.integration

UNAUTHORIZED, AUTH_FAILED = 13, 18
MODES = pytest.mark.parametrize("separate_process", [False, True], ids=["in-process", "child"])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _open_to_others(root: Path) -> list[str]:
    """Every entry under `root` (itself included) that group or others may use."""
    entries = [root, *root.rglob("*")]
    return [f"{p} {_mode(p):o}" for p in entries if _mode(p) & 0o077]


def _address(data: Path) -> str:
    return str(json.loads((data / "embedded.json").read_text())["uri"])


def _client(uri: str, **kw: Any) -> MongoClient[dict[str, Any]]:
    return MongoClient(uri, serverSelectionTimeoutMS=5000, **kw)


@pytest.fixture
def old_data_folder(tmp_path: Path) -> Path:
    """A data folder as older versions left it: a database with data and no user (but one
    that someone added while it had no authentication), everything readable by others."""
    from secantus import SecantusDBServer

    data = tmp_path / "var"
    with SecantusDBServer(storage_path=str(data / "db"), replica_set_name=None) as old:
        client: MongoClient[dict[str, Any]] = MongoClient(old.uri)
        client["imagecache"]["folder_stats"].insert_one({"_id": "f1", "bytes": 42})
        client["admin"].command("createUser", "intruder", pwd="guessed", roles=["root"])
        client.close()
    (data / "embedded.json").write_text(json.dumps({"pid": 999_999_999, "uri": "x"}))
    (data / "db.log").write_text("an old log line\n")
    for p in [data, *data.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return data


@MODES
def test_a_client_without_credentials_can_neither_read_nor_write(
    tmp_path: Path, separate_process: bool
) -> None:
    # Given an embedded server holding one document, written by the data folder's process
    data = tmp_path / "var"
    with EmbeddedServer(data, separate_process=separate_process) as server:
        own = _client(server.uri)
        own["imagecache"]["folder_stats"].insert_one({"_id": "f1", "bytes": 42})

        # When a plain client, with the address from embedded.json and no credentials,
        # tries to read, write, list and add itself a user
        stranger = _client(_address(data))
        attempts: dict[str, Callable[[], object]] = {
            "find": lambda: stranger["imagecache"]["folder_stats"].find_one(),
            "insert": lambda: stranger["imagecache"]["folder_stats"].insert_one({"_id": "evil"}),
            "update": lambda: stranger["imagecache"]["folder_stats"].update_one(
                {"_id": "f1"}, {"$set": {"bytes": 0}}
            ),
            "delete": lambda: stranger["imagecache"]["folder_stats"].delete_many({}),
            "listDatabases": lambda: stranger.list_database_names(),
            "listCollections": lambda: stranger["imagecache"].list_collection_names(),
            "createUser": lambda: stranger["admin"].command(
                "createUser", "me", pwd="x", roles=["root"]
            ),
            "drop": lambda: stranger.drop_database("imagecache"),
        }
        refused = {}
        for name, attempt in attempts.items():
            with pytest.raises(OperationFailure) as caught:
                attempt()
            refused[name] = caught.value.code

        # Then every one was refused as unauthorized (ping, part of the handshake, answers),
        # and the data is as the data folder's process wrote it
        assert refused == dict.fromkeys(attempts, UNAUTHORIZED)
        assert stranger.admin.command("ping")["ok"] == 1
        assert list(own["imagecache"]["folder_stats"].find()) == [{"_id": "f1", "bytes": 42}]
        assert own["admin"].command("usersInfo")["users"][0]["user"] == dbauth.USER
        assert len(own["admin"].command("usersInfo")["users"]) == 1
        stranger.close()
        own.close()


@MODES
def test_a_wrong_password_or_another_user_is_refused(
    tmp_path: Path, separate_process: bool
) -> None:
    # Given an embedded server
    data = tmp_path / "var"
    with EmbeddedServer(data, separate_process=separate_process) as server:
        address = _address(data)
        right = dbauth.load(data / dbauth.CREDENTIALS_FILE)

        # When clients log in with a wrong password, or as a user it does not know
        tries = [(dbauth.USER, secrets.token_urlsafe(32)), ("root", right.password)]
        codes = []
        for user, password in tries:
            client = _client(address, username=user, password=password, authSource="admin")
            with pytest.raises(OperationFailure) as caught:
                client.admin.command("ping")
            codes.append(caught.value.code)
            client.close()

        # Then both are refused at authentication, while the right credentials get in
        assert codes == [AUTH_FAILED, AUTH_FAILED]
        own = _client(server.uri)
        assert own["imagecache"]["t"].insert_one({"x": 1}).acknowledged
        own.close()


@MODES
def test_the_data_folder_and_every_file_of_the_database_are_private(
    tmp_path: Path, separate_process: bool
) -> None:
    # Given a fresh data folder, made under the usual umask
    data = tmp_path / "fresh" / "var"
    old_umask = os.umask(0o022)
    try:
        # When an embedded server runs on it and writes to several collections
        with EmbeddedServer(data, separate_process=separate_process) as server:
            own = _client(server.uri)
            for name in ("events", "job_state", "folder_stats", "renditions"):
                own["imagecache"][name].insert_one({"_id": name})
                own["imagecache"][name].create_index("x")
            own.close()

            # Then while it runs the data folder is 0700, the credentials and the address
            # file 0600, and nothing of the database is open to group or others
            during = _open_to_others(data)
            modes = {p: _mode(data / p) for p in ("", dbauth.CREDENTIALS_FILE, "embedded.json")}
        after = _open_to_others(data)
    finally:
        os.umask(old_umask)

    assert modes == {"": 0o700, dbauth.CREDENTIALS_FILE: 0o600, "embedded.json": 0o600}
    assert during == [] and after == []
    # And this process's umask is its own again: cache images keep their usual mode
    probe = tmp_path / "probe"
    probe.touch()
    assert _mode(probe) == 0o644


@MODES
def test_an_old_data_folder_is_made_private_and_gets_the_user_and_keeps_its_data(
    old_data_folder: Path, separate_process: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a data folder of an older version (no user, open to others, one intruder user)
    data = old_data_folder

    # When an embedded server starts on it
    with (
        caplog.at_level(logging.WARNING),
        EmbeddedServer(data, separate_process=separate_process) as server,
    ):
        own = _client(server.uri)
        kept = list(own["imagecache"]["folder_stats"].find())
        stranger = _client(_address(data))
        with pytest.raises(OperationFailure) as refused:
            stranger["imagecache"]["folder_stats"].find_one()
        intruder = _client(_address(data), username="intruder", password="guessed")
        with pytest.raises(OperationFailure) as intruder_refused:
            intruder.admin.command("ping")
        loose = _open_to_others(data)
        own.close()
        stranger.close()
        intruder.close()

    # Then its data is there, read with the new credentials; a client without them is
    # refused, and so is the user someone added while there was no authentication
    assert kept == [{"_id": "f1", "bytes": 42}]
    assert refused.value.code == UNAUTHORIZED and intruder_refused.value.code == AUTH_FAILED
    # And the folder and all its files were made private, which the log said once
    assert loose == []
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in said if "open to other users (mode 755)" in m] == [
        f"the data folder {data} was open to other users (mode 755): it is private now"
        " (0700, its files 0600)"
    ], said
    removed = "removed database users that only someone without credentials could have added"
    told = (data / "db.log").read_text() if separate_process else "\n".join(said)
    assert f"{removed}, while the embedded database had no authentication: intruder@admin" in told
    assert (data / "db.log").read_text().startswith("an old log line")

    # And the next start has nothing to say about modes
    caplog.clear()
    with caplog.at_level(logging.WARNING), EmbeddedServer(data, separate_process=False):
        pass
    assert not [r for r in caplog.records if "open to other users" in r.getMessage()]


def test_the_user_exists_and_auth_is_required_before_the_server_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database made without authentication and without users (an older version's)
    from secantus import SecantusDBServer

    from ops.dbserver import open_server

    storage = tmp_path / "db"
    SecantusDBServer(storage_path=str(storage), replica_set_name=None).stop()
    seen: list[tuple[bool, list[str]]] = []
    real_start = SecantusDBServer.start

    def start(self: Any) -> None:
        users = self.storage.list_users(None)
        seen.append((self.require_auth, [f"{u['user']}@{u['db']}" for u in users]))
        real_start(self)

    monkeypatch.setattr(SecantusDBServer, "start", start)

    # When open_server (in process and in the child alike) starts the server on it
    server = open_server(storage, dbauth.generate())
    server.stop()

    # Then at the moment it began to listen it required authentication and had the user
    assert seen == [(True, [f"{dbauth.USER}@admin"])]


def test_the_credentials_never_appear_in_argv_environment_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an embedded server in a child process, logging everything it can
    data = tmp_path / "var"
    with caplog.at_level(logging.DEBUG), EmbeddedServer(data, separate_process=True) as server:
        password = dbauth.load(data / dbauth.CREDENTIALS_FILE).password
        own = _client(server.uri)
        own["imagecache"]["t"].insert_one({"x": 1})
        own.close()
        assert server._child is not None
        pid = server._child.pid

        # When one looks where other users can: the child's argv and environment
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        marker = (data / "embedded.json").read_text()

    # Then the password is in none of them, nor in the address file or any log
    assert b"--credentials" in cmdline and password.encode() not in cmdline
    assert environ and password.encode() not in environ
    assert password not in marker and password not in (data / "db.log").read_text()
    assert caplog.records and password not in caplog.text
    assert password in server.uri  # only the in-memory URI of the client carries it


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder that any local user may enter (pytest's own are 0700), when this test runs as
    root and so can act as another user; removed afterwards."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another local user")
    folder = Path(tempfile.mkdtemp(prefix="imagecache-open-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_another_local_user_reads_nothing_of_the_data_folder(open_folder: Path) -> None:
    # Given an embedded server running in a data folder, in a folder anyone may enter that
    # also holds a file anyone may read
    import subprocess

    data = open_folder / "var"
    readable = open_folder / "readable.txt"
    readable.write_text("anyone")
    readable.chmod(0o644)
    with EmbeddedServer(data, separate_process=True):
        # When another user (nobody) tries to read it, the address file, the credentials,
        # the log and a database file
        # (/bin/sh and cat: this test's Python may be in a folder nobody can enter)
        probe = 'for f; do if cat "$f" >/dev/null; then echo read; else echo refused; fi; done'
        names = ["embedded.json", dbauth.CREDENTIALS_FILE, "db.log", "db/WiredTiger"]
        files = [readable, *(data / n for n in names)]
        run = subprocess.run(
            ["/bin/sh", "-c", probe, "sh", *map(str, files)], capture_output=True, text=True,
            user=65534, group=65534, extra_groups=[], check=True, cwd="/",
        )  # fmt: skip

    # Then it read the open file, and every file of the data folder was refused
    assert run.stdout.splitlines() == ["read"] + ["refused"] * len(names), run
    assert run.stderr.count("Permission denied") == len(names), run.stderr

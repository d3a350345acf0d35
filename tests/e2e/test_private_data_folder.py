"""End to end: the embedded database admits the data folder's own commands, and no one else."""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ops import dbauth
from tests.e2e.conftest import Imagecache

pytestmark = pytest.mark.e2e

UNAUTHORIZED = 13


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _open_to_others(root: Path) -> list[str]:
    return [f"{p} {_mode(p):o}" for p in [root, *root.rglob("*")] if _mode(p) & 0o077]


def _folders(result: Any) -> list[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return [str(f["path"]) for f in json.loads(result.stdout)]


def test_commands_beside_an_embedded_serve_get_in_and_a_stranger_does_not(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given an embedded serve: its database in a child process
    data = tmp_path / "var"
    serve = embedded.start("serve", "--port", str(_free_port()))
    try:
        deadline = time.monotonic() + 60
        while not (data / "embedded.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        marker = json.loads((data / "embedded.json").read_text())

        # When commands of the data folder add and list a cache folder beside it
        added = embedded.run("folders", "add", str(tmp_path / "cache2"))
        listed = embedded.run("folders", "list", "--json")
        # And a client with the address from embedded.json and no credentials reads
        stranger: MongoClient[dict[str, Any]] = MongoClient(marker["uri"])
        with pytest.raises(OperationFailure) as refused:
            stranger["imagecache"]["folder_stats"].find_one()
        stranger.close()
        child = Path(f"/proc/{marker['pid']}")
        seen_by_others = (child / "cmdline").read_bytes() + (child / "environ").read_bytes()
        private = {p: _mode(data / p) for p in ("", dbauth.CREDENTIALS_FILE, "embedded.json")}
        loose = _open_to_others(data / "db")
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=60)

    # Then the commands worked through the credentials, and the stranger was refused
    assert added.returncode == 0, added.stderr[-3000:]
    assert str(tmp_path / "cache2") in _folders(listed)
    assert refused.value.code == UNAUTHORIZED
    assert marker["pid"] != serve.pid  # the database ran in a process of its own
    # And the data folder, the credentials, the address file and the database were private
    assert private == {"": 0o700, dbauth.CREDENTIALS_FILE: 0o600, "embedded.json": 0o600}
    assert loose == []
    for name in ("db.log", "runner.lock", "api-token"):
        assert _mode(data / name) == 0o600, name
    # And the password appeared nowhere: not in the child's argv or environment, nor in
    # anything printed or logged
    password = dbauth.load(data / dbauth.CREDENTIALS_FILE).password
    printed = out + added.stdout + added.stderr + listed.stdout + listed.stderr
    assert password.encode() not in seen_by_others
    assert password not in printed and password not in (data / "db.log").read_text()
    assert serve.returncode == 0, out[-3000:]


def test_an_older_data_folder_keeps_its_state_and_is_made_private_once(
    tmp_path: Path, embedded: Imagecache
) -> None:
    # Given a data folder with a cache folder registered, then made as older versions left
    # it: a database without users, no credentials file, everything readable by others
    from secantus import SecantusDBServer

    data = tmp_path / "var"
    assert embedded.run("folders", "add", str(tmp_path / "cache2")).returncode == 0
    (data / dbauth.CREDENTIALS_FILE).unlink()
    old = SecantusDBServer(storage_path=str(data / "db"), replica_set_name=None)
    for user in old.storage.list_users(None):
        old.storage.drop_user(user["db"], user["user"])
    old.stop()
    for p in [data, *data.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)

    # When this version lists the cache folders, twice
    first = embedded.run("folders", "list", "--json")
    second = embedded.run("folders", "list", "--json")

    # Then both list the folder the older version registered
    assert str(tmp_path / "cache2") in _folders(first) == _folders(second)
    # And the first said once that it made the data folder private, the second nothing
    assert first.stderr.count("was open to other users (mode 755): it is private now") == 1
    assert "open to other users" not in second.stderr
    # And the folder, its files and its database are private, with new credentials
    assert _mode(data) == 0o700 and _open_to_others(data / "db") == []
    assert [p.name for p in data.iterdir() if p.is_file() and _mode(p) & 0o077] == []
    assert _mode(data / dbauth.CREDENTIALS_FILE) == 0o600

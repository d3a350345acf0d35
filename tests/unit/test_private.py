"""Private folders and files: the data folder 0700, what imagecache keeps in it 0600."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from ops.private import (
    create_private,
    make_private_folder,
    open_private,
    tighten_tree,
    write_private,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> object:
    """The umask most users have: what made older data folders readable by others."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_data_folder_and_its_parents_exist_and_it_is_0700(tmp_path: Path) -> None:
    # Given a path whose parents do not exist yet
    data = tmp_path / "a" / "b" / "var"

    # When it is made a private folder
    make_private_folder(data)

    # Then it exists, only its owner may use it; the parents keep the usual mode
    assert _mode(data) == 0o700
    assert _mode(tmp_path / "a") == 0o755


def test_an_open_data_folder_and_its_files_are_tightened_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a data folder open to others, with files of several modes and a cache folder
    data = tmp_path / "var"
    (data / "cache" / "th").mkdir(parents=True)
    for name, mode in (("embedded.json", 0o644), ("db.log", 0o664), ("api-token", 0o600)):
        (data / name).write_text(name)
        (data / name).chmod(mode)
    (data / "cache" / "th" / "x.jpg").write_bytes(b"jpeg")
    data.chmod(0o755)

    # When it is made private, twice
    with caplog.at_level(logging.INFO):
        make_private_folder(data)
        make_private_folder(data)

    # Then the folder is 0700, its files 0600 (the private one unchanged), the cache folder
    # inside left as it was (private through the folder), and one warning said so
    assert _mode(data) == 0o700
    assert {p.name: _mode(p) for p in data.iterdir() if p.is_file()} == dict.fromkeys(
        ("embedded.json", "db.log", "api-token"), 0o600
    )
    assert _mode(data / "cache") == 0o755 and _mode(data / "cache" / "th" / "x.jpg") == 0o644
    assert [r.getMessage() for r in caplog.records] == [
        f"the data folder {data} was open to other users (mode 755): it is private now"
        " (0700, its files 0600)"
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_a_data_folder_that_is_a_file_is_an_os_error(tmp_path: Path) -> None:
    # Given a file where the data folder should be
    (tmp_path / "var").write_text("")

    # When it is made a private folder, Then it is refused, and the file is untouched
    with pytest.raises(OSError):
        make_private_folder(tmp_path / "var")
    assert (tmp_path / "var").read_text() == ""


def test_a_tree_loses_group_and_other_permissions_but_symlinks_are_not_followed(
    tmp_path: Path,
) -> None:
    # Given a database folder with nested folders and files of mixed modes, and a symlink
    # to a file outside it
    db = tmp_path / "db"
    (db / "journal").mkdir(parents=True)
    (db / "WiredTiger.wt").write_bytes(b"x")
    (db / "journal" / "log.1").write_bytes(b"x")
    (db / "journal" / "log.1").chmod(0o640)
    (db / "private").write_bytes(b"x")
    (db / "private").chmod(0o600)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    (db / "link").symlink_to(outside)
    db.chmod(0o775)

    # When the tree is tightened
    changed = tighten_tree(db)

    # Then every folder is 0700 and every file 0600,
    # and the file the symlink points to keeps its mode
    entries = [p for p in [db, *db.rglob("*")] if not p.is_symlink()]
    assert {str(p.relative_to(tmp_path)): _mode(p) for p in entries} == {
        "db": 0o700, "db/journal": 0o700, "db/WiredTiger.wt": 0o600,
        "db/journal/log.1": 0o600, "db/private": 0o600,
    }  # fmt: skip
    assert changed == 4
    assert _mode(outside) == 0o644
    assert tighten_tree(db) == 0 and tighten_tree(tmp_path / "missing") == 0


def test_open_private_makes_new_and_existing_files_0600(tmp_path: Path) -> None:
    # Given an existing log file open to others
    old = tmp_path / "db.log"
    old.write_text("kept\n")
    old.chmod(0o644)

    # When both it and a new file are opened for appending
    for path in (old, tmp_path / "runner.lock"):
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"more\n")
        os.close(fd)

    # Then both are 0600, and the old one kept what it had
    assert _mode(old) == _mode(tmp_path / "runner.lock") == 0o600
    assert old.read_text() == "kept\nmore\n"


def test_write_private_replaces_a_file_whole_and_0600(tmp_path: Path) -> None:
    # Given an address file open to others
    marker = tmp_path / "embedded.json"
    marker.write_text("old")
    marker.chmod(0o644)

    # When it is written privately
    write_private(marker, b"new")

    # Then it holds the new text, is 0600, and nothing was left beside it
    assert marker.read_bytes() == b"new" and _mode(marker) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["embedded.json"]


def test_create_private_keeps_the_first_file_made(tmp_path: Path) -> None:
    # Given no credentials file
    path = tmp_path / "db-credentials.json"

    # When two processes' calls make it one after the other
    first = create_private(path, b"first")
    second = create_private(path, b"second")

    # Then the first one's content stays, 0600, with no leftover file
    assert (first, second) == (True, False)
    assert path.read_bytes() == b"first" and _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["db-credentials.json"]

"""The file store contract, run against LocalFileStore and MemoryFileStore alike."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from actors.files import TMP_SUFFIX, LocalFileStore, MemoryFileStore
from domain.errors import NoSpace, TransientIOError
from domain.ids import rendition_relpath
from domain.ports import FileStore


def relpath(kind: str = "cache") -> str:
    return rendition_relpath(kind, uuid.uuid4().hex, "jpg")


class FileStoreContract:
    """What every file store promises. Subclasses provide `store` and `root`."""

    @pytest.fixture
    def store(self) -> FileStore:
        raise NotImplementedError

    @pytest.fixture
    def root(self) -> str:
        raise NotImplementedError

    def test_write_returns_minus_one_then_the_replaced_size(
        self, store: FileStore, root: str
    ) -> None:
        # Given a path with no file
        rel = relpath()
        assert store.size(root, rel) == -1

        # When a file is written there, then overwritten twice
        first = store.write_atomic(root, rel, b"x" * 100)
        second = store.write_atomic(root, rel, b"y" * 40)
        third = store.write_atomic(root, rel, b"")

        # Then each write reports the size it replaced, and the last content stands
        assert (first, second, third) == (-1, 100, 40)
        assert store.size(root, rel) == 0

    def test_size_of_a_written_file(self, store: FileStore, root: str) -> None:
        rel = relpath("thumbnail")
        store.write_atomic(root, rel, b"z" * 1234)
        assert store.size(root, rel) == 1234
        assert store.size(root, relpath()) == -1

    def test_remove_returns_the_size_once(self, store: FileStore, root: str) -> None:
        # Given a file
        rel = relpath()
        store.write_atomic(root, rel, b"q" * 77)

        # When it is removed twice
        removed = store.remove(root, rel), store.remove(root, rel)

        # Then the first removal reports its size, the second finds nothing
        assert removed == (77, -1)
        assert store.size(root, rel) == -1

    def test_walk_lists_every_file_with_its_relpath(self, store: FileStore, root: str) -> None:
        # Given files of both kinds, one of them removed again
        files = {relpath("cache"): 10, relpath("thumbnail"): 3, relpath("cache"): 0}
        for rel, size in files.items():
            store.write_atomic(root, rel, b"a" * size)
        gone = relpath()
        store.write_atomic(root, gone, b"gone")
        store.remove(root, gone)

        # When the root is walked
        found = {rel: size for rel, size, _mtime in store.walk(root)}

        # Then every remaining file is listed once, by its path relative to the root
        assert found == files

    def test_walk_keeps_roots_apart(self, store: FileStore, root: str) -> None:
        # Given a file under this root and one under a sibling root
        other = f"{root}-other"
        mine, theirs = relpath(), relpath()
        store.write_atomic(root, mine, b"a")
        store.write_atomic(other, theirs, b"bb")

        # When each root is walked
        # Then each lists only its own file
        assert [(rel, size) for rel, size, _ in store.walk(root)] == [(mine, 1)]
        assert [(rel, size) for rel, size, _ in store.walk(other)] == [(theirs, 2)]

    def test_walk_of_a_root_never_written_is_empty(self, store: FileStore, root: str) -> None:
        assert list(store.walk(f"{root}-never")) == []
        assert store.remove(f"{root}-never", relpath()) == -1

    def test_free_bytes_is_known(self, store: FileStore, root: str) -> None:
        assert store.free_bytes(root) > 0


class TestLocalFileStore(FileStoreContract):
    @pytest.fixture
    def store(self) -> FileStore:
        return LocalFileStore()

    @pytest.fixture
    def root(self, tmp_path: Path) -> str:
        return str(tmp_path / "cache-folder")

    def test_walk_excludes_temp_files(self, store: FileStore, root: str) -> None:
        # Given a finished file and a temp file a crashed writer left beside it
        rel = relpath()
        store.write_atomic(root, rel, b"done")
        leftover = Path(root) / Path(rel).parent / f".x.jpg.1.2{TMP_SUFFIX}"
        leftover.write_bytes(b"half")

        # When the root is walked
        found = [r for r, _, _ in store.walk(root)]

        # Then the temp file is not listed
        assert found == [rel]

    @pytest.mark.parametrize("failing", ["open", "replace"])
    def test_failed_write_for_lack_of_space_leaves_the_old_file(
        self, store: FileStore, root: str, monkeypatch: pytest.MonkeyPatch, failing: str
    ) -> None:
        # Given a file, and a disk that is full when the next write opens or renames
        rel = relpath()
        store.write_atomic(root, rel, b"old" * 10)
        full = OSError(errno.ENOSPC, "No space left on device")
        if failing == "open":
            real_open = open

            def no_space_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
                if "w" in mode:
                    real_open(file, mode).close()  # the temp file exists, as on a real disk
                    raise full
                return real_open(file, mode, *args, **kw)

            monkeypatch.setattr("builtins.open", no_space_open)
        else:

            def no_space_replace(src: object, dst: object) -> None:
                raise full

            monkeypatch.setattr(os, "replace", no_space_replace)

        # When a new version is written
        # Then NoSpace is raised
        with pytest.raises(NoSpace):
            store.write_atomic(root, rel, b"new" * 1000)
        monkeypatch.undo()

        # And the old file is intact and no temp file is left behind
        assert (Path(root) / rel).read_bytes() == b"old" * 10
        assert [p.name for p in Path(root).rglob("*") if p.is_file()] == [Path(rel).name]

    def test_other_write_errors_are_transient(
        self, store: FileStore, root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a rename that fails with an I/O error
        def broken_replace(src: object, dst: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "replace", broken_replace)

        # When a file is written
        # Then the failure is one to retry, and no temp file is left
        with pytest.raises(TransientIOError):
            store.write_atomic(root, relpath(), b"data")
        monkeypatch.undo()
        assert [p for p in Path(root).rglob("*") if p.is_file()] == []


class TestMemoryFileStore(FileStoreContract):
    @pytest.fixture
    def store(self) -> FileStore:
        return MemoryFileStore()

    @pytest.fixture
    def root(self) -> str:
        return f"/cache/{uuid.uuid4().hex}"

    def test_write_beyond_free_space_raises_no_space(self, root: str) -> None:
        # Given a store with 100 free bytes holding a 60-byte file
        store = MemoryFileStore(free=100)
        rel = relpath()
        store.write_atomic(root, rel, b"a" * 60)

        # When the file grows past the free space, then a smaller one replaces it
        with pytest.raises(NoSpace):
            store.write_atomic(root, rel, b"b" * 200)
        replaced = store.write_atomic(root, rel, b"c" * 100)

        # Then the failed write changed nothing, and growth is counted against free space
        assert replaced == 60
        assert (store.size(root, rel), store.free_bytes(root)) == (100, 0)

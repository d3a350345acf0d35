"""The file store contract, run against LocalFileStore and MemoryFileStore alike."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from actors import files as files_module
from actors.files import TMP_SUFFIX, LocalFileStore, MemoryFileStore, NotOurs
from domain.errors import NoSpace, TransientIOError
from domain.ids import partial_name, rendition_relpath
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

            def no_space_replace(src: object, dst: object, **kw: object) -> None:
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
        def broken_replace(src: object, dst: object, **kw: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "replace", broken_replace)

        # When a file is written
        # Then the failure is one to retry, and no temp file is left
        with pytest.raises(TransientIOError):
            store.write_atomic(root, relpath(), b"data")
        monkeypatch.undo()
        assert [p for p in Path(root).rglob("*") if p.is_file()] == []


class TestLocalFileStoreNeverLeavesTheFolder:
    """What the real store promises beyond the contract: a link is never followed, another
    mount never entered, and a directory swapped in at the root is not taken for it."""

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "cache-folder"

    @pytest.fixture
    def outside(self, tmp_path: Path) -> Path:
        """A user's folder beside the cache folder, with a file and a folder in it."""
        place = tmp_path / "precious"
        (place / "album").mkdir(parents=True)
        (place / "photo.jpg").write_bytes(b"the user's photo")
        (place / "album" / "other.jpg").write_bytes(b"another one")
        return place

    @staticmethod
    def _snapshot(place: Path) -> dict[str, bytes]:
        return {str(p.relative_to(place)): p.read_bytes() for p in place.rglob("*") if p.is_file()}

    def test_links_are_listed_never_followed_and_never_deleted_through(
        self, root: Path, outside: Path
    ) -> None:
        # Given a cache folder with a link to a file outside at a rendition's name, and a
        # link to a folder outside where a layout folder would be
        store = LocalFileStore()
        real = relpath("cache")
        store.write_atomic(str(root), real, b"ours")
        file_link = relpath("thumbnail")
        (root / file_link).parent.mkdir(parents=True)
        (root / file_link).symlink_to(outside / "photo.jpg")
        dir_link = "cache/ee"
        (root / dir_link).symlink_to(outside / "album", target_is_directory=True)
        before = self._snapshot(outside)

        # When the folder is walked and each link (and a path through the folder link) removed
        entries = {e.relpath: e.kind for e in store.entries(str(root))}
        walked = [rel for rel, _, _ in store.walk(str(root))]
        refused = []
        for target in (file_link, dir_link, f"{dir_link}/ff/other.jpg", f"{dir_link}/other.jpg"):
            with pytest.raises(NotOurs):
                store.remove(str(root), target)
            refused.append(target)

        # Then the links are listed as links, nothing behind them is listed or touched
        assert entries[file_link] == "symlink" and entries[dir_link] == "symlink"
        assert walked == [real] and len(refused) == 4
        assert self._snapshot(outside) == before
        assert (root / file_link).is_symlink() and (root / dir_link).is_symlink()

    def test_a_mount_point_named_by_the_seam_is_not_entered(self, root: Path) -> None:
        # Given files in two layout folders, one of which the seam calls a mount point
        # (a bind mount keeps the device number: only the mount table tells)
        inside, mounted = relpath("cache"), "thumbnail/ab/cd/" + "abcd" + "0" * 28 + ".jpg"
        for rel in (inside, mounted):
            LocalFileStore().write_atomic(str(root), rel, b"x")
        mount = str(root.resolve() / "thumbnail" / "ab")
        store = LocalFileStore(mount_points=lambda: frozenset({mount}))

        # When the folder is walked, and the file on the "mount" removed
        entries = {e.relpath: e.kind for e in store.entries(str(root))}
        with pytest.raises(NotOurs, match="another mount"):
            store.remove(str(root), mounted)

        # Then the mount point is listed, not entered, and its file is still there
        assert entries["thumbnail/ab"] == "mount" and mounted not in entries
        assert inside in entries and (root / mounted).exists()

    def test_a_real_mount_inside_the_folder_is_not_entered(self, root: Path) -> None:
        # Given a tmpfs mounted on a layout folder, holding a file at a rendition's name
        store = LocalFileStore()
        store.write_atomic(str(root), relpath("cache"), b"x")
        mount = root / "thumbnail" / "ab"
        mount.mkdir(parents=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs needs root ({done.stderr.strip()}): see the seam test")
        try:
            on_mount = "thumbnail/ab/cd/" + "abcd" + "0" * 28 + ".jpg"
            (root / on_mount).parent.mkdir()
            (root / on_mount).write_bytes(b"on another filesystem")

            # When the folder is walked, and the file on the mount removed
            entries = {e.relpath: e.kind for e in store.entries(str(root))}
            with pytest.raises(NotOurs, match="another mount"):
                store.remove(str(root), on_mount)

            # Then the mount point is listed, never entered, and the file is still there
            assert entries["thumbnail/ab"] == "mount" and on_mount not in entries
            assert (root / on_mount).read_bytes() == b"on another filesystem"
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)

    def test_another_directory_at_the_root_is_refused(self, root: Path, tmp_path: Path) -> None:
        # Given a cache folder's identity, then the folder moved away and another put there
        store = LocalFileStore()
        rel = relpath()
        store.write_atomic(str(root), rel, b"ours")
        identity = store.identity(str(root))
        root.rename(tmp_path / "moved")
        store.write_atomic(str(root), rel, b"someone else's")

        # When the folder is walked or a file removed with that identity
        # Then each is refused, and the file in the new directory is still there
        with pytest.raises(NotOurs, match="another directory"):
            list(store.entries(str(root), identity=identity))
        with pytest.raises(NotOurs, match="another directory"):
            store.remove(str(root), rel, identity=identity)
        assert (root / rel).read_bytes() == b"someone else's"
        assert store.remove(str(tmp_path / "moved"), rel, identity=identity) == 4

    def test_only_layout_folders_are_entered(self, root: Path) -> None:
        # Given a rendition, and a user's files in folders outside the layout
        store = LocalFileStore()
        rel = relpath("thumbnail")
        store.write_atomic(str(root), rel, b"ours")
        deep = root / "thumbnail" / "x" / "y" / "z"
        deep.mkdir(parents=True)
        (deep / "photo.jpg").write_bytes(b"a photo")
        (root / "cache").mkdir()
        (root / "cache" / "report.pdf").write_bytes(b"a report")

        # When the folder is listed
        entries = {e.relpath: e.kind for e in store.entries(str(root))}

        # Then the folder outside the layout is listed and not looked into
        assert entries == {
            "cache": "dir", "cache/report.pdf": "file", "thumbnail": "dir",
            "thumbnail/x": "dir", rel.rsplit("/", 2)[0]: "dir", rel.rsplit("/", 1)[0]: "dir",
            rel: "file",
        }  # fmt: skip

    def test_writes_never_go_through_a_link(self, root: Path, outside: Path) -> None:
        # Given a layout folder that is a link to a folder outside, and a link put at the
        # very temporary name the next write uses
        store = LocalFileStore()
        (root / "cache").mkdir(parents=True)
        (root / "cache" / "aa").symlink_to(outside / "album", target_is_directory=True)
        image = "ab" + "0" * 30
        target = rendition_relpath("cache", image, "jpg")
        tmp_name = partial_name(f"{image}.jpg", files_module._WRITER, threading.get_ident())
        (root / "cache" / "ab" / "00").mkdir(parents=True)
        (root / "cache" / "ab" / "00" / tmp_name).symlink_to(outside / "photo.jpg")
        before = self._snapshot(outside)

        # When renditions are written through the folder link and over the planted link
        with pytest.raises(TransientIOError):
            store.write_atomic(str(root), f"cache/aa/{image[2:4]}/aa{image[2:]}.jpg", b"new")
        with pytest.raises(TransientIOError):
            store.write_atomic(str(root), target, b"new")

        # Then nothing outside was written, truncated or replaced, and the links stay
        assert self._snapshot(outside) == before
        assert (root / "cache" / "ab" / "00" / tmp_name).is_symlink()
        assert not (root / target).exists()


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

"""The source reader: every bad member or file is one RenderError of a known class; members are
streamed within a limit from archives parsed once; no link is followed below the root."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from actors import render as render_module
from actors.archives import ArchiveCache
from actors.pool import render_member
from actors.reading import member_digest, open_member
from actors.sources import ARCHIVES, SourceRef, discover, list_members, resolve_under_roots
from domain.errors import (
    ERROR_CLASSES,
    CorruptImage,
    InvalidInput,
    RenderError,
    SourceMissing,
    SourceTooLarge,
)
from domain.specs import RenditionSpec
from tests.archives import hostile_archive, picture, zeros_member

REPO = Path(__file__).resolve().parents[2]
THUMB = RenditionSpec("thumbnail", 300, 300, "jpeg", 80)
CACHE = RenditionSpec("cache", 1920, 1920, "jpeg", 85)
LIMIT = 4 << 20  # IMAGECACHE_MAX_SOURCE_BYTES in these tests


def refs(collection: Path, root: Path) -> dict[str, SourceRef]:
    """Every member a scan of `collection` accepts, as the generator would ask for it."""
    source = "archive" if collection.suffix == ".cbz" else "folder"
    return {
        m.path: SourceRef(str(collection), source, m.path, str(root), m.size, m.mtime)
        for m in list_members(collection, source, str(root))
        if m.supported and not m.refused
    }


def outcome(ref: SourceRef, max_bytes: int = LIMIT) -> str:
    """ "made", or the error class of the RenderError the render raised."""
    try:
        render_member(ref, [CACHE, THUMB], 100_000_000, max_bytes)
    except RenderError as exc:
        assert "\n" not in str(exc) and str(exc), ref.member
        return exc.error_class
    return "made"


# --- archives --------------------------------------------------------------------------------


def test_every_bad_member_fails_with_its_class_and_the_good_ones_render(tmp_path: Path) -> None:
    # Given a CBZ of good pages among an encrypted, a Deflate64, a corrupt-deflate, a CRC-broken
    # member, one that declares more than the limit and one that inflates past what it declares
    expected = hostile_archive(tmp_path / "hostile.cbz", bomb_bytes=LIMIT)

    # When each member the scan found is rendered
    found = {name: outcome(ref) for name, ref in refs(tmp_path / "hostile.cbz", tmp_path).items()}

    # Then the good ones are made, and each bad one fails with its class, nothing else escaping
    assert found == {name: cls or "made" for name, cls in expected.items()}
    assert set(found.values()) - {"made"} <= set(ERROR_CLASSES)


def test_a_member_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # Given an archive member and a plain file, each one byte over the limit
    with zipfile.ZipFile(tmp_path / "big.cbz", "w") as archive:
        zeros_member(archive, "big.jpg", LIMIT + 1, prefix=picture())
    album = tmp_path / "album"
    album.mkdir()
    (album / "big.jpg").write_bytes(picture() + bytes(LIMIT + 1 - len(picture())))

    # When they render
    for ref in [*refs(tmp_path / "big.cbz", tmp_path).values(), *refs(album, tmp_path).values()]:
        # Then each is too large, and says by how much and which setting decides
        with pytest.raises(SourceTooLarge, match="IMAGECACHE_MAX_SOURCE_BYTES") as caught:
            render_member(ref, [THUMB], 100_000_000, LIMIT)
        assert f"{LIMIT + 1:,} bytes" in str(caught.value)
        # And one byte more of room renders it
        assert len(render_member(ref, [THUMB], 100_000_000, LIMIT + 1)) == 1


_RENDER_IN_A_PROCESS = """
import json, resource, sys
from actors.pool import render_member
from actors.sources import list_members, SourceRef
from domain.errors import RenderError
from domain.specs import RenditionSpec
path, root = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
found = {}
for m in list_members(__import__("pathlib").Path(path), "archive", root):
    ref = SourceRef(path, "archive", m.path, root, m.size, m.mtime)
    try:
        render_member(ref, [RenditionSpec("thumbnail", 300, 300)], 100_000_000, 1 << 30)
        found[m.path] = "made"
    except RenderError as exc:
        found[m.path] = exc.error_class
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"before_mb": before, "peak_mb": peak, "found": found}))
"""


def test_a_huge_member_is_streamed_not_read_whole(tmp_path: Path) -> None:
    # Given a 1 MB archive holding a 256 MiB member (a picture, then zeros) and a 256 MiB
    # member of zeros alone, both under the limit
    with zipfile.ZipFile(tmp_path / "bomb.cbz", "w") as archive:
        zeros_member(archive, "picture-then-zeros.jpg", 256 << 20, prefix=picture())
        zeros_member(archive, "zeros.jpg", 256 << 20)
    assert (tmp_path / "bomb.cbz").stat().st_size < 1 << 20

    # When a process of its own renders them
    done = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_A_PROCESS, str(tmp_path / "bomb.cbz"), str(tmp_path)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    # Then the picture is made (its whole member read, for the CRC), the zeros fail as what
    # they are, and the process never held either member: far less than 256 MiB came on top
    assert result["found"] == {"picture-then-zeros.jpg": "made", "zeros.jpg": "unsupported"}
    assert result["peak_mb"] - result["before_mb"] < 96, result


def test_an_archive_of_100000_members_is_parsed_once_for_all_of_them(tmp_path: Path) -> None:
    # Given a CBZ of 100,000 tiny pictures
    page = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(page, "PNG")
    path = tmp_path / "huge.cbz"
    with zipfile.ZipFile(path, "w") as archive:
        for n in range(100_000):
            archive.writestr(f"{n // 1000:03d}/p{n:06d}.png", page.getvalue())

    # When it is scanned, and a thousand members spread over it are rendered
    members = refs(path, tmp_path)
    parsed = ARCHIVES.parsed
    names = sorted(members)[::100]
    made = [outcome(members[name]) for name in names]

    # Then every member is listed, each rendered, and the archive was parsed once for all:
    # the cost of a member does not grow with the size of its archive
    assert len(members) == 100_000
    assert made == ["made"] * 1000
    assert ARCHIVES.parsed == parsed + 1


def test_a_replaced_archive_is_parsed_again(tmp_path: Path) -> None:
    # Given an archive whose member has been rendered (and so its archive kept open)
    path = tmp_path / "book.cbz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("p.jpg", picture(colour=(255, 0, 0)))
    (ref,) = refs(path, tmp_path).values()
    assert outcome(ref) == "made"

    # When the archive is replaced by another with a page of the same name
    new = tmp_path / "new.cbz"
    with zipfile.ZipFile(new, "w") as archive:
        archive.writestr("p.jpg", picture(colour=(0, 0, 255)))
    os.replace(new, path)
    (ref,) = refs(path, tmp_path).values()
    parsed = ARCHIVES.parsed
    (out,) = render_member(ref, [THUMB], 100_000_000, LIMIT)

    # Then the new archive is read, not the one kept open
    assert ARCHIVES.parsed == parsed + 1
    red, _, blue = Image.open(io.BytesIO(out.data)).convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    assert blue > 200 and red < 60


def test_the_archive_cache_keeps_few_open_and_closes_none_in_use(tmp_path: Path) -> None:
    # Given a cache that keeps two archives, and three archives
    cache = ArchiveCache(keep=2)
    paths = []
    for n in range(3):
        paths.append(tmp_path / f"{n}.cbz")
        with zipfile.ZipFile(paths[-1], "w") as archive:
            archive.writestr("p.jpg", picture())

    def use(path: Path) -> zipfile.ZipFile:
        file = open(path, "rb")  # noqa: SIM115  (the cache owns it from here)
        st = os.fstat(file.fileno())
        return cache.archive(str(path), file, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))  # type: ignore[return-value]

    # When the first is in use while the other two are opened after it
    with use(paths[0]) as first:
        for path in paths[1:]:
            with use(path):
                pass
        # Then the first stays readable while in use, though the least recent
        assert first.read("p.jpg") == picture()
    # And afterwards only two are kept: the first is opened again
    with use(paths[2]), use(paths[1]), use(paths[0]):
        pass
    assert cache.parsed == 4


def test_threads_on_a_new_archive_share_one_parse(tmp_path: Path) -> None:
    # Given an archive of 200 pages no thread has opened yet
    path = tmp_path / "shared.cbz"
    with zipfile.ZipFile(path, "w") as archive:
        for n in range(200):
            archive.writestr(f"p{n:03d}.jpg", picture((64, 48), (n, 0, 0)))
    members = sorted(refs(path, tmp_path).items())
    parsed = ARCHIVES.parsed
    results: dict[str, str] = {}

    # When four threads render its pages at once
    def work(start: int) -> None:
        for name, ref in members[start::4]:
            results[name] = outcome(ref)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every page is made and the archive was parsed once
    assert results == {name: "made" for name, _ in members}
    assert ARCHIVES.parsed == parsed + 1


# --- symbolic links --------------------------------------------------------------------------


def _library_with_loops(root: Path) -> None:
    album = root / "album"
    album.mkdir(parents=True)
    for folder in (root, album):
        (folder / "good.jpg").write_bytes(picture())
        os.symlink("self.jpg", folder / "self.jpg")
        os.symlink("two.jpg", folder / "one.jpg")
        os.symlink("one.jpg", folder / "two.jpg")
    os.symlink("loop-dir", root / "loop-dir")
    os.symlink("loop.cbz", root / "loop.cbz")


def test_symlink_loops_are_refused_members_with_a_reason(tmp_path: Path) -> None:
    # Given loops of one link and of two, at the root and in a folder collection
    root = tmp_path / "library"
    _library_with_loops(root)

    # When the root is searched for collections and each is scanned
    found = {path.name: list(list_members(path, kind, str(root))) for path, kind in discover(root)}

    # Then each loop is a refused member that says so, and the good pictures are members
    assert sorted(found) == ["album", "library"]
    for name, members in found.items():
        by_name = {m.path: m for m in members}
        assert by_name["good.jpg"].supported and not by_name["good.jpg"].refused
        loops = ["self.jpg", "one.jpg", "two.jpg"]
        loops += ["loop-dir", "loop.cbz"] if name == "library" else []
        for loop in loops:
            assert by_name[loop].refused == "a symbolic link loop", (name, loop)
            assert not by_name[loop].supported


def test_a_loop_given_as_a_path_is_a_clear_error(tmp_path: Path) -> None:
    # Given a library root holding a loop, and a root that is itself one
    root = tmp_path / "library"
    _library_with_loops(root)
    os.symlink("loop-root", tmp_path / "loop-root")

    # When the loop is resolved as a collection to register, Then it is refused, saying why
    with pytest.raises(InvalidInput, match="is a symbolic link loop"):
        resolve_under_roots(root / "loop-dir", [str(root)])
    # And a root that is a loop holds nothing, without hiding the good ones
    real, base = resolve_under_roots(root / "album", [str(tmp_path / "loop-root"), str(root)])
    assert (real, base) == (root / "album", root)


def test_a_link_inside_its_collection_is_followed_once(tmp_path: Path) -> None:
    # Given links to a picture of the same folder: by name, by absolute path, and a chain
    album = tmp_path / "album"
    album.mkdir()
    (album / "page.jpg").write_bytes(picture())
    os.symlink("page.jpg", album / "cover.jpg")
    os.symlink(album / "page.jpg", album / "absolute.jpg")
    os.symlink("cover.jpg", album / "chain.jpg")

    # When the folder is scanned and its members rendered
    members = {m.path: m for m in list_members(album, "folder", str(tmp_path))}
    made = {name: outcome(ref) for name, ref in refs(album, tmp_path).items()}

    # Then a link to a file of its collection is a member like the file, a chain is refused
    assert made == {"page.jpg": "made", "cover.jpg": "made", "absolute.jpg": "made"}
    assert members["chain.jpg"].refused.startswith("a symlink to another symlink")


def _secret_copy(original: Path, outside: Path) -> Path:
    """A private file outside the library, with the same bytes, size and mtime."""
    outside.mkdir(exist_ok=True)
    secret = outside / original.name
    shutil.copy2(original, secret)
    return secret


def test_a_file_swapped_for_a_link_after_the_scan_is_not_read(tmp_path: Path) -> None:
    # Given a scanned picture, then swapped for a link to a private file that looks the same
    album = tmp_path / "library" / "album"
    album.mkdir(parents=True)
    (album / "a.jpg").write_bytes(picture())
    ref = refs(album, tmp_path / "library")["a.jpg"]
    secret = _secret_copy(album / "a.jpg", tmp_path / "private")
    (album / "a.jpg").unlink()
    os.symlink(secret, album / "a.jpg")

    # When it renders, Then it is not read: the image is gone as scanned, scan again
    with pytest.raises(SourceMissing, match=r"symbolic link.*not followed.*scan the collection"):
        render_member(ref, [THUMB], 100_000_000, LIMIT)


def test_a_folder_on_the_way_swapped_for_a_link_is_not_followed(tmp_path: Path) -> None:
    # Given a scanned folder collection, then its folder swapped for a link to a private
    # folder holding the same-looking file
    root = tmp_path / "library"
    album = root / "album"
    album.mkdir(parents=True)
    (album / "a.jpg").write_bytes(picture())
    ref = refs(album, root)["a.jpg"]
    _secret_copy(album / "a.jpg", tmp_path / "private")
    shutil.rmtree(album)
    os.symlink(tmp_path / "private", album)

    # When it renders, or is scanned again, Then the link is not followed
    with pytest.raises(SourceMissing, match="album is a symbolic link now, not followed"):
        render_member(ref, [THUMB], 100_000_000, LIMIT)
    with pytest.raises(SourceMissing, match="album is a symbolic link now"):
        list(list_members(album, "folder", str(root)))


def test_an_archive_swapped_for_a_link_is_not_read(tmp_path: Path) -> None:
    # Given a scanned archive, then swapped for a link to a private copy of it
    root = tmp_path / "library"
    root.mkdir()
    with zipfile.ZipFile(root / "book.cbz", "w") as archive:
        archive.writestr("p.jpg", picture())
    (ref,) = refs(root / "book.cbz", root).values()
    secret = _secret_copy(root / "book.cbz", tmp_path / "private")
    (root / "book.cbz").unlink()
    os.symlink(secret, root / "book.cbz")

    # When its member renders, Then it is not read
    with pytest.raises(SourceMissing, match=r"book\.cbz is a symbolic link now"):
        render_member(ref, [THUMB], 100_000_000, LIMIT)


def test_a_file_changed_since_the_scan_is_not_rendered(tmp_path: Path) -> None:
    # Given a scanned picture and a scanned archive member, both changed afterwards
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.jpg").write_bytes(picture())
    with zipfile.ZipFile(tmp_path / "book.cbz", "w") as archive:
        archive.writestr("p.jpg", picture())
    file_ref = refs(album, tmp_path)["a.jpg"]
    (member_ref,) = refs(tmp_path / "book.cbz", tmp_path).values()
    (album / "a.jpg").write_bytes(picture((640, 480)))
    with zipfile.ZipFile(tmp_path / "book.cbz", "w") as archive:
        archive.writestr("p.jpg", picture((640, 480)))

    # When they render, Then neither is: the message says what changed and what to do
    for ref in (file_ref, member_ref):
        with pytest.raises(SourceMissing, match=r"changed since the scan.*scan the collection"):
            render_member(ref, [THUMB], 100_000_000, LIMIT)


def test_a_fifo_swapped_in_does_not_hang_the_render(tmp_path: Path) -> None:
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.jpg").write_bytes(picture())
    ref = refs(album, tmp_path)["a.jpg"]
    (album / "a.jpg").unlink()
    os.mkfifo(album / "a.jpg")
    with pytest.raises(SourceMissing, match="no longer a regular file"):
        render_member(ref, [THUMB], 100_000_000, LIMIT)


# --- messages and the unexpected -------------------------------------------------------------

MARK = b"QZXMARKQZX"


def test_no_failure_message_holds_bytes_of_the_file(tmp_path: Path) -> None:
    # Given files that carry a marker where decoders and zipfile quote what they read
    album = tmp_path / "album"
    album.mkdir()
    samples = {
        "text.jpg": MARK + b" these are notes",
        "number.png": b"P6\n" + MARK + b"\n",  # PPM: "invalid literal for int(): b'...'"
        "tiff.tif": b"II*\x00" + MARK * 4,
        "bmp.bmp": b"BM" + MARK * 10,
        "gif.gif": b"GIF89a" + MARK * 10,
        "jpeg.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + MARK * 20,
        "icon.jpg": b"\x00\x00\x01\x00" + MARK * 4,
    }
    for name, data in samples.items():
        (album / name).write_bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("p.jpg", MARK * 50)
        archive.writestr("q.jpg", picture())
    data = bytearray(buffer.getvalue())
    # q.jpg's local header names the marker: "File name in directory ... and header b'...'"
    local = data.index(b"q.jpg")
    data[local : local + 5] = MARK[:5]
    (tmp_path / "book.cbz").write_bytes(bytes(data))

    # When each renders
    messages = {}
    for collection in (album, tmp_path / "book.cbz"):
        for name, ref in refs(collection, tmp_path).items():
            with pytest.raises(RenderError) as caught:
                render_member(ref, [THUMB], 100_000_000, LIMIT)
            messages[name] = str(caught.value)

    # Then every one failed with a message that quotes none of it
    assert len(messages) == len(samples) + 2
    for name, message in messages.items():
        assert "QZX" not in message and "b'" not in message and "\\x" not in message, (
            name,
            message,
        )


def test_an_exception_nobody_expected_is_a_failed_outcome_marked_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a decoder that raises what no decoder is known to raise
    (tmp_path / "a.jpg").write_bytes(picture())
    ref = refs(tmp_path, tmp_path.parent)["a.jpg"]

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'tile'")

    monkeypatch.setattr(render_module, "_orientation", broken)

    # When it renders, Then it is a RenderError (a failed outcome, not an escape), marked
    with pytest.raises(CorruptImage, match="unexpected AttributeError while decoding") as caught:
        render_member(ref, [THUMB], 100_000_000, LIMIT)
    assert caught.value.unexpected and isinstance(caught.value.__cause__, AttributeError)


def test_a_content_hash_reads_through_the_same_checks(tmp_path: Path) -> None:
    # Given an archive with a good page and an encrypted one
    expected = hostile_archive(tmp_path / "hostile.cbz", bomb_bytes=LIMIT)
    members = refs(tmp_path / "hostile.cbz", tmp_path)

    # When each is hashed, Then the good one has a digest and the others their RenderError
    assert len(member_digest(members["001.jpg"], LIMIT)) == 32
    for name in ("encrypted.jpg", "deflate64.jpg", "bomb.jpg", "bad-crc.jpg"):
        with pytest.raises(RenderError) as caught:
            member_digest(members[name], LIMIT)
        assert caught.value.error_class == expected[name]


def test_a_file_that_grows_while_it_is_read_is_stopped_at_the_limit(tmp_path: Path) -> None:
    # Given a picture under the limit, opened for reading, that then grows past it
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.jpg").write_bytes(picture())
    ref = refs(album, tmp_path)["a.jpg"]
    # When all of it is read, Then no more than the limit is, and it says so
    with (
        pytest.raises(SourceTooLarge, match=f"at least {LIMIT + 1:,} bytes"),
        open_member(ref, max_bytes=LIMIT) as fp,
    ):
        with open(album / "a.jpg", "ab") as grow:
            grow.write(bytes(LIMIT))
        assert len(fp.read(LIMIT + 1000)) <= LIMIT

"""The pure rules of what is imagecache's own: layout names, partial names, the marker, and
which cache folders maintenance may touch."""

from __future__ import annotations

import uuid

import pytest

from domain.ids import (
    TMP_SUFFIX,
    is_layout_dir,
    is_valid_id,
    parse_rendition_relpath,
    partial_name,
    partial_target,
    rendition_relpath,
)
from domain.ownership import (
    MARKER_MAX_BYTES,
    MARKER_NAME,
    HostMark,
    LeftAlone,
    Marker,
    classify_entry,
    folder_id_of,
    judge_folder,
    parse_marker,
)


def image() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize("kind", ["cache", "thumbnail"])
@pytest.mark.parametrize("ext", ["jpg", "webp", "avif"])
def test_every_rendition_path_imagecache_makes_parses_back(kind: str, ext: str) -> None:
    # Given the path of a rendition of any kind and format
    iid = image()
    path = rendition_relpath(kind, iid, ext)
    # When it is parsed
    # Then its kind and image id come back
    assert parse_rendition_relpath(path) == (kind, iid)


@pytest.mark.parametrize(
    "path",
    [
        "cache/report.pdf",
        "cache/ab/cd/notes.txt",
        "thumbnail/x/y/z/photo.jpg",
        "photos/ab/cd/" + "abcd" + "0" * 28 + ".jpg",  # not a kind
        "cache/ab/cd/" + "abcd" + "0" * 28 + ".png",  # not an output format
        "cache/ab/cd/" + "abcd" + "0" * 27 + ".jpg",  # an id one digit short
        "cache/ab/cd/" + "ABCD" + "0" * 28 + ".jpg",  # not lower-case hex
        "cache/ff/cd/" + "abcd" + "0" * 28 + ".jpg",  # in another id's folder
        "cache/ab/cd/ef/" + "abcd" + "0" * 28 + ".jpg",  # one level too deep
        "cache/ab/" + "abcd" + "0" * 28 + ".jpg",  # one level too shallow
        "cache/ab/cd/../" + "abcd" + "0" * 28 + ".jpg",
        "/cache/ab/cd/" + "abcd" + "0" * 28 + ".jpg",
        "cache/ab/cd/" + "abcd" + "0" * 28 + ".jpg/",
        "cache/ab/cd/" + "abcd" + "0" * 28 + ".jpg\n",
    ],
)
def test_anything_else_is_not_a_rendition_path(path: str) -> None:
    assert parse_rendition_relpath(path) is None


def test_an_id_with_a_trailing_newline_is_no_id() -> None:
    assert is_valid_id("abcdef12") and not is_valid_id("abcdef12\n")


def test_layout_folders_are_the_kinds_and_two_levels_of_two_hex_digits() -> None:
    assert all(is_layout_dir(p) for p in ("cache", "thumbnail", "cache/ab", "thumbnail/ab/0f"))
    for other in ("photos", "cache/x", "cache/ab/cd/ef", "cache/abc", "cache/AB", "cache/"):
        assert not is_layout_dir(other), other


def test_a_partial_name_leads_back_to_its_rendition_only_when_that_has_the_layout() -> None:
    # Given the temporary name a write of a rendition uses, from a host with dots in its name
    target = rendition_relpath("cache", image(), "jpg")
    folder, name = target.rsplit("/", 1)
    tmp = f"{folder}/{partial_name(name, 'host_example_org.4242', 140001)}"

    # When its target is asked for, and for names that are not such partials
    # Then only the real partial leads to its rendition
    assert partial_target(tmp) == target
    assert partial_target(f"{folder}/.notes.txt.h.1.2{TMP_SUFFIX}") is None
    assert partial_target(f"{folder}/{partial_name('x.jpg', 'h.1', 2)}") is None
    assert partial_target(f"{folder}/.{name}.h.pid.2{TMP_SUFFIX}") is None
    assert partial_target(f"{folder}/{name}.h.1.2{TMP_SUFFIX}") is None  # no leading dot
    assert partial_target(target) is None


def test_entries_are_classified_by_name_and_type() -> None:
    rendition = rendition_relpath("thumbnail", image(), "webp")
    folder, name = rendition.rsplit("/", 1)
    partial = f"{folder}/{partial_name(name, 'h.1', 2)}"
    assert classify_entry(MARKER_NAME, "file") == "marker"
    assert classify_entry(rendition, "file") == "rendition"
    assert classify_entry(partial, "file") == "partial"
    assert classify_entry("thumbnail/ab", "dir") == "layout_dir"
    # A link, a mount or a device is never ours, whatever its name
    for kind in ("symlink", "mount", "other"):
        assert classify_entry(rendition, kind) == "foreign"  # type: ignore[arg-type]
        assert classify_entry("cache/ab", kind) == "foreign"  # type: ignore[arg-type]
    assert classify_entry(f"cache/{MARKER_NAME}", "file") == "foreign"  # only at the top
    assert classify_entry("cache/report.pdf", "file") == "foreign"
    assert classify_entry("thumbnail/x", "dir") == "foreign"
    assert classify_entry(MARKER_NAME, "dir") == "foreign"


def test_a_marker_reads_back_and_nothing_else_reads_as_one() -> None:
    marker = Marker(folder_id_of("/srv/cache"), image())
    assert parse_marker(marker.text().encode()) == marker
    for other in (
        b"",
        b"not json",
        b"[1, 2]",
        b'{"folder_id": "a", "installation_id": "b"}',  # no kind: not ours
        b'{"kind": "imagecache cache folder", "folder_id": "", "installation_id": "b"}',
        b'{"kind": "imagecache cache folder", "folder_id": 3, "installation_id": "b"}',
        b"\xff\xfe",
        marker.text().encode() + b" " * MARKER_MAX_BYTES,  # too large for a marker
    ):
        assert parse_marker(other) is None, other


PATH = "/srv/cache"
FID = folder_id_of(PATH)
OURS = "1" * 32
HERE = (2049, 1234)


def judge(**changes: object) -> object:
    """judge_folder for a healthy folder marked from this host, with some facts changed."""
    facts: dict[str, object] = {
        "added": True, "overlap": None, "identity": HERE, "marker": Marker(FID, OURS),
        "marker_present": True, "installation": OURS, "host": "here",
        "marks": [HostMark("here", HERE)],
    }  # fmt: skip
    facts.update(changes)
    fid = str(facts.pop("fid", FID))
    return judge_folder(fid, PATH, **facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "trust"),
        ({"marks": [HostMark("here", (1, 1)), HostMark("here", HERE)]}, "trust"),  # the last
        ({"added": False}, "unknown"),  # the statistics name a folder the log never added
        ({"fid": folder_id_of("/elsewhere")}, "unknown"),  # an id not of this path
        ({"overlap": "the library root /srv"}, "overlaps"),
        ({"identity": None}, "missing"),
        ({"identity": (2049, 99)}, "replaced"),  # another directory at the path
        ({"identity": (77, 1234)}, "replaced"),  # the same inode on another device
        ({"marks": [HostMark("here", HERE), HostMark("here", (1, 1))]}, "replaced"),
        ({"marker": None, "marker_present": False}, "no_marker"),
        ({"marker": None}, "foreign_marker"),  # something unreadable at the marker's name
        ({"marker": Marker(FID, "2" * 32)}, "foreign_marker"),  # another installation's
        ({"marker": Marker(folder_id_of("/other"), OURS)}, "foreign_marker"),
        ({"marks": [HostMark("there", (5, 5))]}, "record"),  # a host new to this folder
        ({"marks": []}, "adopt"),  # from before markers
        ({"marks": [], "marker": None, "marker_present": False}, "adopt"),
        ({"marks": [], "marker": Marker(FID, "2" * 32)}, "foreign_marker"),
    ],
)
def test_which_folders_maintenance_may_touch(changes: dict[str, object], expected: str) -> None:
    # Given what the log, the settings and the disk say of a folder
    # When it is judged
    verdict = judge(**changes)
    # Then maintenance touches it only with the marker, the recorded directory and no overlap
    if isinstance(verdict, LeftAlone):
        assert verdict.reason == expected
        assert verdict.message and verdict.hint and PATH in verdict.line()
    else:
        assert verdict == expected


def test_a_folder_left_alone_says_what_to_do() -> None:
    replaced = judge(identity=(2049, 99))
    assert isinstance(replaced, LeftAlone)
    assert f"imagecache folders add {PATH}" in replaced.hint
    assert replaced.as_dict() == {
        "id": FID, "path": PATH, "reason": "replaced", "message": replaced.message,
        "hint": replaced.hint,
    }  # fmt: skip

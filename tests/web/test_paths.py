"""checked_path: what no file system takes is refused where a path comes in, API and CLI alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import InvalidInput
from ops import library
from ops.paths import NAME_MAX, PATH_MAX, checked_path
from tests.web.conftest import Site


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "the path is empty"),
        ("  ", "the path is empty"),
        ("/srv/a\x00b", "NUL character"),
        ("/srv/\udcff", "not valid UTF-8"),  # a non-UTF-8 name, as the command line passes it
        ("/srv/" + "n" * (NAME_MAX + 1), f"{NAME_MAX + 1} bytes long"),
        ("/srv/" + "é" * 128, "256 bytes long"),  # 128 characters are 256 bytes
        ("/" + "/".join(["d" * 100] * 41), f"at most {PATH_MAX}"),
    ],
)
def test_what_no_file_system_takes_is_refused(raw: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        checked_path(raw)


def test_relative_paths_are_refused_only_when_an_absolute_one_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert checked_path("album") == Path("album")
    with pytest.raises(InvalidInput, match="not an absolute path"):
        checked_path("album", absolute=True)
    assert checked_path(str(tmp_path), absolute=True) == tmp_path


def test_missing_paths_pass_and_unusable_ones_say_why(tmp_path: Path) -> None:
    # Missing is the use case's business (a cache folder is created), so it passes
    assert checked_path(tmp_path / "missing" / "deeper") == tmp_path / "missing" / "deeper"
    (tmp_path / "file").write_text("x")
    assert checked_path(tmp_path / "file" / "below") == tmp_path / "file" / "below"
    # A link to itself cannot be looked at: that is said here, not raised deep down
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(InvalidInput, match=r"is a symbolic link loop"):
        checked_path(loop)
    # The longest name allowed passes
    assert checked_path(tmp_path / ("n" * NAME_MAX)).name == "n" * NAME_MAX


@pytest.mark.parametrize(
    "raw",
    ["/x/a\x00b", "/x/" + "n" * 300, "/x/\udcff", "relative/../" + "m" * 256],
)
def test_the_command_line_use_cases_refuse_them_too(site: Site, raw: str) -> None:
    # Given the use cases the CLI calls (collections add, folders add, up PATH)
    for add in (library.add_collections, library.add_folder, library.add_root):
        # Then each refuses with a clear error instead of an OSError or a ValueError
        with pytest.raises(InvalidInput):
            add(site.app, raw)

"""The API token is never empty: its file appears whole; a bad file, a blank setting: refused."""

from __future__ import annotations

import multiprocessing
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from ops.settings import Settings
from web.auth import MIN_TOKEN, TOKEN_FILE, TokenRefused, load_or_create_token

ROUNDS = 25
PROCESSES = 3
THREADS = 4


def _settings(data: Path) -> Settings:
    return Settings.from_env({"IMAGECACHE_DATA": str(data)})


@pytest.mark.parametrize("content", ["", "\n", "   \n", "short-token\n", b"\xff\xfe" * 10])
def test_an_empty_or_short_token_file_is_refused(tmp_path: Path, content: str | bytes) -> None:
    # Given a token file that holds no usable token (left by a crash, or written by hand)
    (tmp_path / TOKEN_FILE).write_bytes(content if isinstance(content, bytes) else content.encode())

    # When the token is loaded, Then it is refused with what to do, not used
    with pytest.raises(TokenRefused) as refused:
        load_or_create_token(_settings(tmp_path), {})
    message = str(refused.value)
    assert str(tmp_path / TOKEN_FILE) in message
    assert f"at least {MIN_TOKEN}" in message
    assert "delete the file" in message and "IMAGECACHE_API_TOKEN" in message


def test_a_token_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    # Given a folder where the token file should be
    (tmp_path / TOKEN_FILE).mkdir()
    with pytest.raises(TokenRefused, match="cannot read the API token file"):
        load_or_create_token(_settings(tmp_path), {})


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_token_setting_is_refused(tmp_path: Path, blank: str) -> None:
    # Given IMAGECACHE_API_TOKEN set, but to nothing: When the token is loaded
    with pytest.raises(TokenRefused, match="IMAGECACHE_API_TOKEN is set but blank"):
        load_or_create_token(_settings(tmp_path), {"IMAGECACHE_API_TOKEN": blank})
    # Then no token file was made in its place either
    assert not (tmp_path / TOKEN_FILE).exists()


def test_a_made_token_file_is_whole_private_and_alone(tmp_path: Path) -> None:
    # Given no token file: When the token is loaded twice
    first = load_or_create_token(_settings(tmp_path / "data"), {})
    again = load_or_create_token(_settings(tmp_path / "data"), {})

    # Then one token was made, mode 0600, and no temporary file was left beside it
    assert first == again and len(first) >= MIN_TOKEN
    file = tmp_path / "data" / TOKEN_FILE
    assert file.read_text() == first + "\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert [p.name for p in file.parent.iterdir()] == [TOKEN_FILE]


def _race(dirs: list[str], barrier: Any, out: Any) -> None:
    """Load the token of each folder at the same moment as every other racer."""

    def one() -> None:
        for d in dirs:
            barrier.wait()
            try:
                out.put((d, load_or_create_token(_settings(Path(d)), {})))
            except Exception as exc:  # a refusal is a result the test must see
                out.put((d, f"error: {exc}"))

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_racing_processes_and_threads_get_the_same_token(tmp_path: Path) -> None:
    # Given many fresh data folders, and processes with threads that all start each one
    # at the same moment (as two `imagecache serve` started together would)
    dirs = [str(tmp_path / f"data-{i}") for i in range(ROUNDS)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES * THREADS, timeout=60)
    out = ctx.Queue()
    racers = [ctx.Process(target=_race, args=(dirs, barrier, out)) for _ in range(PROCESSES)]
    for p in racers:
        p.start()
    results = [out.get(timeout=120) for _ in range(ROUNDS * PROCESSES * THREADS)]
    for p in racers:
        p.join(timeout=30)

    # Then in every folder every racer got the same token, never an empty one, nor an error
    by_dir: dict[str, set[str]] = {}
    for d, token in results:
        by_dir.setdefault(d, set()).add(token)
    assert len(by_dir) == ROUNDS
    for d, tokens in by_dir.items():
        assert len(tokens) == 1, (d, tokens)
        (token,) = tokens
        assert len(token) >= MIN_TOKEN and not token.startswith("error"), (d, token)
        assert (Path(d) / TOKEN_FILE).read_text().strip() == token

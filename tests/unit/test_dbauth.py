"""The embedded database's credentials: made once per data folder, 0600, never shown."""

from __future__ import annotations

import json
import stat
import urllib.parse
from pathlib import Path

import pytest

from domain.errors import ServiceUnavailable
from ops import dbauth
from ops.dbauth import DbCredentials


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_made_once_private_and_then_kept(tmp_path: Path) -> None:
    # Given a data folder with no credentials
    path = tmp_path / dbauth.CREDENTIALS_FILE

    # When they are asked for twice
    first = dbauth.load_or_create(path)
    second = dbauth.load_or_create(path)

    # Then they were made once, 0600, with a long random password
    assert first == second and _mode(path) == 0o600
    assert first.user == dbauth.USER and len(first.password) >= 40
    assert dbauth.load_or_create(tmp_path / "other.json").password != first.password


def test_the_stored_keys_are_those_of_the_password(tmp_path: Path) -> None:
    # Given credentials
    from secantus.auth import StoredCredentials, derive_credentials

    creds = dbauth.load_or_create(tmp_path / dbauth.CREDENTIALS_FILE)

    # When the keys are derived again from the password and the stored salt
    record = creds.record()["credentials"][dbauth.MECHANISM]
    kept = StoredCredentials.from_doc({dbauth.MECHANISM: record})
    again = derive_credentials(creds.password, iterations=kept.iteration_count, salt=kept.salt)

    # Then they match what the server will check logins against
    assert (again.stored_key, again.server_key) == (kept.stored_key, kept.server_key)
    assert kept.iteration_count == dbauth.ITERATIONS


def test_the_password_is_in_the_client_uri_only_never_in_its_repr() -> None:
    # Given credentials whose password needs quoting in a URI
    creds = DbCredentials("imagecache", "p@ss/w:rd%", {"salt": "s"})

    # When a client URI is made for an address, and the credentials are printed
    uri = creds.uri("mongodb://127.0.0.1:4242/")
    shown = repr(creds) + str(creds)

    # Then the URI carries them, decodable, with the auth database; the repr does not
    parts = urllib.parse.urlsplit(uri)
    assert (parts.hostname, parts.port) == ("127.0.0.1", 4242)
    assert urllib.parse.unquote(parts.password or "") == "p@ss/w:rd%"
    assert parts.query == "authSource=admin&authMechanism=SCRAM-SHA-256"
    assert "p@ss" not in shown and "salt" not in shown


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda p: p.unlink(), "is missing"),
        (lambda p: p.write_text("{not json"), "is damaged"),
        (lambda p: p.write_text(json.dumps({"user": "x"})), "is damaged"),
        (lambda p: p.chmod(0o644), "is not private to this user"),
    ],
    ids=["missing", "not-json", "incomplete", "readable-by-others"],
)
def test_a_bad_credentials_file_is_a_clear_error_and_the_opener_replaces_it(
    tmp_path: Path, damage: object, said: str
) -> None:
    # Given credentials, then damaged one way
    path = tmp_path / dbauth.CREDENTIALS_FILE
    old = dbauth.load_or_create(path)
    damage(path)  # type: ignore[operator]

    # When a process that joins a running server loads them
    with pytest.raises(ServiceUnavailable) as caught:
        dbauth.load(path)

    # Then it is told what is wrong with which file, and what to do
    assert said in str(caught.value) and str(path) in str(caught.value)
    assert caught.value.hint
    # And the process that opens the database makes new ones (a password that others may
    # have read is not kept), private again
    new = dbauth.load_or_create(path)
    assert new.password != old.password and _mode(path) == 0o600
    assert dbauth.load(path) == new

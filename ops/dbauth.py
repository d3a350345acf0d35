"""The embedded database's one user: its credentials, made once per data folder, kept 0600.

The embedded server requires SCRAM authentication, and only the data folder's processes
can read `db-credentials.json`, so only they get in. The password is 32 random bytes; the
file also keeps the SCRAM keys derived from it, so that the process which opens the
database can set up the user before the server listens without deriving them again
(PBKDF2 costs milliseconds that every short command would pay).

A client takes the password in its URI (`DbCredentials.uri`): that URI lives in memory only;
the address file, the log and argv carry the address alone.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.errors import ServiceUnavailable
from ops.private import OTHERS, create_private, write_private

CREDENTIALS_FILE = "db-credentials.json"
USER = "imagecache"
AUTH_DB = "admin"
MECHANISM = "SCRAM-SHA-256"
# MongoDB's default. The password is random, so these iterations protect nothing a guess
# could find; they cost one derivation per client (pymongo keeps the keys per client).
ITERATIONS = 15000
# The data folder's processes own the whole server: they create and drop databases.
ROLES = [{"role": "root", "db": AUTH_DB}]


@dataclass(frozen=True)
class DbCredentials:
    """The user, its password, and the SCRAM keys the server stores for it."""

    user: str
    password: str = field(repr=False)
    scram: dict[str, Any] = field(repr=False)

    def uri(self, address: str) -> str:
        """`address` (mongodb://host:port/) with these credentials: for a client only."""
        parts = urllib.parse.urlsplit(address)
        user = urllib.parse.quote(self.user, safe="")
        password = urllib.parse.quote(self.password, safe="")
        query = f"authSource={AUTH_DB}&authMechanism={MECHANISM}"
        return urllib.parse.urlunsplit(
            parts._replace(netloc=f"{user}:{password}@{parts.netloc}", query=query)
        )

    def record(self) -> dict[str, Any]:
        """The user record as the server keeps it (what `createUser` would store)."""
        return {
            "_id": f"{AUTH_DB}.{self.user}",
            "user": self.user,
            "db": AUTH_DB,
            "credentials": {MECHANISM: dict(self.scram)},
            "roles": [dict(r) for r in ROLES],
            "mechanisms": [MECHANISM],
        }


def generate() -> DbCredentials:
    """New credentials: a random password and its SCRAM-SHA-256 keys."""
    from secantus.auth import derive_credentials

    password = secrets.token_urlsafe(32)
    keys = derive_credentials(password, iterations=ITERATIONS).to_doc()[MECHANISM]
    return DbCredentials(USER, password, dict(keys))


def _encode(creds: DbCredentials) -> bytes:
    doc = {"user": creds.user, "password": creds.password, "scram_sha_256": creds.scram}
    return json.dumps(doc, indent=1).encode() + b"\n"


def load(path: Path) -> DbCredentials:
    """The credentials in `path`, or ServiceUnavailable saying what is wrong with the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ServiceUnavailable(
            f"the embedded database's credentials file {path} is missing",
            hint="stop the imagecache processes of this data folder and start again: the"
            " first one makes new credentials",
        ) from None
    except OSError as exc:
        raise ServiceUnavailable(
            f"cannot read the embedded database's credentials {path}: {exc.strerror}",
            hint="run imagecache as the user who owns the data folder (IMAGECACHE_DATA)",
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & OTHERS:
            raise ServiceUnavailable(
                f"the embedded database's credentials file {path} is not private to this"
                f" user (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})",
                hint=f"delete {path} and start imagecache again as the data folder's owner:"
                " it makes new credentials",
            )
        raw = f.read()
    try:
        doc = json.loads(raw)
        return DbCredentials(str(doc["user"]), str(doc["password"]), dict(doc["scram_sha_256"]))
    except (ValueError, KeyError, TypeError):
        raise ServiceUnavailable(
            f"the embedded database's credentials file {path} is damaged",
            hint=f"stop the imagecache processes of this data folder, delete {path} and start"
            " again: the first one makes new credentials",
        ) from None


def load_or_create(path: Path) -> DbCredentials:
    """The credentials in `path`; made first if there are none (by one process, 0600)."""
    if not path.exists():
        create_private(path, _encode(generate()))  # False: another process was first
    try:
        return load(path)
    except ServiceUnavailable:
        if not path.exists():
            raise
        # Only the process that opens the database calls this: one whose file is damaged
        # or not private makes new credentials, and sets the user up with them.
        write_private(path, _encode(generate()))
        return load(path)


def provision(storage: Any, creds: DbCredentials) -> list[str]:
    """Make `creds` the one user of `storage` (a SecantusDB Storage, before the server
    listens); the other users it held, now removed.

    A database made by an older version has no user: it gets this one. Any other user could
    only have been added by someone who reached the server while it had no authentication."""
    wanted = creds.record()
    found = storage.get_user(AUTH_DB, creds.user)
    if found is None or any(found.get(k) != v for k, v in wanted.items()):
        storage.add_user(AUTH_DB, creds.user, wanted, replace=True)
    removed = []
    for user in storage.list_users(None, limit=1000):
        name, db = str(user.get("user", "")), str(user.get("db", ""))
        if (db, name) != (AUTH_DB, creds.user):
            storage.drop_user(db, name)
            removed.append(f"{name}@{db}")
    return removed

"""Error details without server paths: the web layer's one place for it.

The use cases write their messages for the operator at a terminal, who is helped by
"cache folder /srv/cache overlaps the library root /srv/photos". Over HTTP the same
text would tell any caller where things are on the server. So before a problem is
sent, `Redactor.path_free` rewrites the paths in its detail:

- the path the request sent (and its normalised or resolved forms) stays as sent;
- a cache folder becomes `cache folder <id>`, a library root `library root "<name>"`,
  the data folder `the data folder`, a path below one of them keeps only its tail;
- a collection's path becomes `collection "<name>" (<id>)`;
- any other absolute path becomes `(a path on the server)`.

Paths are recognised as tokens: a "/" at the start of a word, up to the next blank,
quote, comma or bracket. API routes (/api/v1/...) are not paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from domain.ids import collection_id
from ops import library
from ops.bootstrap import App

log = logging.getLogger("imagecache.web")

STOP = r"\s'\"`,;()\[\]{}<>"  # what ends a path in a message
START = r"\s'\"`(\[<="  # what may come just before one
TOKEN = re.compile(rf"(?<![^{START}])/(?!api/v1/)[^{STOP}]+")
HIDDEN = "(a path on the server)"
PLACE = "\ue000{}\ue001"  # private-use characters: stand for a sent path meanwhile
PLACE_RE = "\ue000([0-9]+)\ue001"


@dataclass(frozen=True)
class Known:
    """A server path and how a message may name it instead."""

    path: str
    word: str  # what the messages call such a thing, e.g. "cache folder"
    label: str  # its id or name


def _forms(path: str) -> list[str]:
    """The path as given, normalised and resolved (each distinct, longest first)."""
    forms = {path, str(Path(path))}
    with contextlib.suppress(OSError, ValueError):
        forms.add(os.path.realpath(path))
    return sorted((f for f in forms if f and f != "/"), key=len, reverse=True)


def _whole(path: str, tail: bool) -> re.Pattern[str]:
    """`path` as a whole path in a text (not a prefix of a longer name); with `tail`, the
    rest of a path below it too."""
    below = rf"(?P<tail>/[^{STOP}]*)?" if tail else ""
    return re.compile(rf"(?<![^{START}]){re.escape(path)}{below}(?=[.:]?(?:[{STOP}]|$))")


class Redactor:
    """Rewrites the server paths in a message, looking up names in the read models."""

    def __init__(self, app: App) -> None:
        self._app = app

    def known(self) -> list[Known]:
        """The cache folders, the library roots and the data folder, longest path first."""
        app = self._app
        found = [
            Known(str(doc["path"]), "cache folder", str(doc["_id"]))
            for doc in app.read.folder_docs(include_removed=True)
        ]
        found += [Known(r, "library root", f'"{Path(r).name}"') for r in library.library_roots(app)]
        found.append(Known(str(app.settings.data_dir), "", "the data folder"))
        spread = [Known(f, k.word, k.label) for k in found for f in _forms(k.path)]
        return sorted(spread, key=lambda k: len(k.path), reverse=True)

    def _collection(self, match: re.Match[str]) -> str:
        """A collection's name and id for its path; any other path as it was."""
        token = match.group(0)
        path = token.rstrip(".:")
        doc = self._app.read.collection(collection_id(path), include_removed=True)
        if doc is None:
            return token
        said = match.string[: match.start()].endswith("collection ")
        name = f'"{doc.get("name", "")}" ({doc["_id"]})'
        return ("" if said else "collection ") + name + token[len(path) :]

    def path_free(self, text: str, sent: Iterable[str]) -> str:
        """`text` naming no server path but those in `sent` (what the request itself sent)."""
        if not TOKEN.search(text):
            return text
        try:
            # The paths the request sent, in any form, stay as sent: set aside meanwhile.
            kept: list[str] = []
            for s in sorted({s for s in sent if s and s != "/"}, key=len, reverse=True):
                for form in _forms(s):
                    text, n = _whole(form, tail=False).subn(PLACE.format(len(kept)), text)
                    if n:
                        kept.append(s)
            if TOKEN.search(text):
                text = TOKEN.sub(self._collection, text)
                for k in self.known():
                    text = _whole(k.path, tail=True).sub(partial(_named, known=k), text)
                text = TOKEN.sub(_hidden, text)
            return re.sub(PLACE_RE, lambda m: kept[int(m.group(1))], text)
        except Exception:  # an error answer must never fail: hide every path instead
            log.exception("could not name the paths in an error message")
            return TOKEN.sub(_hidden, text)


def _hidden(match: re.Match[str]) -> str:
    token = match.group(0)
    return HIDDEN + token[len(token.rstrip(".:")) :]  # a full stop after the path stays


def _named(match: re.Match[str], known: Known) -> str:
    """The label for a known path (and the tail below it) found in a message."""
    before = match.string[: match.start()]
    said = not known.word or before.endswith(known.word + " ")  # "the cache folder <path>"
    name = known.label if said else f"{known.word} {known.label}"
    tail = match.group("tail") or ""
    end = tail[len(tail.rstrip(".:")) :]  # a full stop or colon after the path stays
    tail = tail[: len(tail) - len(end)].strip("/")
    return (f"{name} (at {tail})" if tail else name) + end

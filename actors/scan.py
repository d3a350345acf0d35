"""Register collections and scan them into `CollectionScanned` events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from actors.reading import member_digest
from actors.sources import ARCHIVES, SourceRef, discover, list_members, resolve_under_roots
from domain import events as ev
from domain.errors import InvalidInput, RenderError, UnknownCollection
from domain.ids import collection_id, image_id
from domain.ports import EventLog
from projections.readmodels import ReadModels

log = logging.getLogger("imagecache.scan")

PAGE = 1000


@dataclass(frozen=True)
class ScanResult:
    collection_id: str
    images: int
    added: int
    changed: int
    removed: int
    unsupported: int
    refused: tuple[str, ...] = ()  # "member: why", for members never read (or not hashed)
    error: str = ""  # the collection could not be read at all: it was left as it was


def register(
    events: EventLog, path: str | Path, roots: Sequence[str], *, known: Container[str] = (),
    removed: Mapping[str, str] | None = None, revive: bool = False,
) -> list[str]:  # fmt: skip
    """Register a collection, or every collection under a root; return their ids. Those in
    `known` are returned without being registered again. A removed collection (`removed`:
    id -> removal id) is left out, unless `revive` and `path` is its own: adding exactly
    that path registers it again (a scan of a root never does, even when the root is it)."""
    real, root = resolve_under_roots(path, roots)
    found: list[tuple[Path, str]]
    if real.is_file():
        if real.suffix.lower() not in (".zip", ".cbz"):
            raise InvalidInput(f"{real} is a file but not a ZIP/CBZ archive")
        found = [(real, "archive")]
    else:
        found = list(discover(real))
    removed = removed or {}
    registered = []
    for p, source in found:
        cid = collection_id(str(p))
        again = removed.get(cid, "")
        if cid in removed and not (revive and p == real):
            continue  # removed by the user: a scan of its root does not bring it back
        name = p.name if p != root else root.name
        registered.append(ev.CollectionRegistered(cid, str(p), str(root), source, name, again))
    events.append_many([e for e in registered if e.collection_id not in known])
    return [e.collection_id for e in registered]


def scan(events: EventLog, read: ReadModels, cid: str, *, content_hash: bool = False) -> ScanResult:
    """Compare a collection on disk with the `images` read model; record what changed.

    With `content_hash`, every image is read and hashed too: new bytes under an unchanged
    size and mtime (an in-place edit that kept the mtime) count as a change, and bump the
    image's content version so its renditions become stale."""
    doc = read.collection(cid)
    if doc is None:
        raise UnknownCollection(f"no collection {cid}")
    known = {d["_id"]: d for d in read.images_of(cid)}
    added: list[list[object]] = []
    changed: list[list[object]] = []
    hashed: list[list[object]] = []
    unsupported: list[list[str]] = []
    seen: set[str] = set()
    images = 0
    refused: list[str] = []
    root = str(doc.get("root") or "")
    try:
        members = list(list_members(Path(doc["path"]), doc["source"], root))
    except (InvalidInput, RenderError, OSError) as exc:
        # One unreadable archive or folder never stops the scan of the others; what was
        # known of it stays as it was (a disk that is away is not a removal).
        message = (
            f"{exc}; left as it was: fix it and scan again, or stop caching it with"
            f" `imagecache collections remove {cid}`"
        )
        log.warning("cannot scan collection %s: %s", cid, message)
        return ScanResult(cid, 0, 0, 0, 0, 0, error=message)
    for m in members:
        if m.refused:
            refused.append(f"{m.path}: refused, {m.refused}")
            continue
        iid = image_id(cid, m.path)
        seen.add(iid)
        before = known.get(iid)
        if not m.supported:
            if before is None or before.get("supported", True):
                unsupported.append([iid, m.path])
            continue
        images += 1
        row: list[object] = [iid, m.path, m.size, m.mtime]
        digest = ""
        if content_hash:
            ref = SourceRef(doc["path"], doc["source"], m.path, root, m.size, m.mtime)
            try:
                digest = member_digest(ref)
            except RenderError as exc:  # its render will fail the same way, as an outcome
                refused.append(f"{m.path}: not hashed, {exc}")
        version = int(before.get("version", 0)) if before else 0
        if before is None or not before.get("supported", True):
            added.append([*row, digest, version] if digest else row)
        elif before.get("size") != m.size or before.get("mtime") != m.mtime:
            changed.append([*row, digest, version] if digest else row)
        elif digest and before.get("hash") and before["hash"] != digest:
            changed.append([*row, digest, version + 1])
        elif digest and not before.get("hash"):
            hashed.append([iid, digest])
    if content_hash and doc["source"] == "archive":
        ARCHIVES.forget(doc["path"])  # opened once for all its members; not needed any more
    removed = [i for i, d in known.items() if i not in seen and d.get("supported", True)]
    gone_unsupported = [i for i, d in known.items() if i not in seen and not d.get("supported")]
    result = ScanResult(
        cid, images, len(added), len(changed), len(removed), len(unsupported), tuple(refused)
    )
    if not (added or changed or removed or unsupported or gone_unsupported or hashed):
        return result
    scan_id = uuid.uuid4().hex
    chunks: list[ev.CollectionScanned] = []
    rows = [("added", r) for r in added] + [("changed", r) for r in changed]
    rows += [("hashed", r) for r in hashed]
    for start in range(0, max(len(rows), 1), PAGE):
        part = rows[start : start + PAGE]
        chunks.append(
            ev.CollectionScanned(
                cid,
                scan_id,
                len(chunks),
                0,
                added=[r for k, r in part if k == "added"],
                changed=[r for k, r in part if k == "changed"],
                hashed=[[str(x) for x in r] for k, r in part if k == "hashed"],
            )
        )
    chunks[0] = replace(
        chunks[0], removed=removed, unsupported=unsupported, unsupported_removed=gone_unsupported
    )
    events.append_many([replace(c, parts=len(chunks)) for c in chunks])
    log.debug(  # one line per collection that changed: with -v
        "scanned %s: %d images, %d added, %d changed, %d removed, %d unsupported",
        doc["path"], images, len(added), len(changed), len(removed), len(unsupported),
    )  # fmt: skip
    return result

"""The event-replay tool: rebuild, verify, history, state at a position, export and import."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from domain.errors import InvalidInput
from domain.events import StoredEvent
from domain.projection import PROJECTIONS, UNORDERED_TABLES, fold
from domain.views import folder_view, job_view
from ops.bootstrap import App
from projections.projector import BOOKKEEPING, Projector, drop
from projections.readmodels import ReadModels

SHADOW = "shadow_"


def all_events(app: App, until: int | None = None) -> Iterator[StoredEvent]:
    after, head = 0, app.events.head()
    while after < head:
        batch = app.events.read(after=after, limit=5000)
        for s in batch:
            if until is not None and s.seq > until:
                return
            yield s
        after = batch[-1].seq if batch else after + 5000


def rebuild(app: App, names: Sequence[str]) -> int:
    """Drop projections and replay them from seq 0; return the position reached."""
    unknown = set(names) - set(PROJECTIONS)
    if unknown:
        raise InvalidInput(f"unknown projection {sorted(unknown)[0]!r}; one of {list(PROJECTIONS)}")
    drop(app.db, names)
    projector = Projector(
        app.events, app.db, app.clock, projections=names, gap_timeout=1.0, batch=5000
    )
    position = projector.catch_up()
    app.read.ensure_indexes()  # dropping the collections dropped their indexes
    return position


def _clean(doc: dict[str, Any], unordered: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in BOOKKEEPING}
    return _sorted_arrays(out) if unordered else out


def _sorted_arrays(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted(value, key=repr)
    return value


def verify(app: App, attempts: int = 3) -> tuple[int, list[str]]:
    """Rebuild every projection into shadow collections and diff with live; (position, diffs)."""
    diffs: list[str] = []
    position = 0
    for _ in range(attempts):
        position = app.projector.catch_up()
        drop(app.db, list(PROJECTIONS), prefix=SHADOW)
        shadow = Projector(
            app.events, app.db, app.clock, prefix=SHADOW, gap_timeout=1.0, batch=5000
        )
        shadow.catch_up(until=position)
        if app.projector.position() != position:
            continue  # the live projections moved on while we rebuilt: compare again
        diffs = list(_diff(ReadModels(app.db), ReadModels(app.db, SHADOW)))
        break
    drop(app.db, list(PROJECTIONS), prefix=SHADOW)
    return position, diffs


def _diff(live: ReadModels, shadow: ReadModels) -> Iterator[str]:
    for tables in PROJECTIONS.values():
        for table in tables:
            unordered = table in UNORDERED_TABLES
            a = {d["_id"]: _clean(d, unordered) for d in live.table(table)}
            b = {d["_id"]: _clean(d, unordered) for d in shadow.table(table)}
            for key in sorted(a.keys() | b.keys(), key=str):
                if key not in b:
                    yield f"{table}/{key}: in live only"
                elif key not in a:
                    yield f"{table}/{key}: missing from live"
                elif a[key] != b[key]:
                    fields = sorted(
                        k for k in a[key].keys() | b[key].keys() if a[key].get(k) != b[key].get(k)
                    )
                    for f in fields:
                        yield f"{table}/{key}.{f}: live={a[key].get(f)!r} replay={b[key].get(f)!r}"


def history(app: App, *, job: str | None = None, image: str | None = None) -> list[dict[str, Any]]:
    """The events of one job or one image, oldest first."""
    if job:
        found: list[StoredEvent] = []
        after = 0
        while batch := app.events.stream(f"job:{job}", after=after, limit=5000):
            found.extend(batch)
            after = batch[-1].seq
    elif image:
        found = app.events.of_image(image, limit=100_000)
    else:
        raise InvalidInput("give --job ID or --image ID")
    return [s.to_record() for s in found]


def state_at(app: App, seq: int) -> dict[str, Any]:
    """Jobs and folders as they were at position `seq` (a pure fold of the log up to it)."""
    if seq < 0:
        raise InvalidInput("a position is a whole number from 0")
    models = fold(
        all_events(app, until=seq), tables=("job_state", "folder_stats", "folder_collections")
    )
    counts: dict[str, int] = {}
    for doc in models["folder_collections"].values():
        if doc.get("files", 0) > 0:
            counts[doc["folder_id"]] = counts.get(doc["folder_id"], 0) + 1
    return {
        "seq": seq,
        "jobs": [job_view(d) for d in models["job_state"].values() if "total" in d],
        "folders": [folder_view(d, counts.get(k, 0)) for k, d in models["folder_stats"].items()],
    }


def export(app: App, out: IO[bytes]) -> int:
    """Write every event as one JSON line, in seq order; return how many."""
    count = 0
    for s in all_events(app):
        out.write(orjson.dumps(s.to_record()) + b"\n")
        count += 1
    return count


def read_lines(path: Path) -> Iterable[dict[str, Any]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{number} is not JSON: {exc}") from None
            if (
                not isinstance(record, dict)
                or not {"seq", "key", "type", "v", "at", "stream", "data"} <= record.keys()
            ):
                raise InvalidInput(f"{path}:{number} is not an exported event")
            yield record


def import_file(app: App, path: Path) -> int:
    """Load an export into an empty log, then build the projections from it."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file", hint="give a file made by `replay export`")
    records = list(read_lines(path))
    count = app.events.import_records(records)
    app.projector.catch_up()
    return count

"""A change to one read-model document, and how changes combine.

The projection rules (domain.projection) turn each event into changes. The
MongoDB projector applies them as `$inc`/`$set`/`$max`/`$min`/`$setOnInsert`;
`apply` below does the same to plain dicts, so the live projection and a pure
fold of the same events can be compared field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]


@dataclass
class Change:
    """Field updates for document `doc_id` of read model `table`."""

    table: str
    doc_id: str
    inc: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)
    max: dict[str, Any] = field(default_factory=dict)
    min: dict[str, Any] = field(default_factory=dict)
    on_insert: dict[str, Any] = field(default_factory=dict)

    def then(self, later: Change) -> Change:
        """One change with the effect of self followed by `later` (same document)."""
        out = Change(self.table, self.doc_id)
        out.inc = dict(self.inc)
        for k, v in later.inc.items():
            out.inc[k] = out.inc.get(k, 0) + v
        out.set = {**self.set, **later.set}
        out.max = dict(self.max)
        for k, v in later.max.items():
            out.max[k] = v if k not in out.max else max(out.max[k], v)
        out.min = dict(self.min)
        for k, v in later.min.items():
            out.min[k] = v if k not in out.min else min(out.min[k], v)
        out.on_insert = {**later.on_insert, **self.on_insert}
        # A field set later wins over earlier increments or bounds of the same field.
        for k in later.set:
            out.inc.pop(k, None)
            out.max.pop(k, None)
            out.min.pop(k, None)
        for k in list(out.on_insert):
            if k in out.set or k in out.inc:
                del out.on_insert[k]
        return out

    def mongo_update(self) -> Doc:
        """The MongoDB update document for this change (without bookkeeping fields)."""
        update: Doc = {}
        for op, values in (
            ("$inc", self.inc),
            ("$set", self.set),
            ("$max", self.max),
            ("$min", self.min),
            ("$setOnInsert", self.on_insert),
        ):
            if values:
                update[op] = dict(values)
        return update


def _parent(doc: Doc, path: str) -> tuple[Doc, str]:
    parts = path.split(".")
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    return doc, parts[-1]


def apply(doc: Doc | None, change: Change) -> Doc:
    """Apply a change to a document (None: it does not exist yet), as MongoDB would."""
    inserting = doc is None
    out: Doc = {"_id": change.doc_id} if doc is None else doc
    if inserting:
        for k, v in change.on_insert.items():
            parent, name = _parent(out, k)
            parent[name] = v
    for k, v in change.inc.items():
        parent, name = _parent(out, k)
        parent[name] = parent.get(name, 0) + v
    for k, v in change.set.items():
        parent, name = _parent(out, k)
        parent[name] = v
    for k, v in change.max.items():
        parent, name = _parent(out, k)
        parent[name] = v if parent.get(name) is None else max(parent[name], v)
    for k, v in change.min.items():
        parent, name = _parent(out, k)
        parent[name] = v if parent.get(name) is None else min(parent[name], v)
    return out

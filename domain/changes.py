"""A change to one read-model document, and how changes combine.

The projection rules (domain.projection) turn each event into changes. The
MongoDB projector applies them as `$inc`/`$set`/`$max`/`$min`/`$setOnInsert`;
`apply` below does the same to plain dicts, so the live projection and a pure
fold of the same events can be compared field by field.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
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
    push: dict[str, list[Any]] = field(default_factory=dict)
    unset: builtins.set[str] = field(default_factory=builtins.set)
    # (paths, their proper dotted prefixes), computed on first merge and carried forward:
    # merging many changes of one document stays linear in their paths.
    _index: tuple[builtins.set[str], builtins.set[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _paths_and_prefixes(self) -> tuple[builtins.set[str], builtins.set[str]]:
        if self._index is None:
            paths = {*self.inc, *self.set, *self.max, *self.min, *self.on_insert, *self.push}
            paths |= self.unset
            self._index = (paths, _prefixes(paths))
        return self._index

    def then(self, later: Change) -> Change:
        """One change with the effect of self followed by `later` (same document).

        Each field stays under one operator, as MongoDB requires. Raises ValueError
        for the pairs no single update can express (an increment and a bound of the
        same field, a non-zero insert default then an increment, a default then a bound,
        an append to an array and any other operator on it, anything but a set after
        an unset).
        """
        mine_paths, mine_prefixes = self._paths_and_prefixes()
        later_paths = {*later.inc, *later.set, *later.max, *later.min, *later.push, *later.unset}
        later_prefixes = _prefixes(later_paths)
        # One path inside another (a.b and a.b.c): MongoDB refuses both in one update.
        if outer := (later_paths & mine_prefixes) | (later_prefixes & mine_paths):
            path = min(outer)
            raise ValueError(f"{path!r} and a path inside it overlap: apply them separately")
        # An array is only ever appended to: any other operator on it needs its own update.
        for k in later.push:
            if k in mine_paths and k not in self.push:
                raise _unmergeable(k, "push")
        for k in later_paths - builtins.set(later.push):
            if k in self.push and k not in later.unset:
                raise _unmergeable(k, "set/$inc/$max/$min")
        # Setting a.b then removing it leaves an empty `a` behind; one $unset would not.
        for k in later.unset:
            if "." in k and k in mine_paths and k not in self.unset:
                raise _unmergeable(k, "unset")
        # After an unset only a set can follow in the same update.
        for k in later_paths - builtins.set(later.set) - later.unset:
            if k in self.unset:
                raise _unmergeable(k, "inc/$max/$min/$push")
        out = Change(
            self.table,
            self.doc_id,
            dict(self.inc),
            dict(self.set),
            dict(self.max),
            dict(self.min),
            dict(self.on_insert),
            {k: list(v) for k, v in self.push.items()},
            builtins.set(self.unset),
        )
        # `later.on_insert` is dropped: the document exists once self has been applied.
        for k in later.unset:
            for ops in (out.inc, out.set, out.max, out.min, out.on_insert, out.push):
                ops.pop(k, None)
            out.unset.add(k)
        for k, v in later.set.items():
            for ops in (out.inc, out.max, out.min, out.on_insert):
                ops.pop(k, None)
            out.unset.discard(k)
            out.set[k] = v
        for k, v in later.inc.items():
            if k in out.set:
                out.set[k] = out.set[k] + v
            elif k in out.inc:
                out.inc[k] = out.inc[k] + v
            elif out.on_insert.get(k, 0) == 0 and k not in out.max and k not in out.min:
                # $inc of a missing field starts from 0, so a default of 0 adds nothing.
                out.on_insert.pop(k, None)
                out.inc[k] = v
            else:
                raise _unmergeable(k, "inc")
        for k, items in later.push.items():
            out.push.setdefault(k, []).extend(items)
        for bound, pick in (("max", max), ("min", min)):
            for k, v in getattr(later, bound).items():
                mine = getattr(out, bound)
                if k in out.set:
                    out.set[k] = pick(out.set[k], v)
                elif k in mine:
                    mine[k] = pick(mine[k], v)
                elif k in out.inc or k in out.on_insert or k in out.max or k in out.min:
                    raise _unmergeable(k, bound)
                else:
                    mine[k] = v
        out._index = (mine_paths | later_paths, mine_prefixes | later_prefixes)
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
        if self.push:
            update["$push"] = {k: {"$each": list(v)} for k, v in self.push.items()}
        if self.unset:
            update["$unset"] = dict.fromkeys(sorted(self.unset), "")
        return update


def _prefixes(paths: Iterable[str]) -> builtins.set[str]:
    """The proper dotted prefixes of the paths: a.b.c gives a and a.b."""
    out: builtins.set[str] = builtins.set()
    for path in paths:
        i = path.find(".")
        while i >= 0:
            out.add(path[:i])
            i = path.find(".", i + 1)
    return out


def _unmergeable(name: str, op: str) -> ValueError:
    return ValueError(f"field {name!r}: a later ${op} cannot join the earlier update of it")


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
    for k, items in change.push.items():
        parent, name = _parent(out, k)
        parent[name] = [*parent.get(name, []), *items]
    for k in change.unset:
        *parents, name = k.split(".")
        holder: Any = out
        for part in parents:  # $unset creates nothing on its way
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(name, None)
    return out

"""Change.then: merging a document's changes must equal applying them one by one."""

from __future__ import annotations

import copy
import uuid
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.changes import Change, Doc, apply

# Which operators the projection rules combine on one field. A field is only ever
# incremented (after a default of 0) or set; bounded by $max or set; bounded by $min
# or set; or given a default and set; or an array only ever appended to. Dotted names
# reach into sub-documents.
FAMILIES: dict[str, tuple[str, ...]] = {
    "counter": ("inc", "set", "on_insert"),
    "high": ("max", "set"),
    "low": ("min", "set"),
    "plain": ("set", "on_insert"),
    "array": ("push",),
    "removable": ("set", "unset"),
}
FIELDS = (
    "files",
    "bytes",
    "by_kind.cache.generated",
    "by_kind.thumbnail.failed",
    "last_progress_at",
    "first_outcome_at",
    "name",
    "done.cache",
)
OPERATORS = ("inc", "set", "max", "min", "on_insert", "push", "unset")

values = st.integers(min_value=-50, max_value=50)


@st.composite
def change_sequences(draw: st.DrawFn) -> tuple[list[Change], Doc | None]:
    """Changes to one document, each field within one family, and a starting document."""
    doc_id = uuid.uuid4().hex
    family = {f: draw(st.sampled_from(sorted(FAMILIES))) for f in FIELDS}
    for f in FIELDS:  # set then unset of a.b leaves an empty `a`: the rules unset only a
        if "." in f and family[f] == "removable":
            family[f] = "plain"
    changes = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        change = Change("t", doc_id)
        for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=5)):
            op = draw(st.sampled_from(FAMILIES[family[name]]))
            # A counter's default is 0, as in the rules: $inc of a missing field starts there.
            value: Any = 0 if op == "on_insert" and family[name] == "counter" else draw(values)
            if op == "push":
                value = draw(st.lists(values, min_size=1, max_size=3))
            if op == "unset":
                change.unset.add(name)
            else:
                getattr(change, op)[name] = value
        changes.append(change)
    start: Doc | None = None
    if draw(st.booleans()):
        start = {"_id": doc_id}
        for name in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
            value = draw(st.lists(values)) if family[name] == "array" else draw(values)
            apply(start, Change("t", doc_id, set={name: value}))
    return changes, start


def fields_of(update: Doc) -> list[str]:
    return [name for values in update.values() for name in values]


def test_unset_then_set_and_set_then_unset() -> None:
    # Given a field removed then set again, and another set then removed
    doc_id = uuid.uuid4().hex
    merged = (
        Change("t", doc_id, set={"a": 1}, unset={"b"})
        .then(Change("t", doc_id, set={"b": 2}))
        .then(Change("t", doc_id, unset={"a", "c.d"}))
    )

    # When they are merged
    update = merged.mongo_update()

    # Then the last word stands, and removing a missing path creates nothing
    assert update == {"$set": {"b": 2}, "$unset": {"a": "", "c.d": ""}}
    assert apply({"_id": doc_id, "a": 0, "b": 0}, merged) == {"_id": doc_id, "b": 2}
    # (set x.y then unset x.y leaves an empty x behind: no single update says that)
    with pytest.raises(ValueError, match=r"'x\.y'"):
        Change("t", doc_id, set={"x.y": 1}).then(Change("t", doc_id, unset={"x.y"}))


def collides(a: str, b: str) -> bool:
    """True when MongoDB refuses both paths in one update ("would create a conflict")."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@settings(max_examples=300, deadline=None)
@given(change_sequences())
def test_then_equals_applying_in_order(case: tuple[list[Change], Doc | None]) -> None:
    # Given a sequence of changes to one document, and the document (or none) before them
    changes, start = case

    # When they are applied one by one, and once merged
    one_by_one = reduce(apply, changes, copy.deepcopy(start))
    merged = reduce(Change.then, changes)
    at_once = apply(copy.deepcopy(start), merged)

    # Then the document is the same either way
    assert at_once == one_by_one


@settings(max_examples=300, deadline=None)
@given(change_sequences())
def test_merged_update_names_each_field_once(case: tuple[list[Change], Doc | None]) -> None:
    # Given a sequence of changes to one document
    changes, _ = case

    # When they are merged into one MongoDB update
    update = reduce(Change.then, changes).mongo_update()

    # Then no field appears under two operators (MongoDB would refuse the update)
    names = fields_of(update)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not collides(a, b), f"{a} and {b} in {update}"


def test_set_then_inc_becomes_one_set() -> None:
    # Given a field set and then incremented
    doc_id = uuid.uuid4().hex
    first = Change("t", doc_id, set={"files": 5})
    later = Change("t", doc_id, inc={"files": 2})

    # When merged
    update = first.then(later).mongo_update()

    # Then one $set carries the sum
    assert update == {"$set": {"files": 7}}


def test_set_then_bound_becomes_one_set() -> None:
    # Given a field set and then bounded from above and below
    doc_id = uuid.uuid4().hex
    merged = (
        Change("t", doc_id, set={"at": 5.0, "low": 5.0})
        .then(Change("t", doc_id, max={"at": 9.0}, min={"low": 2.0}))
        .then(Change("t", doc_id, max={"at": 7.0}))
    )

    # When it becomes an update
    update = merged.mongo_update()

    # Then the bounds are folded into the set values
    assert update == {"$set": {"at": 9.0, "low": 2.0}}


def test_later_insert_default_is_ignored() -> None:
    # Given a change that creates the document, then one with an insert default
    doc_id = uuid.uuid4().hex
    first = Change("t", doc_id, inc={"files": 1})
    later = Change("t", doc_id, on_insert={"bytes": 0, "files": 0})

    # When merged and applied to no document
    merged = first.then(later)

    # Then the later default is not applied: the document already existed for it
    assert apply(None, merged) == apply(apply(None, first), later) == {"_id": doc_id, "files": 1}
    assert merged.mongo_update() == {"$inc": {"files": 1}}


def test_zero_default_then_inc_is_one_inc() -> None:
    # Given a default of 0 and then an increment of the same counter
    doc_id = uuid.uuid4().hex
    merged = Change("t", doc_id, on_insert={"files": 0}, set={"name": "a"}).then(
        Change("t", doc_id, inc={"files": 3})
    )

    # When it becomes an update
    update = merged.mongo_update()

    # Then the increment alone stands ($inc of a missing field starts from 0)
    assert update == {"$set": {"name": "a"}, "$inc": {"files": 3}}


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ({"inc": {"x": 1}}, {"max": {"x": 3}}),
        ({"inc": {"x": 1}}, {"min": {"x": 3}}),
        ({"max": {"x": 1}}, {"inc": {"x": 3}}),
        ({"min": {"x": 1}}, {"inc": {"x": 3}}),
        ({"max": {"x": 1}}, {"min": {"x": 3}}),
        ({"min": {"x": 1}}, {"max": {"x": 3}}),
        ({"on_insert": {"x": 5}}, {"inc": {"x": 1}}),
        ({"on_insert": {"x": 5}}, {"max": {"x": 1}}),
        ({"set": {"x": [1]}}, {"push": {"x": [2]}}),
        ({"push": {"x": [1]}}, {"set": {"x": [2]}}),
        ({"push": {"x": [1]}}, {"inc": {"x": 1}}),
        ({"unset": {"x"}}, {"inc": {"x": 1}}),
        ({"unset": {"x"}}, {"max": {"x": 1}}),
    ],
)
def test_pairs_no_single_update_expresses_are_refused(
    first: dict[str, Any], later: dict[str, Any]
) -> None:
    # Given two changes whose combined effect on x no single MongoDB update can state
    doc_id = uuid.uuid4().hex

    # When they are merged
    # Then the merge is refused rather than producing a wrong or conflicting update
    with pytest.raises(ValueError, match="'x'"):
        Change("t", doc_id, **first).then(Change("t", doc_id, **later))


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ({"set": {"failures": {}}}, {"inc": {"failures.corrupt": 1}}),
        ({"inc": {"by_kind.cache.generated": 1}}, {"set": {"by_kind": {}}}),
        ({"unset": {"failures.abc"}}, {"inc": {"failures.abc.corrupt": 1}}),
    ],
)
def test_overlapping_paths_are_refused(first: dict[str, Any], later: dict[str, Any]) -> None:
    # Given a change to a sub-document and a later change to a path inside or around it
    doc_id = uuid.uuid4().hex

    # When they are merged
    # Then the merge is refused: MongoDB rejects both paths in one update
    with pytest.raises(ValueError, match="overlap"):
        Change("t", doc_id, **first).then(Change("t", doc_id, **later))

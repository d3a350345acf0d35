"""Property-based fuzzing: schemathesis against our own OpenAPI document, and our own
hypothesis strategies for what a schema does not describe.

Schemathesis: a bounded number of generated requests per operation, valid and invalid,
sent with the token through the ASGI app: no 5xx, status codes and content types as
documented, bodies that match their schema, invalid input refused.

Ours: every route with odd path values, query strings (odd digits, raw and broken
percent escapes, unknown and repeated names, huge numbers) and bodies (odd JSON, paths
with NUL or over-long names, no JSON at all): never a 5xx, and each error a problem.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.conftest import AUTH, Site

EXAMPLES = 12
# Adding a cache folder takes any existing writable folder of the server: not for a fuzzer.
SKIP = {("POST", "/api/v1/cache/folders")}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _operations(site: Site) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", site.web)
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if (op.method.upper(), op.path) not in SKIP]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_operation(generated: Site, mode: GenerationMode) -> None:
    failures: list[str] = []
    operations = _operations(generated)
    assert len(operations) > 25
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=checks)

        try:
            run()
        except Unsatisfiable:
            continue  # an operation without inputs has no invalid variant
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


# -- our own fuzz: odd query strings, path values and bodies, for every route ---------------

ODD_VALUES = [
    "--5", "²", "٣", "\u0661\u0660", "-0", "+1", " 1", "1 ", "1e3", "0x10", "1_000", "1.0", "",
    "9" * 40, "-" + "9" * 40, str(2**63), str(-(2**63) - 1), "\x00", "5\x00", "true", "null",
    "ﬀ", "\u202e", "a" * 5000,
]  # fmt: skip
RAW_ESCAPES = ["%FF", "%FF%FE", "%C0%AF", "%ED%A0%80", "%00", "%E2%80", "%25", "%", "%zz"]
PATH_PARAM = re.compile(r"\{([a-z_]+)\}")


def _quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _value() -> st.SearchStrategy[str]:
    """A query or path value as it appears in a URL: odd text quoted, or raw escapes."""
    return st.one_of(
        st.sampled_from(ODD_VALUES).map(_quoted),
        st.sampled_from(RAW_ESCAPES),
        st.binary(max_size=12).map(lambda b: "".join(f"%{c:02X}" for c in b)),
        st.text(max_size=20).map(_quoted),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True),
    )


def _query(names: list[str]) -> st.SearchStrategy[str]:
    """A query string of known names (maybe twice) and unknown ones, with odd values."""
    name = st.one_of(st.sampled_from(names or ["limit"]), st.text(max_size=8).map(_quoted))
    pairs = st.lists(st.tuples(name, _value()), max_size=4)
    return pairs.map(lambda ps: "&".join(f"{n}={v}" for n, v in ps))


def _paths(base: Path) -> st.SearchStrategy[str]:
    """Paths no fuzz run may turn into a real cache folder: NUL, over-long names, relative,
    odd text, and folders that do not exist under the test's own folder."""
    name = st.text(
        st.characters(blacklist_characters="/", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=20,
    ).filter(lambda n: n not in (".", ".."))
    return st.one_of(
        st.builds(lambda n: f"{base}/missing/{n}", name),
        st.builds(lambda n: f"{base}/missing/{n}\x00{n}", name),
        st.builds(lambda k: f"{base}/missing/" + "x" * k, st.integers(256, 600)),
        st.builds(lambda n: f"{base}/{'y' * 300}/{n}", name),
        st.builds(lambda n: f"{base}/missing/" + "/".join([n] * 400), name),
        name,  # relative
        st.sampled_from(["", " ", "\x00", "~", "~/x", "//", "\\\\server\\share", "C:\\x"]),
    )


def _json() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=10)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=8,
    )


def _body(schema: dict[str, Any] | None, base: Path) -> st.SearchStrategy[bytes]:
    """A request body: the operation's fields with odd values, or no JSON object at all."""
    props = list((schema or {}).get("properties", {}))
    fields = st.dictionaries(
        st.one_of(st.sampled_from(props or ["x"]), st.text(max_size=6)),
        st.one_of(_json(), _paths(base)),
        max_size=4,
    )
    with_path = st.builds(lambda p, rest: {**rest, "path": p}, _paths(base), fields)
    as_json = st.one_of(fields, with_path, _json()).map(
        lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _dumpable(v) else b"{}"
    )
    odd = st.sampled_from(
        [b"", b"{", b"\xff\xfe", b'{"path": "\\ud800"}', b"[]", b"null", b"1e999"]
    )
    return st.one_of(as_json, odd, st.binary(max_size=40))


def _dumpable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False  # a float orjson cannot write, or an integer over 64 bits
    return True


def _routes() -> list[tuple[str, str, tuple[str, ...], dict[str, Any] | None]]:
    """(method, path template, query names, body schema) of every route we serve."""
    from web.app import endpoints

    found = [
        (e.method, e.path, tuple(p.name for p in e.params if p.where == "query"), e.body)
        for e in endpoints()
    ]
    return [*found, ("GET", "/", (), None), ("GET", "/metrics", (), None)]


ROUTES = _routes()


@pytest.mark.parametrize(
    ("method", "template", "names", "schema"), ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES]
)
def test_no_odd_request_gets_a_5xx(
    generated: Site,
    tmp_path: Path,
    method: str,
    template: str,
    names: tuple[str, ...],
    schema: dict[str, Any] | None,
) -> None:
    # Given any route, When it gets odd path values, query strings and bodies
    @given(
        path_values=st.lists(_value(), min_size=3, max_size=3),
        query=_query(list(names)),
        body=_body(schema, tmp_path),
    )
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(path_values: list[str], query: str, body: bytes) -> None:
        values = iter(path_values)
        url = PATH_PARAM.sub(lambda _m: next(values) or "x", template) + "?" + query
        headers = {**AUTH, "content-type": "application/json"}
        r = generated.client.request(method, url, content=body, headers=headers)
        # Then it is never a server error, and an error is a problem document
        assert r.status_code < 500, (method, url, body, r.text)
        if r.status_code >= 400 and r.status_code != 405:
            assert r.headers["content-type"] == "application/problem+json", (url, r.text)

    run()


@pytest.mark.parametrize("value", ["--5", "²", "٣", "-", "1-", "%FF", "%00", "9" * 40, "1%00"])
@pytest.mark.parametrize(
    "url",
    ["/api/v1/collections", "/api/v1/events", "/api/v1/cache/processing-jobs"],
)
def test_odd_integers_are_a_400_that_says_so(generated: Site, url: str, value: str) -> None:
    r = generated.client.get(f"{url}?limit={value}", headers=AUTH)
    assert r.status_code == 400, r.text
    assert "limit must be a whole number" in r.json()["detail"]


def test_unknown_and_repeated_query_parameters_are_a_400(generated: Site) -> None:
    r = generated.client.get("/api/v1/collections?limt=5", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["detail"] == "unknown query parameter 'limt': it takes offset, limit"
    r = generated.client.get("/api/v1/collections?limit=5&limit=6", headers=AUTH)
    assert r.status_code == 400 and "more than once" in r.json()["detail"]
    r = generated.client.get("/api/v1/info?x=1", headers=AUTH)
    assert r.status_code == 400 and "it takes none" in r.json()["detail"]


@pytest.mark.parametrize("url", ["/api/v1/collections", "/api/v1/cache/folders"])
@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda lib: f"{lib}/a\x00b", "NUL"),
        (lambda lib: f"{lib}/{'n' * 300}", "300 bytes long"),
        (lambda lib: f"{lib}/{'é' * 128}", "256 bytes long"),  # 128 characters, 256 bytes
        (lambda lib: f"{lib}/" + "/".join(["d" * 200] * 25), "at most 4096"),
        (lambda lib: "album-0", "not an absolute path"),
        (lambda lib: "", "at least 1 characters"),
    ],
)
def test_odd_paths_are_a_400_that_says_so(
    generated: Site, url: str, make: Callable[[Path], str], says: str
) -> None:
    r = generated.client.post(url, json={"path": make(generated.library)}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert says in r.json()["detail"]


async def _raw_call(app: Any, path: bytes, query: bytes) -> int:
    """Call the ASGI app with raw bytes in the path and the query string (no client
    library would send them unencoded); return the status."""
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path.decode("latin-1"), "raw_path": path,
        "query_string": query, "root_path": "", "client": ("127.0.0.1", 9), "server": None,
        "headers": [(b"host", b"testserver"), (b"authorization", AUTH["Authorization"].encode())],
    }  # fmt: skip
    await app(scope, receive, send)
    return status[0]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (b"/api/v1/collections", b"limit=\xff\xfe"),
        (b"/api/v1/collections", b"\xff=1"),
        (b"/api/v1/events", b"after=\xc0\xaf&limit=\xd9\xa3"),
        (b"/api/v1/cache/processing-jobs", b"status=\xe9&collection=\x00"),
        (b"/api/v1/collections/\xff\xfe", b""),
        (b"/api/v1/images/\xc3\x28/thumbnail", b""),
    ],
)
def test_raw_non_utf8_bytes_are_never_a_5xx(generated: Site, path: bytes, query: bytes) -> None:
    status = anyio.run(_raw_call, generated.web, path, query)
    assert 400 <= status < 500

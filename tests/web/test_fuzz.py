"""Property-based fuzzing with schemathesis against our own OpenAPI document.

A bounded number of generated requests per operation, valid and invalid, sent with the
token through the ASGI app: no 5xx, status codes and content types as documented, bodies
that match their schema, invalid input refused.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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

"""Schema fuzzing: schemathesis against our own OpenAPI schema (``/api/schema/``), every
operation, valid and invalid data, each case sent without credentials and again with a real
order's id and bearer token. Fixed seed, bounded examples. Zero 5xx, every response conforms
to the schema (status, content type, body), every 4xx carries ``{"code", "detail"}``."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.conftest import api_order

pytestmark = pytest.mark.django_db(transaction=True)

SEED = 13
EXAMPLES = 20
SENT: list[int] = []


@schemathesis.check
def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    SENT.append(response.status_code)
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), str) and body["code"], body
        assert isinstance(body.get("detail"), str) and body["detail"], body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]


def _operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6  # products, create, detail, pay, cancel, refunds
    return operations


@pytest.fixture
def real_order(live_server: Any, gateways_at_sandbox: Any) -> tuple[str, str]:
    return api_order(live_server.url, "TEA", price=1999, stock=100000)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_schema(live_server: Any, real_order: tuple[str, str], mode) -> None:
    order_id, token = real_order
    session = requests.Session()
    for operation in _operations(live_server.url):

        @hypothesis.seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            case.call_and_validate(session=session, checks=CHECKS)
            if case.path_parameters and "order_id" in case.path_parameters:
                case.path_parameters["order_id"] = order_id
            case.call_and_validate(
                session=session, checks=CHECKS, headers={"Authorization": f"Bearer {token}"}
            )

        try:
            fuzz()
        except hypothesis.errors.Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): its positive run covers it.
            assert (
                mode is GenerationMode.NEGATIVE
                and not operation.body
                and not any(operation.iter_parameters())
            ), operation.label
    print(f"\nschemathesis {mode.value}: {len(SENT)} requests so far, statuses {sorted(set(SENT))}")

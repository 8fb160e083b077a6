"""Fuzzing the province server from its own /openapi.json with schemathesis.

Schemathesis generates requests for every operation, valid ones and (negative mode) ones that
break the schema, and checks each answer: no 5xx, status codes, content types, headers and
bodies as the document declares them, and schema-breaking requests refused with a 4xx. On top
of its checks this test asserts that a refused request stores nothing: the store's newest
notification id is unchanged after any 4xx answer.

One check is left out: ``positive_data_acceptance`` expects every schema-valid request to
succeed, but the domain has rules no JSON Schema expresses (a one-shot schedule has one
instant, the approver is not the author, an area code must exist on the date), which answer
422 / 403 / 404 / 409 with the field and the reason.

Bounded: ``TCS_FUZZ_EXAMPLES`` generated examples per operation (default 5; about a minute on
two cores), plus schemathesis' deterministic coverage cases.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install 'schemathesis>=4.4,<5'")

from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from tcs_core import Settings, SourceSystem  # noqa: E402

for _dep in ("jsonschema", "prometheus_client"):  # the server extra's dependencies
    pytest.importorskip(_dep, reason="pip install -e '.[server]' (jsonschema, prometheus-client)")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from province_server import ServerConfig, create_app  # noqa: E402
from province_server.api import STATE  # noqa: E402
from province_server.sample import ServerThread, seed, write_plan  # noqa: E402
from province_server.server import openapi_document  # noqa: E402

EXAMPLES = int(os.environ.get("TCS_FUZZ_EXAMPLES", "5"))


class Target:
    """The server under test, its store, and an admin token."""

    def __init__(self, tmp: Path) -> None:
        self.system = SourceSystem(Settings.in_memory())
        seed(self.system)
        write_plan(tmp / "plans")
        cfg = ServerConfig.from_env(
            {"TCS_SERVER_SESSION_KEY": secrets.token_hex(32)},
            auth_db=str(tmp / "auth.sqlite"),
            plans_dir=str(tmp / "plans"),
            # The fuzzer is one fast client: rate limits would only answer 429.
            token_burst=1_000_000,
            bad_token_burst=1_000_000,
        )
        self.server = ServerThread(lambda: create_app(self.system, config=cfg))
        self.token = ""

    def position(self) -> int:
        return int(self.system.recorder.max_notification_id() or 0)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    with t.server:
        creds = t.server.app[STATE].creds  # type: ignore[index]
        t.token = creds.issue_token("admin", "fuzz", timedelta(days=1)).secret
        yield t


# The document the server serves, built from the same operation table (no server needed to
# collect the tests); requests go to the running server's base URL.
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path="/api/v1/events")
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    allow_x00=False,
)


@schema.parametrize()
def test_fuzzed_requests_get_declared_answers_and_refusals_store_nothing(
    case: Any, target: Target
) -> None:
    """Every generated request gets a non-5xx answer that matches /openapi.json, and a
    refused one (4xx) leaves the event store as it was."""
    before = target.position()
    response = case.call_and_validate(
        base_url=target.server.url,
        headers={"Authorization": f"Bearer {target.token}"},
        excluded_checks=[positive_data_acceptance],
    )
    if response.status_code >= 400:
        assert target.position() == before, (
            f"{case.method} {case.formatted_path} was refused ({response.status_code}) "
            "but stored events"
        )

"""Schemathesis against /api/openapi.json: the document tells the truth about every response.

The application runs in this process (WSGI) on a real SQLite file. Every operation of the
document is called as an owner, a researcher and an auditor, with data generated from the
document itself, both valid (positive) and invalid (negative), deterministically
(``derandomize``), and each response is checked: never a 5xx, its status code documented for
the operation, its content type and headers as documented, its body valid against the
documented schema. Failures are collected, not shrunk, so one run reports all of them.

No operation is excluded: generated ids name no existing dataset, quote or run, so neither an
upload (PUT /datasets/{id}/file) nor a quote trains or stores anything large, and the run
stays under a minute on 2 cores.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import select

from market.accounts import services as accounts
from market.accounts.models import Role, User
from tests.abuse.test_request_limits import _account, _make_app
from tests.catalog.conftest import CSV_METADATA

ROLES = (Role.OWNER, Role.RESEARCHER, Role.AUDITOR)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Per operation, role and mode: 24 operations x 3 x 2 x 5 = 720 cases (more as the API
# grows): eight per cell cost 60% more of the suite's time; raise it locally to search harder.
EXAMPLES = 5
MIN_CASES = 700
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class Tokens:
    """A bearer token per role, issued through the accounts service (no password hashing per
    case). A generated DELETE /tokens/{id} may revoke the caller's own token; it is then
    replaced, so later cases still run authenticated."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers = {role: self._issue(role) for role in ROLES}

    def _issue(self, role: Role) -> dict[str, str]:
        market = self.app.extensions["market"]
        with market.database.write() as session:
            user = session.exec(select(User).where(User.role == role)).one()
            issued = accounts.issue_token(session, user=user, ttl=timedelta(hours=1))
        return {"Authorization": f"Bearer {issued.secret}"}

    def after(self, role: Role, method: str, path: str, status: int) -> None:
        if method == "DELETE" and path.startswith("/api/v1/tokens/") and status == 200:
            self.headers[role] = self._issue(role)


@pytest.fixture
def api_app(tmp_path: Path, sqlite_url: str) -> Any:
    application = _make_app(tmp_path, sqlite_url)
    for role in ROLES:
        _account(application, role, f"{role.value}@schemathesis.example")
    yield application
    application.extensions["market"].database.dispose()


def test_every_response_matches_the_openapi_document(api_app: Any) -> None:
    tokens = Tokens(api_app)
    client = api_app.test_client()
    draft = client.post("/api/v1/datasets", json=CSV_METADATA, headers=tokens.headers[Role.OWNER])
    assert draft.status_code == 201  # so list responses carry a real item to validate

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    cases = 0
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()

    def run(operation: Any, role: Role, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            nonlocal cases
            cases += 1
            headers = dict(tokens.headers[role])
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            tokens.after(role, case.method.upper(), case.formatted_path, response.status_code)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is the latter
                first = " | ".join(
                    line.strip() for line in str(exc).splitlines()[:6] if line.strip()
                )
                failures[f"{role.value} {label} -> {response.status_code}: {first}"] += 1

        call()

    for role in ROLES:
        for operation in operations:
            for mode in MODES:
                run(operation, role, mode)

    print(f"schemathesis: {cases} cases, statuses {sorted(statuses.items())}")
    assert cases >= MIN_CASES
    assert not [s for s in statuses if s >= 500], statuses
    assert not failures, "\n".join(f"{n} x {f}" for f, n in failures.most_common())
    # The run reached the API's real answers, not only refusals.
    assert statuses[200] > 100 and statuses[422] > 50 and statuses[403] > 50

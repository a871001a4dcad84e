"""Roles x endpoints: nobody reads or changes what is not theirs.

Each row names an endpoint and, for every kind of caller, the status it must get. "self" is
a caller acting on their own resource; "other" is a caller of the same role acting on
somebody else's. Later domains add their rows here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from market.accounts.models import Role

ROLES = [Role.OWNER, Role.RESEARCHER, Role.AUDITOR, Role.ADMIN]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: dict[str, int]  # "anonymous" or a role value -> status
    body: dict | None = None


CASES = [
    Case("GET", "/api/v1/me", {"anonymous": 401, **{r.value: 200 for r in ROLES}}),
    Case("GET", "/api/v1/tokens", {"anonymous": 401, **{r.value: 200 for r in ROLES}}),
    Case(
        "GET",
        "/api/v1/users",
        {"anonymous": 401, "owner": 403, "researcher": 403, "auditor": 403, "admin": 200},
    ),
    Case(
        "POST",
        "/api/v1/users",
        {"anonymous": 401, "owner": 403, "researcher": 403, "auditor": 403, "admin": 201},
        body={"email": "new@people.example", "role": "researcher", "password": "a-long-password!"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
@pytest.mark.parametrize("caller", ["anonymous", *[r.value for r in ROLES]])
def test_role_matrix(client, make_user, token_for, case: Case, caller: str) -> None:
    headers = {} if caller == "anonymous" else token_for(make_user(caller))
    response = client.open(case.path, method=case.method, json=case.body, headers=headers)
    assert response.status_code == case.expected[caller], response.get_json()


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_token_listing_shows_only_your_own(client, make_user, token_for, role: Role) -> None:
    me, other = make_user(role), make_user(role)
    mine = token_for(me)
    token_for(other)
    token_for(other)
    items = client.get("/api/v1/tokens", headers=mine).get_json()["items"]
    assert len(items) == 1
    theirs = client.get("/api/v1/tokens", headers=token_for(other)).get_json()["items"]
    assert {t["id"] for t in items}.isdisjoint({t["id"] for t in theirs})


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_nobody_revokes_another_users_token(client, make_user, token_for, role: Role) -> None:
    victim = make_user(Role.RESEARCHER)
    victim_headers = token_for(victim)
    victim_token_id = client.get("/api/v1/tokens", headers=victim_headers).get_json()["items"][0][
        "id"
    ]
    attacker = token_for(make_user(role))
    response = client.delete(f"/api/v1/tokens/{victim_token_id}", headers=attacker)
    # Not found rather than forbidden: another user's token id is not even confirmed to exist.
    assert response.status_code == 404
    assert client.get("/api/v1/me", headers=victim_headers).status_code == 200
    own = client.delete(f"/api/v1/tokens/{victim_token_id}", headers=victim_headers)
    assert own.status_code == 200

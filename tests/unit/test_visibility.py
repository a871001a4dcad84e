"""market.visibility's rules, asked directly for each kind of caller: the owner of the
dataset, another owner, the run's buyer, another researcher, an auditor and an admin.

The predicates are checked on rows built in memory; the query filters on a migrated SQLite
database, against the predicates they stand for (a filter and its predicate must agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, col, select

from market import visibility
from market.accounts.models import Role, User
from market.catalog.models import Dataset, DatasetFormat, DatasetStatus
from market.db import utcnow
from market.trading.models import Quote, Run

CALLERS = {
    "owner": User(id=1, email="owner@x.example", role=Role.OWNER, password_hash="-"),
    "other_owner": User(id=2, email="owner2@x.example", role=Role.OWNER, password_hash="-"),
    "buyer": User(id=3, email="buyer@x.example", role=Role.RESEARCHER, password_hash="-"),
    "other_researcher": User(
        id=4, email="researcher2@x.example", role=Role.RESEARCHER, password_hash="-"
    ),
    "auditor": User(id=5, email="auditor@x.example", role=Role.AUDITOR, password_hash="-"),
    "admin": User(id=6, email="admin@x.example", role=Role.ADMIN, password_hash="-"),
}
NAMES = list(CALLERS)


def dataset(ident: str, status: DatasetStatus, owner_id: int = 1) -> Dataset:
    return Dataset(
        id=ident,
        owner_id=owner_id,
        title=ident,
        licence="CC-BY-4.0",
        format=DatasetFormat.CSV,
        data_schema={"columns": []},
        epsilon_total=10.0,
        delta=1e-6,
        max_epsilon_per_run=2.0,
        price_per_run_minor=100,
        price_per_epsilon_minor=0,
        currency="EUR",
        status=status,
    )


LISTED = dataset("listed", DatasetStatus.LISTED)
DRAFT = dataset("draft", DatasetStatus.DRAFT)
DELISTED = dataset("delisted", DatasetStatus.DELISTED)
QUOTE = Quote(
    id="quote",
    dataset_id="listed",
    researcher_id=3,
    request={},
    plan={},
    estimate={},
    price_total_minor=100,
    currency="EUR",
    fits_budget=True,
    epsilon_after=1.0,
    expires_at=utcnow() + timedelta(minutes=5),
)
RUN = Run(
    id="run",
    quote_id="quote",
    dataset_id="listed",
    buyer_id=3,
    price_total_minor=100,
    currency="EUR",
)


def expect(*allowed: str) -> list[tuple[str, bool]]:
    return [(name, name in allowed) for name in NAMES]


@pytest.mark.parametrize(
    ("row", "who", "allowed"),
    [
        *[("listed", w, a) for w, a in expect(*NAMES)],
        *[("draft", w, a) for w, a in expect("owner", "admin")],
        *[("delisted", w, a) for w, a in expect("owner", "auditor", "admin")],
    ],
)
def test_may_see_dataset(row: str, who: str, allowed: bool) -> None:
    rows = {"listed": LISTED, "draft": DRAFT, "delisted": DELISTED}
    assert visibility.may_see_dataset(CALLERS[who], rows[row]) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("owner", "admin"))
def test_may_change_dataset(who: str, allowed: bool) -> None:
    for row in (LISTED, DRAFT, DELISTED):
        assert visibility.may_change_dataset(CALLERS[who], row) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("buyer", "admin"))
def test_may_see_quote(who: str, allowed: bool) -> None:
    assert visibility.may_see_quote(CALLERS[who], QUOTE) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("buyer"))
def test_may_buy_quote(who: str, allowed: bool) -> None:
    assert visibility.may_buy_quote(CALLERS[who], QUOTE) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("owner", "buyer", "auditor", "admin"))
def test_may_see_run(who: str, allowed: bool) -> None:
    assert visibility.may_see_run(CALLERS[who], RUN, LISTED) is allowed


def test_a_run_without_its_dataset_is_seen_by_its_buyer_and_the_overseers_only() -> None:
    seen = {w for w in NAMES if visibility.may_see_run(CALLERS[w], RUN, None)}
    assert seen == {"buyer", "auditor", "admin"}


@pytest.mark.parametrize(("who", "allowed"), expect("buyer"))
def test_may_download_model(who: str, allowed: bool) -> None:
    assert visibility.may_download_model(CALLERS[who], RUN) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("owner", "auditor", "admin"))
def test_may_see_ledger(who: str, allowed: bool) -> None:
    for row in (LISTED, DRAFT, DELISTED):
        assert visibility.may_see_ledger(CALLERS[who], row) is allowed


@pytest.mark.parametrize(("who", "allowed"), expect("owner", "other_owner", "auditor", "admin"))
def test_may_list_privacy_ledgers(who: str, allowed: bool) -> None:
    assert visibility.may_list_privacy_ledgers(CALLERS[who]) is allowed


# --- the query filters, on a database -----------------------------------------------------


@pytest.fixture
def session(sqlite_url: str) -> Iterator[Session]:
    """Two owners' datasets (listed, draft, delisted; one listed of the other owner's), a
    run on each listed one: the buyer's on the owner's, the other researcher's on the
    other owner's."""
    engine = create_engine(sqlite_url)
    with Session(engine) as session:
        for user in CALLERS.values():
            session.add(User.model_validate(user.model_dump()))
        session.flush()
        theirs = dataset("theirs", DatasetStatus.LISTED, owner_id=2)
        for row in (LISTED, DRAFT, DELISTED, theirs):
            session.add(Dataset.model_validate(row.model_dump()))
        session.flush()
        other_quote = QUOTE.model_copy(update={"id": "quote2", "dataset_id": "theirs"})
        for quote in (QUOTE, other_quote):
            session.add(Quote.model_validate(quote.model_dump()))
        session.flush()
        other_run = RUN.model_copy(
            update={"id": "run2", "quote_id": "quote2", "dataset_id": "theirs", "buyer_id": 4}
        )
        for run in (RUN, other_run):
            session.add(Run.model_validate(run.model_dump()))
        session.flush()
        yield session
    engine.dispose()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", {"run"}),
        ("other_owner", {"run2"}),
        ("buyer", {"run"}),
        ("other_researcher", {"run2"}),
        ("auditor", {"run", "run2"}),
        ("admin", {"run", "run2"}),
    ],
)
def test_runs_visible_to_is_may_see_run_as_a_filter(
    session: Session, who: str, expected: set[str]
) -> None:
    actor = CALLERS[who]
    found = {r.id for r in session.exec(visibility.runs_visible_to(select(Run), actor))}
    assert found == expected
    every = session.exec(select(Run)).all()
    by_rule = {
        r.id for r in every if visibility.may_see_run(actor, r, session.get(Dataset, r.dataset_id))
    }
    assert found == by_rule
    # The same rule on a join (the cost ledger's rows).
    joined = select(Run, Dataset).join(Dataset, col(Dataset.id) == col(Run.dataset_id))
    assert {r.id for r, _ in session.exec(visibility.runs_visible_to(joined, actor))} == expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", {"listed", "draft", "delisted"}),
        ("other_owner", {"theirs"}),
        ("auditor", {"listed", "delisted", "theirs"}),
        ("admin", {"listed", "delisted", "theirs"}),
    ],
)
def test_ledger_datasets_visible_to(session: Session, who: str, expected: set[str]) -> None:
    actor = CALLERS[who]
    statement = visibility.ledger_datasets_visible_to(select(Dataset), actor)
    found = {d.id for d in session.exec(statement)}
    assert found == expected
    assert all(visibility.may_see_ledger(actor, d) for d in session.exec(statement))


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", {"listed", "draft", "delisted"}),
        ("other_owner", {"theirs"}),
        ("buyer", set()),
        ("auditor", set()),
    ],
)
def test_datasets_owned_by(session: Session, who: str, expected: set[str]) -> None:
    statement = visibility.datasets_owned_by(select(Dataset), CALLERS[who])
    assert {d.id for d in session.exec(statement)} == expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", {"listed", "draft", "delisted", "run"}),
        ("other_owner", {"theirs", "run2"}),
        ("buyer", {"run"}),
        ("other_researcher", {"run2"}),
        ("auditor", None),
        ("admin", None),
    ],
)
def test_audit_subjects_visible_to(session: Session, who: str, expected: set[str] | None) -> None:
    subjects = visibility.audit_subjects_visible_to(CALLERS[who])
    if expected is None:
        assert subjects is None  # everything
    else:
        assert set(session.execute(subjects).scalars()) == expected

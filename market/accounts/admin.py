"""What an admin does with accounts: find them, approve, change roles, suspend, reactivate.

Services take the caller's session and never commit; every change is an audit entry in the
same transaction (market.audit.log.append), with the admin as its actor. An admin cannot
suspend or demote themself: the last admin would otherwise lock everyone out.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from market.accounts.models import AccountStatus, ApiToken, Role, User
from market.accounts.services import require_role, set_active, set_role
from market.audit import log as audit
from market.errors import Conflict, NotFound


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    total: int
    tokens: dict[int, list[ApiToken]]


def _status_clause(status: AccountStatus) -> sa.ColumnElement[bool]:
    if status is AccountStatus.SUSPENDED:
        return col(User.is_active).is_(False)
    approved = col(User.is_approved).is_(status is AccountStatus.ACTIVE)
    return sa.and_(col(User.is_active).is_(True), approved)


def search_users(
    session: Session,
    *,
    actor: User,
    q: str = "",
    role: Role | None = None,
    status: AccountStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> UserPage:
    """Accounts whose e-mail contains ``q`` (case-insensitive), of ``role`` and ``status``;
    pending ones first (they wait for somebody), then newest. With each, its API tokens."""
    require_role(actor, Role.ADMIN)
    conditions: list[sa.ColumnElement[bool]] = []
    q = q.replace("\x00", "").strip()  # PostgreSQL refuses NUL in a string
    if q:
        needle = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(col(User.email).like(f"%{needle}%", escape="\\"))
    if role is not None:
        conditions.append(col(User.role) == role)
    if status is not None:
        conditions.append(_status_clause(status))
    total = session.exec(select(func.count()).select_from(User).where(*conditions)).one()
    users = list(
        session.exec(
            select(User)
            .where(*conditions)
            .order_by(col(User.is_approved), col(User.created_at).desc(), col(User.id).desc())
            .limit(limit)
            .offset(offset)
        ).all()
    )
    tokens: dict[int, list[ApiToken]] = {user.id or 0: [] for user in users}
    if users:
        for token in session.exec(
            select(ApiToken)
            .where(col(ApiToken.user_id).in_(list(tokens)))
            .order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())
        ).all():
            tokens[token.user_id].append(token)
    return UserPage(users=users, total=int(total), tokens=tokens)


def tokens_of(session: Session, *, user_id: int) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken)
            .where(ApiToken.user_id == user_id)
            .order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())
        ).all()
    )


def update_user(
    session: Session,
    *,
    actor: User,
    user_id: int,
    role: Role | None = None,
    status: AccountStatus | None = None,
) -> User:
    """Change an account's role and/or status (``active``: approve a pending account or
    reactivate a suspended one; ``suspended``: its sessions and tokens stop at once)."""
    require_role(actor, Role.ADMIN)
    user = session.exec(select(User).where(User.id == user_id).with_for_update()).first()
    if user is None:
        raise NotFound(f"no account {user_id}", details={"user_id": user_id})
    if user.id == actor.id and (
        (role is not None and role != user.role) or status is AccountStatus.SUSPENDED
    ):
        raise Conflict(
            "you cannot change your own role or suspend yourself: ask another admin",
            details={"user_id": user_id},
        )
    if status is AccountStatus.PENDING:
        raise Conflict("an account cannot be made pending again; suspend it instead")
    if role is not None:
        set_role(session, user=user, role=role, actor_id=actor.id)
    if status is AccountStatus.ACTIVE:
        if not user.is_approved:
            user.is_approved = True
            session.add(user)
            audit.append(
                session,
                kind="user.approved",
                subject=user.id or 0,
                actor_id=actor.id,
                data={"email": user.email, "role": user.role.value},
            )
        set_active(session, user=user, active=True, actor_id=actor.id)
    elif status is AccountStatus.SUSPENDED:
        set_active(session, user=user, active=False, actor_id=actor.id)
    session.flush()
    return user

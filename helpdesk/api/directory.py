"""API operations on who and where: the queues a token's user sees, and (admins) users."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from helpdesk.api.registry import Call, Registry, Reply, Response
from helpdesk.models import User
from helpdesk.tickets.listing import visible_queues

api = Registry()


class QueueOut(BaseModel):
    model_config = ConfigDict(title="Queue")

    slug: str
    name: str
    email_address: str


class QueueList(BaseModel):
    queues: list[QueueOut]


class UserOut(BaseModel):
    model_config = ConfigDict(title="User")

    email: str
    name: str
    role: str
    active: bool
    queues: list[str]


class UserList(BaseModel):
    users: list[UserOut]


@api.operation(
    "GET",
    "/queues",
    summary="List queues",
    tag="directory",
    responses=(Response(200, "The queues the token's user sees.", QueueList),),
)
def list_queues(call: Call) -> Reply:
    """The queues whose tickets the token's user sees (all of them for managers and admins)."""
    rows = visible_queues(call.session, call.user)
    return Reply(
        QueueList(
            queues=[QueueOut(slug=q.slug, name=q.name, email_address=q.email_address) for q in rows]
        )
    )


@api.operation(
    "GET",
    "/users",
    summary="List users",
    tag="directory",
    roles=("admin",),
    responses=(Response(200, "Every user.", UserList),),
)
def list_users(call: Call) -> Reply:
    """Every user with role, state and queues (admins only)."""
    rows = call.session.scalars(select(User).order_by(User.email))
    return Reply(
        UserList(
            users=[
                UserOut(
                    email=u.email,
                    name=u.name,
                    role=u.role,
                    active=u.active,
                    queues=[q.slug for q in u.queues],
                )
                for u in rows
            ]
        )
    )

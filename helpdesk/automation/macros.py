"""Macros: a named set of actions, and an optional reply, that an agent applies
by hand to a ticket or to a selection of tickets.

A macro belongs to one queue or to all (``queue_id`` None) and is offered on
the tickets of that queue. Applying it sends the reply first (so any rule's
mail of the same change goes after it), then does the actions through the
lifecycle as the agent (history "by anna@…"); ``me`` as the assignee is the
agent applying it. The caller has fetched the tickets through the agent's
rights; a refused change raises ``MacroError`` and the caller must not commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from helpdesk.automation.actions import ActionFailed, perform
from helpdesk.automation.schema import SpecError, parse_actions, parse_macro
from helpdesk.automation.service import RuleError, check_names
from helpdesk.mail.compose import HeaderInjection
from helpdesk.models import Macro, Queue, Ticket, User
from helpdesk.settings import Settings
from helpdesk.tickets import conversation, lifecycle
from helpdesk.tickets.actors import Actor, as_actor

MAX_TICKETS = 500


class MacroError(ValueError):
    """The macro cannot be saved or applied; the message is safe to show."""


def for_queue(session: Session, queue_id: int) -> list[Macro]:
    """The macros offered on tickets of the queue, by position and name."""
    stmt = (
        select(Macro)
        .where(or_(Macro.queue_id.is_(None), Macro.queue_id == queue_id))
        .order_by(Macro.position, Macro.name)
    )
    return list(session.scalars(stmt))


def for_queues(session: Session, queue_ids: list[int]) -> list[Macro]:
    stmt = (
        select(Macro)
        .where(or_(Macro.queue_id.is_(None), Macro.queue_id.in_(queue_ids)))
        .order_by(Macro.position, Macro.name)
    )
    return list(session.scalars(stmt))


def all_macros(session: Session) -> list[Macro]:
    return list(session.scalars(select(Macro).order_by(Macro.position, Macro.name)))


def to_json(macro: Macro) -> dict[str, Any]:
    return {
        "id": macro.id,
        "name": macro.name,
        "queue": macro.queue.slug if macro.queue else None,
        "position": macro.position,
        "actions": macro.actions or [],
        "reply": macro.reply,
    }


def save(session: Session, macro: Macro | None, data: Any, *, now: datetime) -> Macro:
    """Create (``macro`` None) or replace a macro from its JSON."""
    try:
        spec = parse_macro(data)
        check_names(session, None, spec.actions)
    except (SpecError, RuleError) as exc:
        raise MacroError(str(exc)) from None
    queue = None
    if spec.queue:
        queue = session.scalars(select(Queue).where(Queue.slug == spec.queue)).first()
        if queue is None:
            raise MacroError(f"no queue {spec.queue!r}")
    if macro is None:
        macro = Macro(created_at=now)
        session.add(macro)
    macro.name = " ".join(spec.name.split())
    macro.queue = queue
    macro.position = spec.position
    macro.actions = spec.actions_json()
    macro.reply = spec.reply
    macro.updated_at = now
    session.flush()
    return macro


def apply(
    session: Session, ticket: Ticket, macro: Macro, *, actor: Actor | User, settings: Settings,
    now: datetime,
) -> list[str]:  # fmt: skip
    """Apply the macro to one ticket as the agent (or their API token); returns what changed."""
    actor = as_actor(actor)
    if macro.queue_id not in (None, ticket.queue_id):
        raise MacroError(f"macro {macro.name} is not for {ticket.queue.slug}")
    done = []
    try:
        if macro.reply.strip():
            conversation.reply(session, ticket, actor=actor, text=macro.reply, settings=settings,
                               now=now)  # fmt: skip
            done.append("reply queued")
        actions = parse_actions(macro.actions)
        done += perform(session, ticket, actions, actor=actor, settings=settings, now=now,
                        me=actor.user)  # fmt: skip
    except ActionFailed as exc:
        raise MacroError(f"ticket {ticket.number}: {exc.reason}") from exc
    except (lifecycle.TicketError, HeaderInjection, SpecError) as exc:
        raise MacroError(f"ticket {ticket.number}: {exc}") from exc
    return done


def apply_many(
    session: Session, tickets: list[Ticket], macro: Macro, *, actor: Actor | User,
    settings: Settings, now: datetime,
) -> int:  # fmt: skip
    """Apply the macro to each ticket (all or, on a ``MacroError``, none: the caller
    does not commit); returns how many."""
    if not tickets:
        raise MacroError("select at least one ticket")
    if len(tickets) > MAX_TICKETS:
        raise MacroError(f"at most {MAX_TICKETS} tickets at once")
    for ticket in tickets:
        apply(session, ticket, macro, actor=actor, settings=settings, now=now)
    return len(tickets)

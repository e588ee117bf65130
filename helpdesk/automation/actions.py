"""Doing a rule's (or a macro's) actions, each through the ticket lifecycle.

``perform`` takes the validated actions (``helpdesk.automation.schema``) and
applies them in order with the given actor, so every change is in the
ticket's history by that actor ("by rule Invoices") and emits its events:
consecutive field changes (status, priority, queue, assignee, tags) are one
``lifecycle.update`` (one ``TicketUpdated``); a note, a mail to the requester
and a notice to agents are one call each. It returns what changed, one line
per change, for the rule's log.

An action that cannot be done (a queue or a user that no longer exists, an
assignee who cannot work in the queue, a template that fails) raises
``ActionFailed``; the actions before it stay done. Mail a rule sends to the
requester is due ``RULE_MAIL_DELAY`` after the change, and so, queued after
any reply of the same change, goes out after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts.users import by_email
from helpdesk.automation import assignment
from helpdesk.automation.schema import (
    AddTags,
    MailRequester,
    Note,
    Notify,
    RemoveTags,
    SetField,
)
from helpdesk.db import resource_dir
from helpdesk.mail.compose import HeaderInjection, render_for_queue
from helpdesk.models import Queue, Ticket, User
from helpdesk.outbound.notifications import queue_id, reachable
from helpdesk.outbound.ticket_mail import ticket_values
from helpdesk.settings import Settings
from helpdesk.tickets import conversation, lifecycle, queues
from helpdesk.tickets.actors import Actor

RULE_MAIL_DELAY = timedelta(seconds=1)
_SANDBOX = SandboxedEnvironment(autoescape=False)


class ActionFailed(Exception):
    """An action could not be done; ``done`` lists what was done before it."""

    def __init__(self, reason: str, done: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.done = done


def mail_templates() -> list[str]:
    """The names of the shipped rule mail templates (``templates/email/rules/*.txt``)."""
    folder = resource_dir("templates") / "email" / "rules"
    return sorted(path.stem for path in folder.glob("*.txt"))


def mail_text(ticket: Ticket, body: Any, settings: Settings) -> str:
    """The text of a rule's mail: a shipped template, or the rule's own (sandboxed)."""
    context = {
        "ticket": ticket_values(ticket, settings.subject_tag_prefix),
        "queue": ticket.queue.name,
        "sender_name": settings.sender_name,
    }
    if body.template is not None:
        if body.template not in mail_templates():
            raise lifecycle.TicketError(f"no mail template {body.template!r}")
        return render_for_queue(f"rules/{body.template}.txt", ticket.queue.slug, **context)
    return _SANDBOX.from_string(body.text).render(**context)


def perform(
    session: Session,
    ticket: Ticket,
    actions: Sequence[Any],
    *,
    actor: Actor,
    settings: Settings,
    now: datetime,
    me: User | None = None,
) -> list[str]:
    """Apply the actions in order (see the module docstring); ``me`` is the agent
    a macro's ``me`` assignee means."""
    done: list[str] = []
    fields: dict[str, Any] = {}
    try:
        for action in actions:
            if isinstance(action, SetField | AddTags | RemoveTags):
                _collect(fields, action)
                continue
            _update(session, ticket, fields, actor=actor, now=now, done=done, me=me)
            fields = {}
            if isinstance(action, Note):
                conversation.add_note(session, ticket, actor=actor, text=action.note, now=now)
                done.append("note added")
            elif isinstance(action, MailRequester):
                text = mail_text(ticket, action.mail_requester, settings)
                _, row = conversation.mail_requester(
                    session, ticket, actor=actor, text=text, settings=settings, now=now,
                    due=now + RULE_MAIL_DELAY,
                )  # fmt: skip
                who = ticket.requester.email
                done.append(f"mailed {who}" if row is not None else f"not mailed {who} (bounces)")
            elif isinstance(action, Notify):
                people = _whom(session, ticket, action.notify)
                title = f"Rule {actor.label}" if actor.kind == "rule" else "Notice"
                sent = conversation.notify(
                    session, ticket, people, actor=actor, title=title, text=action.text,
                    settings=settings, now=now,
                )  # fmt: skip
                done.append(f"notified {', '.join(sent) or 'nobody'}")
        _update(session, ticket, fields, actor=actor, now=now, done=done, me=me)
    except (lifecycle.TicketError, HeaderInjection, TemplateError) as exc:
        raise ActionFailed(str(exc)[:300], done) from exc
    return done


def _collect(fields: dict[str, Any], action: SetField | AddTags | RemoveTags) -> None:
    if isinstance(action, SetField):
        fields[action.set] = action.value
    elif isinstance(action, AddTags):
        fields.setdefault("add_tags", []).extend(action.add_tags)
    else:
        fields.setdefault("remove_tags", []).extend(action.remove_tags)


def _update(
    session: Session,
    ticket: Ticket,
    fields: dict[str, Any],
    *,
    actor: Actor,
    now: datetime,
    done: list[str],
    me: User | None,
) -> None:
    if not fields:
        return
    change: dict[str, Any] = {}
    for name in ("status", "priority"):
        if name in fields:
            change[name] = fields[name]
    target = ticket.queue
    if "queue" in fields:
        with session.no_autoflush:
            found = session.scalars(select(Queue).where(Queue.slug == fields["queue"])).first()
        if found is None:
            raise lifecycle.TicketError(f"no queue {fields['queue']!r}")
        change["queue"] = target = found
    if "assignee" in fields:
        change["assignee"] = _assignee(session, target, fields["assignee"], me)
    if "add_tags" in fields or "remove_tags" in fields:
        names = [tag.name for tag in ticket.tags]
        names += [n for n in fields.get("add_tags", []) if n not in names]
        change["tags"] = [n for n in names if n not in fields.get("remove_tags", [])]
    before = _state(ticket)
    lifecycle.update(session, ticket, actor=actor, now=now, **change)
    after = _state(ticket)
    done.extend(f"{key} {before[key] or '-'} → {after[key] or '-'}" for key in after
                if before[key] != after[key])  # fmt: skip


def _state(ticket: Ticket) -> dict[str, str]:
    return {
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue.slug,
        "assignee": ticket.assignee.email if ticket.assignee else "",
        "tags": ", ".join(sorted(tag.name for tag in ticket.tags)),
    }


def _assignee(session: Session, queue: Queue, value: str, me: User | None) -> User | None:
    if value == "none":
        return None
    if value == "me":
        if me is None:
            raise lifecycle.TicketError("only a macro can assign to me")
        return me
    if value in ("round_robin", "fewest_open"):
        chosen = (assignment.round_robin if value == "round_robin" else assignment.fewest_open)(
            session, queue
        )
        if chosen is None:
            raise lifecycle.TicketError(f"{queue.slug} has no agents to assign")
        return chosen
    with session.no_autoflush:
        user = by_email(session, value)
    if user is None or not user.active:
        raise lifecycle.TicketError(f"no active user {value}")
    return user


def _whom(session: Session, ticket: Ticket, whom: str) -> list[User]:
    if whom == "managers":
        people = queues.managers(session)
    elif whom == "assignee" and ticket.assignee is not None and ticket.assignee.active:
        people = [ticket.assignee]
    else:
        people = queues.members(session, queue_id(ticket))
    return reachable(session, sorted(people, key=lambda user: user.email))

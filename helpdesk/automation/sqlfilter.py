"""Rule conditions as SQL, so that time rules pick their tickets set-based.

``compile_conditions`` turns a condition tree into one SQL clause on
``tickets`` and says whether it is exact. Every leaf but two becomes SQL:
queues, statuses, priorities, channels and assignees are column tests;
tags and requesters are ``EXISTS`` subqueries; "business hours now" is the
set of queues whose calendar is working now; and "at least N business hours
since <moment>" is, per queue, "<moment> at or before the instant N business
hours before now" (``calendars.hours_before``), exact whatever the calendar,
weekends and holidays included. A body test and a regular expression have
no SQL form: they become TRUE, the clause is then a superset, and the caller
checks each candidate in Python (``conditions.evaluate``); so does "at most N
hours since", which is made a superset by a minute's margin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import ReturnTypeFromArgs

from helpdesk.automation.calendars import QueueCalendars, hours_before, is_working
from helpdesk.automation.schema import All, AnyOf, Leaf, Node, children, leaves
from helpdesk.models import Contact, Queue, Tag, Ticket, User, ticket_tags

# time field -> the ticket column it counts from (a missing status change: creation)
ANCHOR_COLUMNS: dict[str, Callable[[], ColumnElement]] = {
    "hours_since_created": lambda: Ticket.created_at,
    "hours_since_customer_message": lambda: Ticket.last_customer_message_at,
    "hours_since_agent_reply": lambda: Ticket.last_agent_reply_at,
    "hours_in_status": lambda: func.coalesce(Ticket.status_changed_at, Ticket.created_at),
}


@dataclass
class SqlContext:
    """What compiling needs: the queues, their calendars, and now."""

    now: datetime
    queues: dict[str, int]  # slug -> id
    calendars: QueueCalendars
    exact: bool = True
    _cutoffs: dict[tuple[int, float], datetime | None] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, calendars: QueueCalendars, now: datetime) -> SqlContext:
        queues = dict(session.execute(select(Queue.slug, Queue.id)).all())
        return cls(now, {slug: int(id_) for slug, id_ in queues.items()}, calendars)

    def cutoff(self, queue_id: int, hours: float) -> datetime | None:
        key = (queue_id, hours)
        if key not in self._cutoffs:
            self._cutoffs[key] = hours_before(self.calendars.of(queue_id), self.now, hours)
        return self._cutoffs[key]


def compile_conditions(node: Node | None, context: SqlContext) -> ColumnElement[bool]:
    """The clause (``context.exact`` tells whether it is exact or a superset)."""
    if node is None:
        return true()
    if isinstance(node, Leaf):
        return _leaf(node, context)
    parts = [compile_conditions(child, context) for child in children(node)]
    if isinstance(node, All):
        return and_(true(), *parts)
    assert isinstance(node, AnyOf)
    return or_(false(), *parts)


def _in(column: ColumnElement, values: list, negate: bool) -> ColumnElement[bool]:
    return column.not_in(values) if negate else column.in_(values)


def _leaf(leaf: Leaf, context: SqlContext) -> ColumnElement[bool]:
    negate = leaf.op in ("is_not", "not_in", "has_not", "not_contains")
    values = list(leaf.values)
    name = leaf.field
    if name == "queue":
        return _in(Ticket.queue_id, [context.queues.get(v, -1) for v in values], negate)
    if name in ("status", "priority", "channel"):
        return _in(getattr(Ticket, name), values, negate)
    if name == "assignee":
        people = [v for v in values if v != "none"]
        clauses = []
        if "none" in values:
            clauses.append(Ticket.assignee_id.is_(None))
        if people:
            ids = select(User.id).where(func.lower(User.email).in_(people)).scalar_subquery()
            clauses.append(Ticket.assignee_id.in_(ids))
        found = or_(false(), *clauses)
        return ~found if negate else found
    if name == "tags":
        has = exists(
            select(ticket_tags.c.ticket_id)
            .join(Tag, Tag.id == ticket_tags.c.tag_id)
            .where(ticket_tags.c.ticket_id == Ticket.id, Tag.name.in_(values))
        )
        return ~has if negate else has
    if name in ("requester", "requester_domain"):
        if name == "requester_domain":
            test = or_(false(), *(Contact.email.endswith(f"@{v}", autoescape=True) for v in values))
        elif leaf.op == "contains":
            test = Contact.email.contains(values[0], autoescape=True)
        else:
            test = Contact.email.in_(values)
        found = exists(select(Contact.id).where(Contact.id == Ticket.requester_id, test))
        return ~found if negate else found
    if name == "subject" and leaf.op in ("contains", "not_contains"):
        found = func.lower(Ticket.subject).contains(values[0], autoescape=True)
        return ~found if negate else found
    if name == "business_hours":
        calendars, now = context.calendars, context.now
        working = [q for q in context.queues.values() if is_working(calendars.of(q), now)]
        return Ticket.queue_id.in_(working) if leaf.value else Ticket.queue_id.not_in(working)
    if name in ANCHOR_COLUMNS:
        return _hours(leaf, context)
    context.exact = False  # body, regex: checked in Python on each candidate
    return true()


def _hours(leaf: Leaf, context: SqlContext) -> ColumnElement[bool]:
    column = ANCHOR_COLUMNS[leaf.field]()
    hours = float(leaf.value)  # type: ignore[arg-type]
    per_queue = []
    if leaf.op == "lte":
        context.exact = False  # a superset: a minute's margin, checked in Python
        hours += 1 / 60
    for queue_id in context.queues.values():
        cutoff = context.cutoff(queue_id, hours)
        if leaf.op == "gte":
            if cutoff is not None:
                per_queue.append(and_(Ticket.queue_id == queue_id, column <= cutoff))
        else:
            limit = cutoff if cutoff is not None else context.now - timedelta(days=3660)
            per_queue.append(and_(Ticket.queue_id == queue_id, column >= limit))
    return or_(false(), *per_queue)


def anchor_expression(node: Node | None) -> ColumnElement:
    """The latest of the moments the rule's time conditions count from: when it
    moves (a new status, a new message), the rule may act again."""
    columns: list[ColumnElement] = []
    for leaf in leaves(node):
        if leaf.field in ANCHOR_COLUMNS:
            column = func.coalesce(ANCHOR_COLUMNS[leaf.field](), Ticket.created_at)
            if not any(column.compare(c) for c in columns):
                columns.append(column)
    if not columns:
        return Ticket.created_at
    if len(columns) == 1:
        return columns[0]
    return _greatest(*columns)


class greatest(ReturnTypeFromArgs):
    """GREATEST on PostgreSQL, the scalar MAX on SQLite."""

    inherit_cache = True
    name = "greatest"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"max({compiler.process(element.clauses, **kw)})"


def _greatest(*columns: ColumnElement) -> ColumnElement:
    return greatest(*columns)

"""API operations on tickets: list, show, download an attachment; open, change, merge.

Rights are the web app's: a ticket outside the token's user's queues is a
404, like a missing one (``tickets.listing.visible_ticket``).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from helpdesk.accounts import users
from helpdesk.api.fields import Address, Body, Html, Line, Name, Slug, Tag, optional
from helpdesk.api.registry import (
    WRITE,
    ApiError,
    Call,
    Download,
    Registry,
    Reply,
    Response,
    invalid,
    not_found,
)
from helpdesk.api.schemas import (
    Priority,
    Status,
    TicketDetail,
    TicketPage,
    message_out,
    ticket_out,
)
from helpdesk.models import Attachment, Ticket
from helpdesk.outbound.outbox import delivery_states
from helpdesk.tickets import contacts, conversation, lifecycle, queues
from helpdesk.tickets.conversation import NewMessage, Opening
from helpdesk.tickets.listing import (
    MAX_ID,
    ListingError,
    NoSuchQueue,
    TicketFilter,
    list_tickets,
    visible_ticket,
)

api = Registry()


class TicketQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    queue: Slug | None = Field(None, description="Only this queue (a slug).")
    status: Literal["any", "active", "new", "open", "pending", "resolved", "closed"] | None = Field(
        None, description="A status, `active` (new, open, pending) or `any` (the default)."
    )
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    q: Line | None = Field(None, description="Search subjects, bodies and addresses.")
    page: int = Field(1, ge=1, le=MAX_ID, description="Page number, 50 tickets a page.")


def ticket_of(call: Call, number: int) -> Ticket:
    """The ticket if the token's user may see it; a 404 otherwise."""
    ticket = visible_ticket(call.session, call.user, number)
    if ticket is None:
        raise not_found(f"no ticket {number} in your queues")
    return ticket


def detail(call: Call, ticket: Ticket) -> TicketDetail:
    deliveries = delivery_states(call.session, [m.id for m in ticket.messages])
    return TicketDetail(
        **ticket_out(ticket).model_dump(),
        messages=[message_out(m, call.base_url, deliveries.get(m.id)) for m in ticket.messages],
    )


def page_links(call: Call, path: str, page: int, pages: int) -> dict[str, str]:
    """``Link`` with rel="next" (and "prev"), keeping the request's other arguments."""
    args = [(k, v) for k, v in call.raw_query if k != "page"]
    links = []
    if page < pages:
        links.append(f'<{call.url(path)}?{urlencode([*args, ("page", page + 1)])}>; rel="next"')
    if page > 1:
        links.append(f'<{call.url(path)}?{urlencode([*args, ("page", page - 1)])}>; rel="prev"')
    return {"Link": ", ".join(links)} if links else {}


@api.operation(
    "GET",
    "/tickets",
    summary="List tickets",
    tag="tickets",
    query=TicketQuery,
    name="list_tickets",
    responses=(Response(200, "A page of tickets, newest change first.", TicketPage, ("Link",)),),
)
def list_tickets_op(call: Call) -> Reply:
    """The tickets of the queues the token's user sees, filtered; merged tickets are left out."""
    query: TicketQuery = call.query
    filters = TicketFilter(
        queue=query.queue, status=query.status, priority=query.priority, q=query.q, page=query.page
    )
    try:
        result = list_tickets(call.session, call.user, filters)
    except NoSuchQueue as exc:
        # The same answer for a queue that is not the user's and one that does not exist.
        raise invalid("queue", "no such queue among yours", where="query") from exc
    except ListingError as exc:
        raise ApiError(422, str(exc)) from exc
    body = TicketPage(
        tickets=[ticket_out(t) for t in result.tickets],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )
    return Reply(body, headers=page_links(call, "/tickets", result.page, result.pages))


@api.operation(
    "GET",
    "/tickets/{number}",
    summary="Show a ticket with its messages",
    tag="tickets",
    responses=(Response(200, "The ticket, its thread and notes.", TicketDetail),),
)
def show_ticket(call: Call) -> Reply:
    """A ticket and every message of its thread (inbound, outbound with delivery state, notes)."""
    return Reply(detail(call, ticket_of(call, call.path["number"])))


@api.operation(
    "GET",
    "/tickets/{number}/attachments/{attachment_id}",
    summary="Download an attachment",
    tag="tickets",
    responses=(
        Response(
            200, "The file, as a download.", headers=("Content-Disposition",), media_type="*/*"
        ),
    ),
)
def download_attachment(call: Call) -> Download:
    """The file as it was received or sent, with the web app's download headers
    (``Content-Disposition: attachment``, ``nosniff``, a sandboxing CSP)."""
    ticket = ticket_of(call, call.path["number"])
    row = call.session.get(Attachment, call.path["attachment_id"])
    if row is None or row.message.ticket_id != ticket.id:
        raise not_found("no such attachment on this ticket")
    return Download(row.data, row.filename, row.content_type)


# --- Changes -------------------------------------------------------------------


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Address
    name: Name = ""


class TicketCreate(BaseModel):
    """A ticket opened as a mail from the requester would open it."""

    model_config = ConfigDict(extra="forbid")

    queue: Slug = Field(description="The queue's slug; one the token's user works in.")
    requester: Person
    subject: Line
    text: Body
    html: Html | None = Field(None, description="The message's HTML, shown sanitised.")
    cc: list[Address] = Field(default_factory=list, max_length=50)
    priority: Priority | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    acknowledge: bool = Field(True, description="Mail the requester an acknowledgement.")


@api.operation(
    "POST",
    "/tickets",
    summary="Open a ticket",
    tag="tickets",
    scope=WRITE,
    body=TicketCreate,
    responses=(Response(201, "The new ticket.", TicketDetail, ("Location",)),),
)
def create_ticket(call: Call) -> Reply:
    """Opens a ticket as a mail from the requester would: SLA clocks, agents' notifications
    and, unless ``acknowledge`` is false, the acknowledgement to the requester. The history
    records channel ``api`` and the token."""
    body: TicketCreate = call.body
    session, now = call.session, call.now
    queue = queues.by_slug(session, body.queue)
    if queue is None or not lifecycle.can_work_in(call.user, queue):
        raise invalid("queue", f"no queue {body.queue} among yours")
    requester = contacts.get_or_create(session, body.requester.email, body.requester.name, now=now)
    ccs = [
        contacts.get_or_create(session, address, "", now=now)
        for address in dict.fromkeys(body.cc)
        if address != requester.email
    ]
    message = NewMessage(
        from_address=requester.email, from_name=requester.name, subject=body.subject,
        text=body.text, html=body.html or "", to=[queue.email_address], cc=[c.email for c in ccs],
        message_id=f"<api.{secrets.token_hex(12)}@{call.settings.mail_domain}>", sent_at=now,
    )  # fmt: skip
    ticket = conversation.open_ticket(
        session, queue=queue, requester=requester, subject=body.subject, actor=call.actor,
        now=now, opening=Opening(channel="api", message=message, ccs=ccs,
                                 acknowledge=body.acknowledge),
    )  # fmt: skip
    if body.priority is not None or body.tags:
        lifecycle.update(
            session, ticket, actor=call.actor, now=now,
            priority=body.priority or lifecycle.UNSET, tags=body.tags or lifecycle.UNSET,
        )  # fmt: skip
    session.flush()
    location = call.url(f"/tickets/{ticket.number}")
    return Reply(detail(call, ticket), 201, {"Location": location})


class TicketPatch(BaseModel):
    """The fields to change; leave out what stays. ``assignee: null`` unassigns."""

    model_config = ConfigDict(extra="forbid")

    status: Status | SkipJsonSchema[None] = optional()
    priority: Priority | SkipJsonSchema[None] = optional()
    assignee: Address | None = Field(None, description="A user's address, or null: nobody.")
    queue: Slug | SkipJsonSchema[None] = optional("A queue's slug.")
    tags: Annotated[list[Tag], Field(max_length=50)] | SkipJsonSchema[None] = optional(
        "All the tags."
    )


@api.operation(
    "PATCH",
    "/tickets/{number}",
    summary="Change a ticket's fields",
    tag="tickets",
    scope=WRITE,
    body=TicketPatch,
    responses=(Response(200, "The ticket as it is now.", TicketDetail),),
)
def update_ticket(call: Call) -> Reply:
    """Any of status, priority, assignee, queue and tags at once, checked together (a bad
    value changes nothing); one history entry per changed field, one ``ticket.updated``."""
    body: TicketPatch = call.body
    session = call.session
    ticket = ticket_of(call, call.path["number"])
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    for name in ("status", "priority", "queue", "tags"):
        if name in given and getattr(body, name) is None:
            raise invalid(name, f"{name} cannot be null")
    if body.status is not None:
        changes["status"] = body.status
    if body.priority is not None:
        changes["priority"] = body.priority
    if body.tags is not None:
        changes["tags"] = list(dict.fromkeys(body.tags))
    if body.queue is not None:
        queue = queues.by_slug(session, body.queue)
        if queue is None or not lifecycle.can_work_in(call.user, queue):
            raise invalid("queue", f"no queue {body.queue} among yours")
        changes["queue"] = queue
    if "assignee" in given:
        assignee = None if body.assignee is None else users.by_email(session, body.assignee)
        if body.assignee is not None and assignee is None:
            raise invalid("assignee", f"no user {body.assignee}")
        changes["assignee"] = assignee
    lifecycle.update(session, ticket, actor=call.actor, now=call.now, **changes)
    session.flush()
    return Reply(detail(call, ticket))


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: int = Field(ge=1, le=MAX_ID, description="The number of the ticket to merge into.")


@api.operation(
    "POST",
    "/tickets/{number}/merge",
    summary="Merge a ticket into another",
    tag="tickets",
    scope=WRITE,
    body=MergeRequest,
    responses=(Response(200, "The ticket merged into, with the messages moved.", TicketDetail),),
)
def merge_ticket(call: Call) -> Reply:
    """Moves the ticket's messages and people into ``into`` and closes it; later mail to it
    lands on ``into``. Both tickets must be in the token's user's queues."""
    ticket = ticket_of(call, call.path["number"])
    target = visible_ticket(call.session, call.user, call.body.into)
    if target is None:
        raise invalid("into", f"no ticket {call.body.into} in your queues")
    lifecycle.merge(call.session, ticket, target, actor=call.actor, now=call.now)
    call.session.flush()
    call.session.expire(target, ["messages"])
    return Reply(detail(call, target))

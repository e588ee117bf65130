"""API operations on tickets: list, show, and the attachment download.

Rights are the web app's: a ticket outside the token's user's queues is a
404, like a missing one (``tickets.listing.visible_ticket``).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.api.fields import Line, Slug
from helpdesk.api.registry import ApiError, Call, Download, Registry, Reply, Response, not_found
from helpdesk.api.schemas import TicketDetail, TicketPage, message_out, ticket_out
from helpdesk.models import Attachment, Ticket
from helpdesk.outbound.outbox import delivery_states
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
        raise ApiError(404, f"no queue {query.queue} among yours") from exc
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

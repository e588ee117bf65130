"""API operations on what is said on a ticket: replies (leave through the outbox,
threaded, like a web reply) and internal notes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.api.fields import Address, Body, Html
from helpdesk.api.registry import WRITE, Call, Registry, Reply, Response
from helpdesk.api.schemas import MessageOut, message_out
from helpdesk.api.tickets import ticket_of
from helpdesk.mail.compose import HeaderInjection
from helpdesk.outbound.outbox import delivery_states
from helpdesk.tickets import contacts, conversation
from helpdesk.tickets.lifecycle import TicketError

api = Registry()


class ReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Body
    html: Html | None = Field(None, description="Your own HTML for the mail (sanitised).")
    cc: list[Address] = Field(
        default_factory=list, max_length=50, description="Addresses that join the ticket's CCs."
    )
    status_after: Literal["new", "open", "pending", "resolved", "closed"] | None = Field(
        None, description='Set this status at once ("send and set pending").'
    )


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Body


@api.operation(
    "POST",
    "/tickets/{number}/replies",
    summary="Reply to the requester",
    tag="conversation",
    scope=WRITE,
    body=ReplyCreate,
    multipart=True,
    responses=(Response(201, "The reply, queued in the outbox.", MessageOut),),
)
def create_reply(call: Call) -> Reply:
    """An agent's reply to the requester and the CCs, signed by the token's user, threaded
    under the customer's newest message and sent by the worker through the outbox. A new
    ticket becomes open. Send ``multipart/form-data`` with ``files`` to attach files."""
    body: ReplyCreate = call.body
    ticket = ticket_of(call, call.path["number"])
    ccs = [
        contacts.get_or_create(call.session, a, "", now=call.now) for a in dict.fromkeys(body.cc)
    ]
    try:
        message, _row = conversation.reply(
            call.session, ticket, actor=call.actor, text=body.text, settings=call.settings,
            now=call.now, attachments=call.files, status_after=body.status_after, cc=ccs,
            html=body.html or "",
        )  # fmt: skip
    except HeaderInjection as exc:
        raise TicketError(str(exc)) from exc
    call.session.flush()
    deliveries = delivery_states(call.session, [message.id])
    return Reply(message_out(message, call.base_url, deliveries.get(message.id)), 201)


@api.operation(
    "POST",
    "/tickets/{number}/notes",
    summary="Add an internal note",
    tag="conversation",
    scope=WRITE,
    body=NoteCreate,
    responses=(Response(201, "The note.", MessageOut),),
)
def create_note(call: Call) -> Reply:
    """A note for agents, never mailed to the customer."""
    ticket = ticket_of(call, call.path["number"])
    note = conversation.add_note(
        call.session, ticket, actor=call.actor, text=call.body.text, now=call.now
    )
    call.session.flush()
    return Reply(message_out(note, call.base_url), 201)

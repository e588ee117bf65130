"""What the API answers about tickets: pydantic models, and building them from rows.

These models are the response schemas of the OpenAPI document; the ``*_out``
functions build them from ORM rows (no queries beyond the rows' loaded
relationships). The JSON keys are the contract of DESIGN.md ("a ticket is
number, subject, queue, status, ...").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import object_session

from helpdesk.models import Message, OutboxMail, Ticket, TicketSla

Status = Literal["new", "open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Kind = Literal["inbound", "outbound", "note"]


class Sla(BaseModel):
    """The ticket's SLA clocks (due times are null once met)."""

    policy: str
    state: str
    breached: bool
    first_response_due: datetime | None
    first_response_at: datetime | None
    next_response_due: datetime | None
    resolution_due: datetime | None
    paused_minutes: float


class Delivery(BaseModel):
    """Where an outbound message is on its way out."""

    state: str = Field(description="queued, sending, sent or failed")
    attempts: int
    last_error: str
    sent_at: datetime | None


class AttachmentOut(BaseModel):
    model_config = ConfigDict(title="Attachment")

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    url: str = Field(description="Where to download it (same bearer token).")


class MessageOut(BaseModel):
    model_config = ConfigDict(title="Message", populate_by_name=True)

    id: int
    kind: Kind
    from_: str = Field(alias="from", serialization_alias="from")
    from_name: str
    to: list[str]
    cc: list[str]
    subject: str
    text: str
    message_id: str
    created_at: datetime
    flags: list[str]
    also_addressed: list[str]
    attachments: list[AttachmentOut]
    delivery: Delivery | None = Field(description="For outbound messages: the outbox state.")


class TicketOut(BaseModel):
    model_config = ConfigDict(title="Ticket")

    number: int
    subject: str
    queue: str = Field(description="The queue's slug.")
    status: Status
    priority: Priority
    requester: str = Field(description="The requester's address.")
    requester_name: str
    assignee: str | None = Field(description="The assignee's address.")
    ccs: list[str]
    tags: list[str]
    merged_into: int | None = Field(description="The ticket this one was merged into.")
    created_at: datetime
    updated_at: datetime
    sla: Sla | None


class TicketDetail(TicketOut):
    model_config = ConfigDict(title="TicketDetail")

    messages: list[MessageOut]


class TicketPage(BaseModel):
    tickets: list[TicketOut]
    page: int
    per_page: int
    total: int


def sla_out(row: TicketSla | None) -> Sla | None:
    if row is None or row.policy is None:
        return None
    return Sla(
        policy=row.policy.name,
        state=row.state,
        breached=row.breached,
        first_response_due=row.first_response_due if row.first_response_at is None else None,
        first_response_at=row.first_response_at,
        next_response_due=row.next_response_due,
        resolution_due=row.resolution_due if row.resolved_at is None else None,
        paused_minutes=round(row.paused_minutes, 1),
    )


def _merged_number(ticket: Ticket) -> int | None:
    session = object_session(ticket)
    target = session.get(Ticket, ticket.merged_into_id) if session is not None else None
    return target.number if target is not None else None


def ticket_out(ticket: Ticket) -> TicketOut:
    return TicketOut(
        number=ticket.number,
        subject=ticket.subject,
        queue=ticket.queue.slug,
        status=ticket.status,  # type: ignore[arg-type]
        priority=ticket.priority,  # type: ignore[arg-type]
        requester=ticket.requester.email,
        requester_name=ticket.requester.name,
        assignee=ticket.assignee.email if ticket.assignee else None,
        ccs=[contact.email for contact in ticket.ccs],
        tags=sorted(tag.name for tag in ticket.tags),
        merged_into=_merged_number(ticket) if ticket.merged_into_id else None,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        sla=sla_out(ticket.sla),
    )


def delivery_out(row: OutboxMail | None) -> Delivery | None:
    if row is None:
        return None
    return Delivery(
        state=row.state, attempts=row.attempts, last_error=row.last_error, sent_at=row.sent_at
    )


def message_out(message: Message, base_url: str, delivery: OutboxMail | None = None) -> MessageOut:
    number = message.ticket.number
    return MessageOut(  # type: ignore[call-arg]  # by field name; the alias is 'from'
        id=message.id,
        kind=message.kind,  # type: ignore[arg-type]
        from_=message.from_address,
        from_name=message.from_name,
        to=list(message.to_addresses or []),
        cc=list(message.cc_addresses or []),
        subject=message.subject,
        text=message.text_body,
        message_id=message.message_id,
        created_at=message.created_at,
        flags=list(message.flags or []),
        also_addressed=list(message.also_addressed or []),
        attachments=[
            AttachmentOut(
                id=a.id,
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                sha256=a.sha256,
                url=f"{base_url}/tickets/{number}/attachments/{a.id}",
            )
            for a in message.attachments
        ],
        delivery=delivery_out(delivery) if message.kind == "outbound" else None,
    )

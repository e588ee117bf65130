"""The data model, one module per concept; import from here."""

from helpdesk.models.ack_count import AcknowledgementCount
from helpdesk.models.base import Base
from helpdesk.models.canned import CannedResponse
from helpdesk.models.contact import Contact
from helpdesk.models.event import TicketEvent
from helpdesk.models.idempotency import IdempotentRequest
from helpdesk.models.lease import Lease
from helpdesk.models.message import KINDS, Attachment, Message
from helpdesk.models.outbox import OutboxMail
from helpdesk.models.queue import Queue, QueueAddress
from helpdesk.models.raw_mail import RawMail
from helpdesk.models.rule import Macro, Rule, RuleJournal, RuleMark, RuleRun
from helpdesk.models.sla import SlaCalendar, SlaHoliday, SlaPolicy, TicketSla
from helpdesk.models.tag import Tag, ticket_tags
from helpdesk.models.ticket import (
    ACTIVE_STATUSES,
    DONE_STATUSES,
    PRIORITIES,
    STATUSES,
    WAITING_STATUSES,
    Counter,
    Ticket,
    TicketCC,
)
from helpdesk.models.user import ROLES, TOKEN_SCOPES, ApiToken, User, user_queues
from helpdesk.models.websession import LoginFailure, TicketViewer, WebSession

__all__ = [
    "ACTIVE_STATUSES",
    "DONE_STATUSES",
    "KINDS",
    "PRIORITIES",
    "ROLES",
    "STATUSES",
    "TOKEN_SCOPES",
    "WAITING_STATUSES",
    "AcknowledgementCount",
    "ApiToken",
    "Attachment",
    "Base",
    "CannedResponse",
    "Contact",
    "Counter",
    "IdempotentRequest",
    "Lease",
    "LoginFailure",
    "Macro",
    "Message",
    "OutboxMail",
    "Queue",
    "QueueAddress",
    "RawMail",
    "Rule",
    "RuleJournal",
    "RuleMark",
    "RuleRun",
    "SlaCalendar",
    "SlaHoliday",
    "SlaPolicy",
    "Tag",
    "Ticket",
    "TicketCC",
    "TicketEvent",
    "TicketSla",
    "TicketViewer",
    "User",
    "WebSession",
    "ticket_tags",
    "user_queues",
]

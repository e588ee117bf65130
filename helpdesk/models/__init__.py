"""The data model, one module per concept; import from here."""

from helpdesk.models.base import Base
from helpdesk.models.contact import Contact
from helpdesk.models.message import KINDS, Attachment, Message
from helpdesk.models.outbox import OutboxMail
from helpdesk.models.queue import Queue, QueueAddress
from helpdesk.models.raw_mail import RawMail
from helpdesk.models.ticket import PRIORITIES, STATUSES, Counter, Ticket, TicketCC
from helpdesk.models.user import ROLES, ApiToken, User, user_queues

__all__ = [
    "KINDS",
    "PRIORITIES",
    "ROLES",
    "STATUSES",
    "ApiToken",
    "Attachment",
    "Base",
    "Contact",
    "Counter",
    "Message",
    "OutboxMail",
    "Queue",
    "QueueAddress",
    "RawMail",
    "Ticket",
    "TicketCC",
    "User",
    "user_queues",
]

"""One builder for every mail we send about a ticket: acknowledgements, agents'
replies, agent notifications and SLA escalations.

A ``TicketMail`` describes one such mail in plain, JSON-able values: the
headers, made once here (From with the queue's name, our signed Message-ID,
In-Reply-To and References, the tagged subject, ``Auto-Submitted`` and the
loop header for automatic mail) and the body. Header values are checked for
CR/LF when a TicketMail is made (``HeaderInjection``), so a mail that could
not be built is refused at once and never queued.

The outbox row keeps the TicketMail (``OutboxMail.spec``) and the worker turns
it into bytes when it sends (``mime_bytes``): receiving mail builds no MIME.
The body is either the text of a message of the thread (an acknowledgement
or a reply: its Message row holds the text, HTML and attachments the
customer sees) or, for mail to agents, a template and the few values it
shows, rendered at send time. Templates get only what they show (plain
values, never ``Settings``, which holds the secret key and relay password);
the subject tag is ``ticket.tag`` (``[HD#12]``) and ``ticket.ref`` (``HD#12``),
spelled here once. A queue may have its own templates under
``templates/email/queues/<slug>/``; they get the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import nh3
from markupsafe import Markup

from helpdesk.mail.classify import is_automated
from helpdesk.mail.compose import (
    Outgoing,
    check_header,
    render_for_queue,
    reply_subject,
    tag,
    tagged_subject,
    thread_references,
)
from helpdesk.mail.compose import (
    build as build_mime,
)
from helpdesk.mail.messageid import make_message_id
from helpdesk.mail.reply_address import agent_reply_address
from helpdesk.models import Contact, Message, OutboxMail, Ticket, User
from helpdesk.settings import Settings


@dataclass
class TicketMail:
    """Everything needed to build one mail about a ticket (see the module docstring).

    ``text`` and ``html`` are the rendered body of a thread message (kept on
    its Message row, not in the spec); ``template`` and ``context`` are the
    body of mail to agents (kept in the spec, rendered when built).
    """

    purpose: str
    from_address: str
    from_name: str
    to: list[str]
    subject: str
    message_id: str
    date: datetime
    queue_slug: str
    cc: list[str] = field(default_factory=list)
    reply_to: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    automatic: bool = False
    loop_marker: str = ""
    template: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    html: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list, repr=False)

    @property
    def from_message(self) -> bool:
        """The body is a message of the thread (not a template)."""
        return not self.template

    def check(self) -> TicketMail:
        """Refuse CR or LF in any header value (raises ``HeaderInjection``)."""
        for name, value in (
            ("From", self.from_name),
            ("From", self.from_address),
            ("Subject", self.subject),
            ("Message-ID", self.message_id),
            ("In-Reply-To", self.in_reply_to),
            ("Reply-To", self.reply_to),
            *(("To", a) for a in self.to),
            *(("Cc", a) for a in self.cc),
            *(("References", r) for r in self.references),
        ):
            check_header(name, value)
        return self

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["text"], data["html"], data["attachments"]
        data["date"] = self.date.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketMail:
        return cls(**{**data, "date": datetime.fromisoformat(data["date"])})


def mime_bytes(row: OutboxMail) -> bytes:
    """The bytes to send for an outbox row (CRLF line endings, as SMTP and DKIM want).

    Rows queued before mail was built at send time hold their bytes.
    """
    if row.spec is None:
        return row.content or b""
    mail = TicketMail.from_json(row.spec)
    return build(mail, row.message if mail.from_message else None).as_bytes(policy=SMTP)


def build(mail: TicketMail, message: Message | None = None) -> EmailMessage:
    """The MIME message; a thread mail takes its body and attachments from ``message``."""
    if mail.template:
        text = render_for_queue(f"{mail.template}.txt", mail.queue_slug, **mail.context)
        html, attachments = "", []
    elif message is not None:
        text, html = message.text_body, message.html_body
        attachments = [(a.filename, a.content_type, a.data) for a in message.attachments]
    else:
        text, html, attachments = mail.text, mail.html, mail.attachments
    return build_mime(
        Outgoing(
            from_address=mail.from_address, from_name=mail.from_name, to=mail.to, cc=mail.cc,
            subject=mail.subject, message_id=mail.message_id, text=text, html=html,
            reply_to=mail.reply_to, in_reply_to=mail.in_reply_to, references=mail.references,
            automatic=mail.automatic, loop_marker=mail.loop_marker, date=mail.date,
            attachments=attachments,
        )
    )  # fmt: skip


# --- What each kind of mail shows ---------------------------------------------


ACK_SUBJECT_LENGTH = 100


def shorten(text: str, length: int) -> str:
    """At most ``length`` characters, an ellipsis marking a cut."""
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def ticket_values(ticket: Ticket, prefix: str) -> dict[str, Any]:
    """The ticket as templates see it."""
    return {
        "number": ticket.number,
        "tag": tag(prefix, ticket.number),
        "ref": f"{prefix}{ticket.number}",
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "requester": {"name": ticket.requester.name, "email": ticket.requester.email},
        "assignee": ticket.assignee.email if ticket.assignee else "",
    }


def _mail(
    ticket: Ticket,
    purpose: str,
    settings: Settings,
    now: datetime,
    *,
    to: list[str],
    subject: str,
    name: str = "",
    **headers: Any,
) -> TicketMail:
    queue = ticket.queue
    return TicketMail(
        purpose=purpose,
        from_address=queue.email_address,
        from_name=f"{name or settings.sender_name} ({queue.name})",
        to=to,
        subject=subject,
        message_id=make_message_id(settings.secret_key, ticket.number, settings.mail_domain),
        date=now,
        queue_slug=queue.slug,
        loop_marker=settings.mail_domain,
        **headers,
    )


def parent(ticket: Ticket) -> Message | None:
    """The message a reply answers: the customer's newest own message that is not
    automated (never a bounce or an auto-reply), else the newest one we sent."""
    messages = ticket.messages
    for message in reversed(messages):
        if (
            message.kind == "inbound"
            and message.author_id is None
            and not is_automated(message.flags or [])
        ):
            return message
    for message in reversed(messages):
        if message.kind == "outbound":
            return message
    return None


def _threading(message: Message | None) -> dict[str, Any]:
    if message is None:
        return {}
    return {
        "in_reply_to": message.message_id,
        "references": thread_references(
            message.references_header, message.message_id, message.in_reply_to
        ),
    }


def acknowledgement(
    ticket: Ticket, inbound: Message | None, *, settings: Settings, now: datetime
) -> TicketMail:
    """ "We received your request": to the requester, threaded under their message.

    It goes to whoever the mail claims to be, so it echoes as little as it can:
    never the display name (not even to a queue's own template), the subject
    cut to ``ACK_SUBJECT_LENGTH`` characters."""
    subject = shorten(ticket.subject, ACK_SUBJECT_LENGTH)
    values = ticket_values(ticket, settings.subject_tag_prefix)
    values |= {"subject": subject, "requester": {"name": "", "email": ticket.requester.email}}
    context = {"ticket": values, "queue": ticket.queue.name, "sender_name": settings.sender_name}
    slug = ticket.queue.slug
    return _mail(
        ticket, "acknowledgement", settings, now,
        to=[ticket.requester.email],
        subject=reply_subject(subject, settings.subject_tag_prefix, ticket.number),
        reply_to=settings.reply_to, automatic=True,
        text=render_for_queue("acknowledgement.txt", slug, **context),
        html=render_for_queue("acknowledgement.html", slug, **context),
        **_threading(inbound),
    ).check()  # fmt: skip


def reply(
    ticket: Ticket,
    *,
    author: User,
    text: str,
    settings: Settings,
    now: datetime,
    attachments: Sequence[tuple[str, str, bytes]] | None = None,
    html: str = "",
) -> TicketMail:
    """An agent's reply to the requester and the CCs, under the customer's newest message.

    ``html``: the agent's own markup for the HTML part (API replies), cleaned
    by nh3; templates get it as ``body_html`` (empty for a plain reply)."""
    # tagged_subject() folds a CRLF pair into a space; refuse it before that hides it.
    check_header("Subject", ticket.subject)
    context = {
        "body": text,
        "body_html": Markup(nh3.clean(html)) if html else "",
        "signature": author.name or author.email,
        "queue": ticket.queue.name,
        "ticket": ticket_values(ticket, settings.subject_tag_prefix),
    }
    slug = ticket.queue.slug
    return _mail(
        ticket, "reply", settings, now,
        to=[ticket.requester.email], cc=[contact.email for contact in ticket.ccs],
        subject=reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number),
        name=author.name, reply_to=settings.reply_to,
        text=render_for_queue("reply.txt", slug, **context),
        html=render_for_queue("reply.html", slug, **context),
        attachments=list(attachments or []),
        **_threading(parent(ticket)),
    ).check()  # fmt: skip


def automatic(ticket: Ticket, *, text: str, settings: Settings, now: datetime) -> TicketMail:
    """An automatic mail to the requester (an automation rule's reminder, a closing
    note): threaded under the customer's newest message like a reply, marked
    ``Auto-Submitted``; ``text`` is the finished body."""
    check_header("Subject", ticket.subject)
    return _mail(
        ticket, "automatic", settings, now,
        to=[ticket.requester.email],
        subject=reply_subject(ticket.subject, settings.subject_tag_prefix, ticket.number),
        reply_to=settings.reply_to, automatic=True, text=text,
        **_threading(parent(ticket)),
    ).check()  # fmt: skip


def notification(
    ticket: Ticket,
    user: User,
    *,
    purpose: str,
    title: str,
    excerpt: str,
    settings: Settings,
    now: datetime,
) -> TicketMail:
    """A note to one agent (new ticket, assigned to you, customer replied)."""
    tagged = tagged_subject(ticket.subject, settings.subject_tag_prefix, ticket.number)
    context = {
        "title": title,
        "ticket": ticket_values(ticket, settings.subject_tag_prefix),
        "queue": ticket.queue.name,
        "excerpt": excerpt[:2000],
    }
    return _mail(
        ticket, purpose, settings, now, to=[user.email], subject=f"{title}: {tagged}",
        automatic=True, template="notification", context=context,
        reply_to=agent_reply_to(ticket, user, settings),
    ).check()  # fmt: skip


def escalation(
    ticket: Ticket,
    user: User,
    *,
    level: str,
    title: str,
    label: str,
    target: float,
    elapsed: float,
    due: datetime | None,
    settings: Settings,
    now: datetime,
) -> TicketMail:
    """An SLA warning or breach, to one agent or manager."""
    tagged = tagged_subject(ticket.subject, settings.subject_tag_prefix, ticket.number)
    context = {
        "title": title,
        "ticket": ticket_values(ticket, settings.subject_tag_prefix),
        "queue": ticket.queue.name,
        "label": label,
        "target": target,
        "elapsed": elapsed,
        "due": due.strftime("%Y-%m-%d %H:%M UTC") if due else "",
    }
    return _mail(
        ticket, f"escalation:{level}", settings, now, to=[user.email],
        subject=f"{title}: {tagged}", automatic=True, template="sla_escalation", context=context,
        reply_to=agent_reply_to(ticket, user, settings),
    ).check()  # fmt: skip


def agent_reply_to(ticket: Ticket, user: User, settings: Settings) -> str:
    """The agent's own reply address at the ticket's queue: their answer by mail counts
    as theirs (``helpdesk.intake.senders``)."""
    return agent_reply_address(ticket.queue.email_address, settings.secret_key, user.id, user.email)


def bouncing(contacts: Sequence[Contact]) -> set[str]:
    """The addresses among these contacts that bounce (no query: read from the rows)."""
    return {contact.email for contact in contacts if contact.bouncing_since is not None}

"""Who wrote a received message, as far as we can prove it.

Anyone can write any From. Mail counts as an agent's only with proof the
sender cannot forge (DESIGN.md, "Agents by mail"):

1. it was sent to that agent's own reply address (``help-desk+a.<id>.<sig>@``,
   the Reply-To of the mail we send agents, ``helpdesk.mail.reply_address``),
   among the envelope recipients or To/Cc; or
2. the trusted MX (``HELPDESK_TRUSTED_AUTHSERV_ID``) says in its
   ``Authentication-Results`` that DMARC passed for the agent's domain.

A From naming an active user without either is an outside sender flagged
``spoofed_agent``; a From that is ambiguous (``helpdesk.mail.mailboxes``) is
flagged ``ambiguous_from``. Neither is matched to an agent or to a
participant of a ticket (no threading by subject tag, no CCs taken). The
trusted MX's SPF or DMARC failure adds ``spf_fail`` / ``dmarc_fail`` (no
acknowledgement then, ``helpdesk.outbound.acknowledgement``).

Cheap per message: the user comes from the batch's preloaded facts, a
token check is one HMAC, and the header is read only when a trusted id is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from helpdesk.accounts.users import active_by_email
from helpdesk.intake.spool import Envelope
from helpdesk.mail import authresults
from helpdesk.mail.addresses import domain_of, normalise_address
from helpdesk.mail.inbound import InboundEmail
from helpdesk.mail.reply_address import proves_agent
from helpdesk.models import User
from helpdesk.settings import Settings
from helpdesk.tickets.facts import facts_of

SPOOFED_AGENT = "spoofed_agent"
AMBIGUOUS_FROM = "ambiguous_from"
# A sender with one of these is nobody we know: no agent, no participant.
UNPROVEN = frozenset({SPOOFED_AGENT, AMBIGUOUS_FROM})


@dataclass
class Sender:
    """The sender as intake treats it."""

    address: str  # the From address, else the envelope sender
    name: str
    agent: User | None = None  # only with proof
    flags: set[str] = field(default_factory=set)

    @property
    def known(self) -> bool:
        """May be matched to a ticket's participants (and take part in one)."""
        return not UNPROVEN & self.flags


def active_user(session: Session, address: str) -> User | None:
    """The active user with this address (from preloaded facts if any)."""
    if not address:
        return None
    facts = facts_of(session)
    if facts is not None:
        return facts.users.get(address)
    return active_by_email(session, address)


def identify(
    session: Session, mail: InboundEmail, envelope: Envelope, settings: Settings
) -> Sender:
    """Who sent ``mail`` (see the module docstring)."""
    envelope_sender = normalise_address(envelope.mail_from)
    results = authresults.trusted(
        mail.headers.get("authentication-results", []), settings.trusted_authserv_id
    )
    flags = {f"{method}_fail" for method in results.failed} if results else set()
    if mail.ambiguous_from:
        return Sender(envelope_sender, "", None, flags | {AMBIGUOUS_FROM})
    address = mail.from_address or envelope_sender
    sender = Sender(address, mail.from_name, None, flags)
    user = active_user(session, mail.from_address)
    if user is None:
        return sender
    if _proven(user, mail, envelope, settings, results):
        sender.agent = user
    else:
        sender.flags.add(SPOOFED_AGENT)
    return sender


def _proven(
    user: User,
    mail: InboundEmail,
    envelope: Envelope,
    settings: Settings,
    results: authresults.AuthResults | None,
) -> bool:
    recipients = [*envelope.rcpt_tos, *(address for _, address in [*mail.to, *mail.cc])]
    if any(proves_agent(settings.secret_key, r, user.id, user.email) for r in recipients):
        return True
    return results is not None and results.dmarc_pass_for(domain_of(user.email))

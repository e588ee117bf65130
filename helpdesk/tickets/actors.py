"""Who changes a ticket: an agent, a customer, a rule, the system or an API token.

Every lifecycle call names its actor; the history row records the actor's
kind and label (shown on the ticket page as "by rule Invoices", "by API token
ci-bot (anna@example.com)", "by customer") and, for agents and API tokens,
the user. An ``Actor`` is a small frozen value: it compares and hashes by its
fields, so a rule engine can ask whether a rule already acted in a chain
(``Actor.rule(7, "Invoices") in event.cause.chain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helpdesk.models import Contact, User

AGENT = "agent"
CUSTOMER = "customer"
RULE = "rule"
SYSTEM = "system"
API_TOKEN = "api_token"


@dataclass(frozen=True, slots=True)
class Actor:
    """The one who made a change.

    ``user_id`` is the user behind an agent or an API token; ``ref`` is the
    contact id of a customer, the rule id of a rule, the token id of an API
    token; ``label`` names the actor for people (an address, a rule's or a
    token's name, a system job). ``user`` is the User object itself, when the
    caller has it (not compared): the lifecycle checks an agent's rights
    against it and signs replies with it.
    """

    kind: str
    label: str = ""
    user_id: int | None = None
    ref: int | None = None
    user: User | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def agent(cls, user: User) -> Actor:
        return cls(AGENT, user.email, user.id, None, user)

    @classmethod
    def customer(cls, contact: Contact) -> Actor:
        return cls(CUSTOMER, contact.email, None, contact.id)

    @classmethod
    def rule(cls, rule_id: int, name: str) -> Actor:
        return cls(RULE, name, None, rule_id)

    @classmethod
    def system(cls, job: str = "") -> Actor:
        """Mail intake, the SLA job, the outbox worker: ``job`` says which."""
        return cls(SYSTEM, job)

    @classmethod
    def api_token(cls, user: User, token_id: int, token_name: str) -> Actor:
        return cls(API_TOKEN, token_name, user.id, token_id, user)


def as_actor(actor: Actor | User) -> Actor:
    """Lifecycle functions accept a ``User`` for an agent acting in person."""
    return actor if isinstance(actor, Actor) else Actor.agent(actor)


def describe(kind: str, label: str, user_email: str | None) -> str:
    """How the ticket page names an actor: "by anna@…", "by rule Invoices", ..."""
    if kind == AGENT:
        return f"by {user_email or label or 'an agent'}"
    if kind == CUSTOMER:
        return "by customer" + (f" {label}" if label else "")
    if kind == RULE:
        return f"by rule {label}"
    if kind == API_TOKEN:
        owner = f" ({user_email})" if user_email else ""
        return f"by API token {label}{owner}"
    return "by system" + (f" ({label})" if label else "")

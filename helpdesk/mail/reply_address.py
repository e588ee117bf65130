"""Agents' reply addresses: the proof, in the address itself, that mail is an agent's.

Mail we send an agent (notifications, SLA escalations) carries
``Reply-To: <queue>+a.<user id>.<signature>@<domain>``; the signature is an
HMAC (``helpdesk.keys.AGENT_REPLY_ADDRESS``) of the user's id and address,
so only someone who received such a mail knows it, it names one agent, and
it stops working when that agent's address changes. The gateway routes
``<queue>+anything@`` to the queue; intake reads the token back from the
recipients (``helpdesk.intake.senders``). Lower case throughout: MTAs may
fold the case of a local part.
"""

from __future__ import annotations

import hashlib
import hmac

from helpdesk.keys import AGENT_REPLY_ADDRESS, derive
from helpdesk.mail.addresses import detail_of, normalise_address

PREFIX = "a."
SIGNATURE_LENGTH = 20  # hex digits: 80 bits


def _signature(secret_key: str, user_id: int, email: str) -> str:
    key = derive(secret_key, AGENT_REPLY_ADDRESS)
    message = f"{user_id}:{normalise_address(email)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:SIGNATURE_LENGTH]


def agent_token(secret_key: str, user_id: int, email: str) -> str:
    return f"{PREFIX}{user_id}.{_signature(secret_key, user_id, email)}"


def agent_reply_address(queue_address: str, secret_key: str, user_id: int, email: str) -> str:
    """``help-desk@d`` becomes ``help-desk+a.<id>.<signature>@d`` for this agent."""
    local, _, domain = normalise_address(queue_address).rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}+{agent_token(secret_key, user_id, email)}@{domain}"


def proves_agent(secret_key: str, address: str, user_id: int, email: str) -> bool:
    """Whether ``address`` (a recipient of received mail) is this agent's reply address."""
    detail = detail_of(address)
    if not detail.startswith(PREFIX):
        return False
    expected = agent_token(secret_key, user_id, email)
    return hmac.compare_digest(detail.encode(), expected.encode())

"""What one SMTP client may hold: sessions in all and per client address, commands per
session, and how long a session may live.

A client that holds connections open (a ``NOOP`` now and then keeps the idle
timeout away) must not be able to stop all inbound mail, so beyond the global
cap (``HELPDESK_MAX_CONNECTIONS``) each client address gets at most
``HELPDESK_MAX_CONNECTIONS_PER_IP`` sessions (an IPv6 client per /64, which
one host usually holds whole), each session at most
``HELPDESK_MAX_COMMANDS_PER_SESSION`` commands and
``HELPDESK_SMTP_SESSION_LIFETIME`` seconds from its start, whatever it does.
Past any of them the client gets ``421`` and the connection is closed; a
sending MTA tries again later on a new connection. A message being committed
when the lifetime ends is answered first (250 only after the commit), then
the session ends.

Only the event loop thread touches these counters.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from helpdesk.settings import Settings

TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections, try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address, try again later"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands in one session, closing"
SESSION_TOO_LONG = "421 4.4.2 Session time limit reached, closing"


def client_key(peer: object) -> str:
    """The address a client is counted by: IPv4 as is, IPv6 by its /64."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer or "")
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


@dataclass(frozen=True)
class SessionRules:
    """The per-session limits (see the module docstring)."""

    max_commands: int = 10_000
    lifetime: float = 600.0
    allow_bare_lf: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionRules:
        return cls(
            max_commands=settings.max_commands_per_session,
            lifetime=settings.smtp_session_lifetime,
            allow_bare_lf=settings.smtp_allow_bare_lf,
        )


class ConnectionLimiter:
    """Open SMTP sessions, in all and per client address."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit = limit
        self.per_client = per_client
        self.active = 0
        self.by_client: Counter[str] = Counter()

    def acquire(self, client: str) -> str:
        """ "" when the session may start, else the 421 reply to give."""
        if self.active >= self.limit:
            return TOO_MANY_CONNECTIONS
        if self.by_client[client] >= self.per_client:
            return TOO_MANY_FROM_CLIENT
        self.active += 1
        self.by_client[client] += 1
        return ""

    def release(self, client: str) -> None:
        self.active -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

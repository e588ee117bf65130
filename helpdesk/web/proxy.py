"""The client's address behind proxies we trust (``HELPDESK_TRUSTED_PROXIES``).

``X-Forwarded-For`` is believed only when the peer that connected to us is a
trusted proxy. Each proxy appends the address it saw, so the list is read
from the right: trusted proxies are skipped, and the first address that is
not one is the client (anything left of it is whatever the client sent).
Werkzeug's ``ProxyFix`` trusts a fixed number of hops whatever the peer is,
which would let anyone who reaches the app directly pick their address; this
checks the peer instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str, trusted: Iterable[Network]) -> str:
    """The client's address, given the connecting ``peer`` and its X-Forwarded-For."""
    networks = tuple(trusted)

    def is_trusted(text: str) -> bool:
        address = _address(text)
        return address is not None and any(address in network for network in networks)

    if not forwarded_for or not is_trusted(peer):
        return peer
    client = peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if _address(hop) is None:
            break  # a trusted proxy passed on something unreadable: stop at that proxy
        client = str(_address(hop))
        if not is_trusted(hop):
            break
    return client


class TrustedProxies:
    """WSGI middleware: ``REMOTE_ADDR`` becomes the client's address (the peer's is
    kept in ``helpdesk.proxy_peer``)."""

    def __init__(self, app: Any, trusted: Iterable[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        client = client_address(peer, environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted)
        if client != peer:
            environ["helpdesk.proxy_peer"] = peer
            environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)

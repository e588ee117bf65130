"""Addresses: normalising them and routing envelope recipients to queues.

``slug@domain`` and ``slug+anything@domain`` reach the queue ``slug`` (and any
extra address stored for a queue). Other addresses in our domains are unknown
(550 5.1.1); addresses in other domains are not ours to relay (550 5.7.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


def normalise_address(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def base_address(address: str) -> str:
    """``help-desk+anything@d`` becomes ``help-desk@d``."""
    local, _, domain = normalise_address(address).rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def detail_of(address: str) -> str:
    """The ``anything`` of ``slug+anything@domain`` (a reply token, if we issued it)."""
    local = normalise_address(address).rpartition("@")[0]
    return local.split("+", 1)[1] if "+" in local else ""


class Route(Enum):
    QUEUE = "queue"
    UNKNOWN = "unknown"
    FOREIGN = "foreign"


@dataclass(frozen=True)
class QueueDirectory:
    """A snapshot of which address belongs to which queue."""

    addresses: dict[str, str]  # address -> queue slug
    domains: frozenset[str]

    @classmethod
    def build(cls, addresses: dict[str, str], mail_domain: str) -> QueueDirectory:
        addresses = {normalise_address(a): slug for a, slug in addresses.items()}
        domains = {domain_of(a) for a in addresses} | {mail_domain.lower()}
        return cls(addresses, frozenset(domains))

    def route(self, address: str) -> tuple[Route, str]:
        """Where a recipient goes: (QUEUE, slug), (UNKNOWN, "") or (FOREIGN, "")."""
        address = normalise_address(address)
        if "@" not in address or domain_of(address) not in self.domains:
            return Route.FOREIGN, ""
        slug = self.addresses.get(address) or self.addresses.get(base_address(address))
        if slug:
            return Route.QUEUE, slug
        return Route.UNKNOWN, ""

    def queues_for(self, recipients: list[str]) -> list[str]:
        """Queue slugs for the recipients, in order, each once."""
        slugs: list[str] = []
        for rcpt in recipients:
            kind, slug = self.route(rcpt)
            if kind is Route.QUEUE and slug not in slugs:
                slugs.append(slug)
        return slugs

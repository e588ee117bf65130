"""What a received message is to the rest of the system: ``InboundEmail``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime


class ParseError(Exception):
    """The message cannot be turned into a ticket message; the raw bytes are kept."""


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str = ""
    inline: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class InboundEmail:
    """What the rest of the system needs from one received message."""

    message_id: str
    message_id_derived: bool
    subject: str
    from_address: str
    from_name: str
    reply_to: str
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    in_reply_to: list[str]
    references: list[str]
    date: datetime | None
    text: str
    html: str
    attachments: list[ParsedAttachment]
    headers: dict[str, list[str]]
    content_type: str
    body_hash: str
    defects: list[str] = field(default_factory=list)
    report: dict[str, list[dict[str, str]]] | None = None
    # Why only the header block was read (over a cap, or the parse failed); "" if read whole.
    unparsed: str = ""
    # Several From headers or mailboxes, or one the strict parser refuses
    # (``helpdesk.mail.mailboxes``): from_address is then "" and from_name the From as written.
    ambiguous_from: bool = False
    # ``html`` sanitised for display (``helpdesk.mail.display.prepare_html``), made in the
    # parse step so the costly part runs once, inside the parse's time bound.
    html_safe: str = ""

    def header(self, name: str) -> str:
        """The first value of a header, or an empty string."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def dedup_key(self) -> str:
        return hashlib.sha256(f"{self.message_id}\0{self.body_hash}".encode()).hexdigest()

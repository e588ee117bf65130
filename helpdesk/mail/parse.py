"""Parsing: raw RFC 5322 bytes into an ``InboundEmail`` dataclass.

``read_message`` is what intake calls: it checks the structure caps on the
raw bytes first (``helpdesk.mail.limits``), parses, and falls back to the
header block alone when a cap is passed or the parse fails, so that every
message still becomes something a human can read. ``parse`` is the full
parse: the stdlib parser with the ``compat32`` policy (no header objects
built; headers are read raw in ``helpdesk.mail.headers``), header line
endings normalised so nothing can be smuggled in, payloads decoded straight
from the parts (``helpdesk.mail.parts``), and a stable Message-ID for mail
that has none. The names other modules import from here stay here.
"""

from __future__ import annotations

import email
import hashlib
import re
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from helpdesk.mail.charsets import decode_bytes
from helpdesk.mail.display import prepare_html
from helpdesk.mail.dsn import report_fields
from helpdesk.mail.headers import (
    MAX_ADDRESS,
    MAX_HEADER_ID,
    addresses,
    all_headers,
    body_fingerprint,
    clean_text,
    decode_words,
    first,
    header_text,
    header_values,
    mailbox,
    message_ids,
    normalise_line_endings,
    one_line,
    raw_values,
    split_body,
)
from helpdesk.mail.inbound import InboundEmail, ParsedAttachment, ParseError
from helpdesk.mail.limits import Limits, check, header_block_end
from helpdesk.mail.mailboxes import from_mailbox
from helpdesk.mail.parts import MAX_FILENAME, Body, content_type, read_body
from helpdesk.mail.parts import sanitise_filename as sanitise_filename

__all__ = [
    "MAX_ADDRESS",
    "MAX_FILENAME",
    "MAX_HEADER_ID",
    "InboundEmail",
    "ParseError",
    "ParsedAttachment",
    "body_fingerprint",
    "clean_text",
    "decode_bytes",
    "decode_words",
    "header_text",
    "message_ids",
    "normalise_line_endings",
    "one_line",
    "parse",
    "parse_headers_only",
    "read_message",
    "sanitise_filename",
    "split_body",
]

_BARE_MESSAGE_ID_RE = re.compile(r"[^<>\s@]+@[^<>\s@]+")
UNPARSED_TEXT = (
    "This message could not be read in full ({reason}). It is attached unchanged "
    "as original.eml: open it with a mail program, or save it and look at it with care."
)


def read_message(raw: bytes, limits: Limits) -> InboundEmail:
    """The message within the caps, else (or if the parse fails) its header block alone."""
    reason = check(raw, limits)
    if not reason:
        try:
            return parse(raw)
        except Exception as exc:
            reason = f"the parser failed: {type(exc).__name__}"
    return parse_headers_only(raw, reason, limits)


def parse(raw: bytes) -> InboundEmail:
    """Parse received bytes; raises ParseError only when nothing usable comes out."""
    data = normalise_line_endings(raw)
    try:
        msg = email.message_from_bytes(data, policy=policy.compat32)
    except Exception as exc:  # pragma: no cover - the parser is lenient
        raise ParseError(f"unparseable message: {exc.__class__.__name__}") from exc
    if not msg.keys() and not split_body(data):
        raise ParseError("empty message")
    return _inbound(msg, read_body(msg), body_fingerprint(data), report=report_fields(msg))


def parse_headers_only(raw: bytes, reason: str, limits: Limits | None = None) -> InboundEmail:
    """A message from its header block alone (at most the header cap), flagged ``unparsed``,
    with a short text saying why and the original bytes attached as ``original.eml``."""
    limits = limits or Limits()
    end = min(header_block_end(raw), limits.max_header_bytes)
    head = raw[:end]
    if end < len(raw) and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]  # whole lines only
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(normalise_line_endings(head))
    body = Body(
        text=UNPARSED_TEXT.format(reason=reason),
        attachments=[ParsedAttachment("original.eml", "message/rfc822", raw)],
    )
    mail = _inbound(msg, body, body_fingerprint(raw), report=None)
    # What we made is text with an attachment; nothing reads the original again.
    mail.content_type = "text/plain"
    mail.unparsed = reason
    return mail


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
        return date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _message_id(msg: Message, basis: list[str]) -> tuple[str, bool]:
    """The first Message-ID in the header, or one derived from content (and True)."""
    header = first(msg, "message-id")
    found = message_ids(header)
    if not found and _BARE_MESSAGE_ID_RE.fullmatch(header):
        found = [f"<{header}>"]  # brackets forgotten by the client
    if found:
        return found[0][:MAX_HEADER_ID], False
    digest = hashlib.sha256("\0".join(basis).encode()).hexdigest()[:40]
    return f"<{digest}@derived.invalid>", True


def _inbound(
    msg: Message,
    body: Body,
    body_hash: str,
    *,
    report: dict[str, list[dict[str, str]]] | None,
) -> InboundEmail:
    headers = all_headers(msg)
    sender = from_mailbox(raw_values(msg, "from"))
    from_name, from_address = (mailbox(*sender) or ("", "")) if sender else ("", "")
    if sender is None:  # ambiguous: matched to nobody; the From as written, for people
        from_name = " | ".join(headers.get("from", []))[:200]
    reply_to = addresses(msg, "reply-to")
    subject = (headers.get("subject") or [""])[0]
    date_header = (headers.get("date") or [""])[0]
    message_id, derived = _message_id(msg, [from_address, date_header, subject, body_hash])
    return InboundEmail(
        message_id=message_id,
        message_id_derived=derived,
        subject=subject,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to[0][1] if reply_to else "",
        to=addresses(msg, "to"),
        cc=addresses(msg, "cc"),
        in_reply_to=message_ids(" ".join(header_values(msg, "in-reply-to"))),
        references=message_ids(" ".join(header_values(msg, "references"))),
        date=_date(date_header),
        text=body.text,
        html=body.html,
        attachments=body.attachments,
        headers=headers,
        content_type=content_type(msg),
        body_hash=body_hash,
        defects=[type(d).__name__ for d in msg.defects],
        report=report,
        ambiguous_from=sender is None,
        html_safe=prepare_html(body.html) if body.html else "",
    )

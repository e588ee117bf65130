"""Parsing: raw RFC 5322 bytes into an ``InboundEmail`` dataclass.

Uses the stdlib ``email`` package with ``policy.default`` and adds what real
mail needs: header line endings normalised so nothing can be smuggled in,
charset labels decoded the way mail clients do (latin-1 and us-ascii as
cp1252, unknown charsets without crashing), an HTML-only body turned into
readable text, attachments and inline images kept with sanitised filenames,
and a stable Message-ID for mail that has none.
"""

from __future__ import annotations

import codecs
import email
import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from inscriptis import get_text

# Labels that clients write but mean Windows-1252 (as the WHATWG encoding spec says).
CP1252_ALIASES = {"us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1"}
MESSAGE_ID_RE = re.compile(r"<[^<>\s]+>")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FILENAME_BAD_RE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
MAX_FILENAME = 200


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

    def header(self, name: str) -> str:
        """The first value of a header, or an empty string."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def dedup_key(self) -> str:
        return hashlib.sha256(f"{self.message_id}\0{self.body_hash}".encode()).hexdigest()


def clean_text(value: str) -> str:
    """Text safe for every database: no NUL, no lone surrogates."""
    if not value:
        return ""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "surrogateescape").decode("cp1252", "replace")
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def one_line(value: str) -> str:
    """Collapse folding and strip control characters from a header value."""
    value = clean_text(value)
    value = re.sub(r"[\r\n\t]+", " ", value)
    return _CONTROL_RE.sub("", value).strip()


def normalise_line_endings(raw: bytes) -> bytes:
    """Make header line endings unambiguous.

    SMTP lines end in CRLF. A bare CR or LF inside the header section could
    split one header into two for one reader and not for another (header
    smuggling), so there it becomes a space. A message with no CRLF at all
    was written with Unix line endings and is converted whole.
    """
    if b"\r\n" not in raw:
        return raw.replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    end = raw.find(b"\r\n\r\n")
    if raw.startswith(b"\r\n"):
        end = -2
    head, body = (raw, b"") if end < 0 else (raw[:end], raw[end:])
    lines = head.split(b"\r\n")
    lines = [re.sub(rb"[\r\n]", b" ", line) for line in lines]
    return b"\r\n".join(lines) + body


def split_body(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return b"" if end < 0 else raw[end + 4 :]


def body_fingerprint(raw: bytes) -> str:
    """A hash of the body that survives relays re-folding lines or padding whitespace."""
    body = split_body(raw).replace(b"\r\n", b"\n")
    body = b"\n".join(line.rstrip() for line in body.split(b"\n")).strip()
    return hashlib.sha256(body).hexdigest()


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text the way mail clients do; never raises."""
    label = (charset or "").strip().strip('"').lower()
    if not label or label in CP1252_ALIASES:
        # Unlabelled 8-bit text is most often UTF-8 these days.
        if not label:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return data.decode("cp1252", "replace")
    try:
        codec = codecs.lookup(label)
    except LookupError:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    return data.decode(codec.name, "replace")


def header_values(msg: Message, name: str) -> list[str]:
    """Every value of a header, decoded; a malformed header falls back to its raw text."""
    values = []
    for raw_name, raw_value in msg.raw_items() if isinstance(msg, EmailMessage) else msg.items():
        if raw_name.lower() != name.lower():
            continue
        try:
            value = str(msg.policy.header_factory(raw_name, raw_value))
        except Exception:
            value = str(raw_value)
        values.append(one_line(value))
    return values


def _first(msg: Message, name: str) -> str:
    values = header_values(msg, name)
    return values[0] if values else ""


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    result = []
    for display, address in getaddresses(header_values(msg, name)):
        address = one_line(address).lower()
        if "@" not in address:
            continue
        result.append((one_line(display), address))
    return result


def message_ids(value: str) -> list[str]:
    """The Message-IDs in a header value, in order, angle brackets kept."""
    return MESSAGE_ID_RE.findall(value)


def sanitise_filename(name: str, content_type: str, index: int) -> str:
    """A filename safe to offer for download: no path, no control chars, bounded."""
    name = unicodedata.normalize("NFC", clean_text(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _FILENAME_BAD_RE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if not name:
        ext = mimetypes.guess_extension(content_type) or ".bin"
        name = f"attachment-{index}{ext}"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload.encode("utf-8", "surrogateescape")
        return b""
    return payload


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    return bool(part.get_filename()) and part.get_content_maintype() != "text"


def _walk(part: Message):  # type: ignore[no-untyped-def]
    """Leaf parts, not descending into attached messages (kept whole as .eml)."""
    if part.get_content_type() in ("message/rfc822", "message/global"):
        yield part
    elif part.is_multipart():
        for sub in part.get_payload():
            yield from _walk(sub)
    else:
        yield part


def _report(msg: Message) -> dict[str, list[dict[str, str]]] | None:
    """The per-message and per-recipient fields of an RFC 3464 delivery report."""
    if msg.get_content_type() != "multipart/report":
        return None
    for part in msg.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks = [
                dict((k.lower(), one_line(str(v))) for k, v in block.items()) for block in payload
            ]
        else:
            text = _part_bytes(part).decode("utf-8", "replace")
            blocks = []
            for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
                sub = email.message_from_string(chunk + "\n\n", policy=policy.compat32)
                blocks.append({k.lower(): one_line(str(v)) for k, v in sub.items()})
        return {"message": blocks[:1], "recipients": blocks[1:]}
    return {"message": [], "recipients": []}


def parse(raw: bytes) -> InboundEmail:
    """Parse received bytes; raises ParseError only when nothing usable comes out."""
    data = normalise_line_endings(raw)
    try:
        msg = email.message_from_bytes(data, policy=policy.default)
    except Exception as exc:  # pragma: no cover - the parser is lenient
        raise ParseError(f"unparseable message: {exc.__class__.__name__}") from exc
    if not msg.keys() and not split_body(data):
        raise ParseError("empty message")

    headers: dict[str, list[str]] = {}
    for name in {key.lower() for key in msg}:
        headers[name] = header_values(msg, name)

    from_list = _addresses(msg, "from")
    from_name, from_address = from_list[0] if from_list else ("", "")
    reply_to = _addresses(msg, "reply-to")
    subject = _first(msg, "subject")
    date = None
    date_header = _first(msg, "date")
    if date_header:
        try:
            date = parsedate_to_datetime(date_header)
            date = date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)
        except (TypeError, ValueError, IndexError):
            date = None

    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[ParsedAttachment] = []
    for index, part in enumerate(_walk(msg), start=1):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            payload = inner.as_bytes() if isinstance(inner, Message) else _part_bytes(part)
            inner_subject = _first(inner, "subject") if isinstance(inner, Message) else ""
            name = part.get_filename() or (inner_subject + ".eml" if inner_subject else "")
            filename = sanitise_filename(name, "message/rfc822", index)
            if not filename.lower().endswith(".eml"):
                filename += ".eml"
            attachments.append(ParsedAttachment(filename, "message/rfc822", payload))
            continue
        content_id = one_line(part.get("content-id", "") or "")
        if ctype in ("text/plain", "text/html") and not _is_attachment(part):
            text = clean_text(decode_bytes(_part_bytes(part), part.get_content_charset()))
            (texts if ctype == "text/plain" else htmls).append(text)
            continue
        if part.is_multipart():
            continue
        filename = sanitise_filename(part.get_filename() or "", ctype, index)
        disposition = (part.get_content_disposition() or "").lower()
        attachments.append(
            ParsedAttachment(
                filename=filename,
                content_type=ctype,
                data=_part_bytes(part),
                content_id=content_id,
                inline=bool(content_id) and disposition != "attachment",
            )
        )

    html = "\n".join(htmls)
    text = "\n\n".join(t.strip("\r\n") for t in texts)
    if not text.strip() and html.strip():
        text = get_text(html).strip()

    body_hash = body_fingerprint(data)
    message_ids_found = message_ids(_first(msg, "message-id"))
    derived = not message_ids_found
    if message_ids_found:
        message_id = message_ids_found[0][:998]
    else:
        basis = "\0".join([from_address, date_header, subject, body_hash])
        message_id = f"<{hashlib.sha256(basis.encode()).hexdigest()[:40]}@derived.invalid>"

    return InboundEmail(
        message_id=message_id,
        message_id_derived=derived,
        subject=subject,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to[0][1] if reply_to else "",
        to=_addresses(msg, "to"),
        cc=_addresses(msg, "cc"),
        in_reply_to=message_ids(" ".join(header_values(msg, "in-reply-to"))),
        references=message_ids(" ".join(header_values(msg, "references"))),
        date=date,
        text=text,
        html=html,
        attachments=attachments,
        headers=headers,
        content_type=msg.get_content_type(),
        body_hash=body_hash,
        defects=[type(d).__name__ for d in msg.defects],
        report=_report(msg),
    )

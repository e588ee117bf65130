"""MIME parts: the body text, the HTML and the attachments of a parsed message.

Payloads are decoded straight from the parts (no ``policy.default`` content
manager): text in the charset its label really means, attachments and
inline images with sanitised filenames, attached messages kept whole as
``.eml``, and an HTML-only body turned into readable text.
"""

from __future__ import annotations

import io
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.message import Message
from typing import cast

from inscriptis import get_text

from helpdesk.mail.charsets import decode_bytes
from helpdesk.mail.headers import (
    C1_RE,
    MAX_HEADER_ID,
    c1_as_cp1252,
    clean_text,
    first,
    header_text,
    raw_values,
)
from helpdesk.mail.inbound import ParsedAttachment

MAX_FILENAME = 200
_FILENAME_BAD_RE = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"/\\|?*]+')
_MIME_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_MESSAGE_TYPES = ("message/rfc822", "message/global")
# Writes an attached message back byte for byte (no re-folding of headers).
_VERBATIM = policy.compat32.clone(linesep="\r\n", max_line_length=0)


def sanitise_filename(name: str, content_type: str, index: int) -> str:
    """A filename safe to offer for download: no path, no control chars, bounded.

    Invisible format characters go too: a right-to-left override would make
    ``invoice\u202etxt.exe`` look like ``invoiceexe.txt``.
    """
    name = unicodedata.normalize("NFC", C1_RE.sub(c1_as_cp1252, clean_text(name or "")))
    name = "".join(char for char in name if unicodedata.category(char) != "Cf")
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


def _param(part: Message, header: str, param: str) -> str:
    """A MIME parameter read from the raw header, decoded like everything else.

    Handles RFC 2231 (percent-encoding, continuations, any charset label),
    RFC 2047 words inside quotes (Outlook), and raw 8-bit bytes (Lotus Notes).
    """
    raws = raw_values(part, header)
    if not raws:
        return ""
    legacy = Message()  # compat32 keeps the RFC 2231 charset for us to apply
    legacy[header] = raws[0]
    try:
        value = legacy.get_param(param, None, header)
    except Exception:
        return ""
    if isinstance(value, tuple):
        charset, _language, text = value
        try:
            return decode_bytes(text.encode("latin-1"), charset or None)
        except UnicodeEncodeError:  # unencoded continuations with raw 8-bit text
            return header_text(text)
    return header_text(value) if isinstance(value, str) else ""


def _filename(part: Message) -> str:
    return _param(part, "content-disposition", "filename") or _param(part, "content-type", "name")


def content_type(part: Message) -> str:
    """The part's MIME type, or application/octet-stream if it is no valid one (NUL and all)."""
    try:
        ctype = part.get_content_type()
    except Exception:  # a header object the stdlib cannot read back (8-bit bytes)
        return "application/octet-stream"
    return ctype if _MIME_TYPE_RE.fullmatch(ctype) else "application/octet-stream"


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


def part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()  # a multipart (None above): its text, if it has no parts
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _message_bytes(inner: Message) -> bytes:
    """An attached message as it was received: compat32 writes raw values back unchanged."""
    out = io.BytesIO()
    try:
        BytesGenerator(out, mangle_from_=False, policy=_VERBATIM).flatten(inner)
        return out.getvalue()
    except Exception:
        try:
            return inner.as_bytes()
        except Exception:
            return b""


def _is_attachment(part: Message) -> bool:
    if _disposition(part) == "attachment":
        return True
    return bool(_filename(part)) and part.get_content_maintype() != "text"


def _walk(part: Message) -> Iterator[Message]:
    """Leaf parts, not descending into attached messages (kept whole as .eml)."""
    if part.get_content_type() in _MESSAGE_TYPES:
        yield part
    elif part.is_multipart():
        for sub in cast(list[Message], part.get_payload()):
            yield from _walk(sub)
    else:
        yield part


def _text_lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _html_to_text(html: str) -> str:
    try:
        text: str = get_text(html)
        return text.strip()
    except Exception:  # lxml refuses some documents; tags stripped crudely beat nothing
        return re.sub(r"\s*\n\s*\n\s*", "\n\n", re.sub(r"<[^>]*>", " ", html)).strip()


@dataclass
class Body:
    """What a message says: its text, its HTML, and what is attached."""

    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)


def _attached_message(part: Message, index: int) -> ParsedAttachment:
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    payload = _message_bytes(inner) if isinstance(inner, Message) else part_bytes(part)
    inner_subject = first(inner, "subject") if isinstance(inner, Message) else ""
    name = _filename(part) or (inner_subject + ".eml" if inner_subject else "")
    filename = sanitise_filename(name, "message/rfc822", index)
    if not filename.lower().endswith(".eml"):
        filename += ".eml"
    return ParsedAttachment(filename, "message/rfc822", payload)


def read_body(msg: Message) -> Body:
    """The text (plain parts joined, else the HTML as text), HTML and attachments, in order."""
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[ParsedAttachment] = []
    for index, part in enumerate(_walk(msg), start=1):
        ctype = content_type(part)
        if ctype in _MESSAGE_TYPES:
            attachments.append(_attached_message(part, index))
            continue
        if part.get_content_maintype() == "multipart":
            # A multipart whose boundary is missing or never found: mail
            # clients show its body as text, and so do we.
            text = clean_text(decode_bytes(part_bytes(part), _charset(part)))
            if text.strip():
                texts.append(text)
            continue
        if ctype in ("text/plain", "text/html") and not _is_attachment(part):
            text = clean_text(decode_bytes(part_bytes(part), _charset(part)))
            (texts if ctype == "text/plain" else htmls).append(text)
            continue
        content_id = first(part, "content-id")[:MAX_HEADER_ID]
        attachments.append(
            ParsedAttachment(
                filename=sanitise_filename(_filename(part), ctype, index),
                content_type=ctype,
                data=part_bytes(part),
                content_id=content_id,
                inline=bool(content_id) and _disposition(part) != "attachment",
            )
        )
    html = "\n".join(htmls)
    text = "\n\n".join(_text_lines(t).strip("\n") for t in texts)
    if not text.strip() and html.strip():
        text = _html_to_text(html)
    return Body(text, html, attachments)

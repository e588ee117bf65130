"""Parsing: raw RFC 5322 bytes into an ``InboundEmail`` dataclass.

Uses the stdlib ``email`` package with ``policy.default`` and adds what real
mail needs: header line endings normalised so nothing can be smuggled in,
charset labels decoded the way mail clients do (latin-1 and us-ascii as
cp1252, unknown charsets without crashing), an HTML-only body turned into
readable text, attachments and inline images kept with sanitised filenames,
and a stable Message-ID for mail that has none.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import hashlib
import io
import itertools
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from inscriptis import get_text

MESSAGE_ID_RE = re.compile(r"<[^<>\s]+>")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_FILENAME_BAD_RE = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"/\\|?*]+')
# C1 controls never belong in text: they are cp1252 bytes decoded as latin-1.
_C1_RE = re.compile(r"[\x80-\x9f]")
# Raw 8-bit bytes the stdlib kept as surrogates (surrogateescape), and any other surrogate.
_ESCAPED_BYTES_RE = re.compile(r"[\udc80-\udcff]+")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# RFC 2047 encoded words, leniently (some clients put spaces inside them).
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*?)\?=")
_BARE_MESSAGE_ID_RE = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_MIME_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
# RFC 5321 4.5.3.1.3: a path is at most 256 octets, brackets included.
MAX_ADDRESS = 254
MAX_HEADER_ID = 998
_HEADER_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
MAX_FILENAME = 200
# Writes an attached message back byte for byte (no re-folding of headers).
_VERBATIM = policy.compat32.clone(linesep="\r\n", max_line_length=0)


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


def _decode_escaped_bytes(match: re.Match[str]) -> str:
    return decode_bytes(match.group().encode("utf-8", "surrogateescape"), None)


def clean_text(value: str) -> str:
    """Text safe for every database: no NUL, no lone surrogates.

    Raw 8-bit bytes that the stdlib parser kept as escaped surrogates are
    decoded here, run by run: as UTF-8 where they are valid UTF-8, else as
    cp1252 (a raw ``Grüße`` in a header is either, depending on the client).
    """
    if not value:
        return ""
    value = value.replace("\x00", "")
    if _SURROGATE_RE.search(value):
        value = _ESCAPED_BYTES_RE.sub(_decode_escaped_bytes, value)
        value = _SURROGATE_RE.sub("\ufffd", value)
    return value


def _c1_as_cp1252(match: re.Match[str]) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def one_line(value: str) -> str:
    """Collapse folding and strip control characters from a header value.

    C1 controls become the cp1252 characters they stand for: they come from
    an ``iso-8859-1`` label on text that was really Windows-1252.
    """
    value = _C1_RE.sub(_c1_as_cp1252, clean_text(value))
    value = re.sub(r"[\r\n\t\u2028\u2029]+", " ", value)
    return _CONTROL_RE.sub("", value).strip()


def normalise_line_endings(raw: bytes) -> bytes:
    """Make header line endings unambiguous.

    SMTP lines end in CRLF. A bare CR or LF inside the header section could
    split one header into two for one reader and not for another (header
    smuggling), so there it becomes a space. A message with no CRLF before
    its end was written with Unix line endings and is converted whole.
    """
    if b"\r\n" not in raw.rstrip(b"\r\n"):
        return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if raw.startswith(b"\r\n"):
        return raw  # no header section at all
    end = raw.find(b"\r\n\r\n")
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


# Labels whose real-world content is a superset encoding (from the WHATWG encoding spec).
_SUPERSETS = {
    "gb2312": "gbk",
    "x-gbk": "gbk",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "shift_jis": "cp932",
}


_NOT_MAIL_CHARSETS = {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined"}


def _text_codec(label: str) -> str | None:
    """The Python codec for a charset label, or None if it names no text encoding."""
    label = _SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except Exception:  # LookupError, or a label the codec machinery chokes on
        return None
    # base64, zlib, rot13 and kin are codecs too, but not text encodings;
    # idna, punycode and the escape codecs are, but no mail client's charset.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text the way mail clients do; never raises.

    ``iso-8859-1`` means Windows-1252 in practice (0x80 is the euro sign,
    0x93/0x94 are smart quotes). 8-bit bytes under a ``us-ascii`` label, no
    label, or an unknown one are UTF-8 where they are valid UTF-8, else cp1252.
    """
    label = (charset or "").strip().strip("\"'").lower()
    codec = _text_codec(label) if label else None
    if codec == "iso8859-1":  # every latin-1 alias
        return data.decode("cp1252", "replace")
    if codec is not None and codec != "ascii":
        try:
            return data.decode(codec, "replace")
        except Exception:  # idna, punycode and kin accept no "replace"
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _unfold(value: str) -> str:
    return _HEADER_FOLD_RE.sub("", value)


def _encoded_word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "Bb":
            data = re.sub(r"[^A-Za-z0-9+/]", "", payload).encode("ascii")
            return base64.b64decode(data + b"=" * (-len(data) % 4))
        return binascii.a2b_qp(payload.encode("ascii"), header=True)
    except (ValueError, binascii.Error):
        return None


def _decode_run(words: list[tuple[str, bytes]]) -> str:
    """Adjacent encoded words in one charset are joined first: a character may span two."""
    parts = []
    for charset, group in itertools.groupby(words, key=lambda word: word[0].lower()):
        parts.append(decode_bytes(b"".join(data for _, data in group), charset))
    return "".join(parts)


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in a header value, charsets as in bodies.

    Whitespace between adjacent encoded words is dropped (RFC 2047 section 6.2);
    a malformed word is left as it is.
    """
    out: list[str] = []
    run: list[tuple[str, bytes]] = []
    pos = 0
    for match in _ENCODED_WORD_RE.finditer(value):
        between = value[pos : match.start()]
        pos = match.end()
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 language suffix
        data = _encoded_word_bytes(match.group(2), match.group(3))
        if data is None:
            out += [_decode_run(run), between + match.group(0)]
            run = []
            continue
        if not run or between.strip(" \t\r\n"):
            out += [_decode_run(run), between]
            run = []
        run.append((charset, data))
    out += [_decode_run(run), value[pos:]]
    return "".join(out)


def header_text(value: str) -> str:
    """A raw header value as one line of text: unfolded, 8-bit bytes and encoded words decoded."""
    return one_line(decode_words(clean_text(_unfold(value))))


def _raw_values(msg: Message, name: str) -> list[str]:
    items = msg.raw_items() if isinstance(msg, EmailMessage) else msg.items()
    return [clean_text(_unfold(str(value))) for key, value in items if key.lower() == name.lower()]


def header_values(msg: Message, name: str) -> list[str]:
    """Every value of a header, decoded to one line of text.

    Works on the raw values rather than the stdlib's header objects, which
    decode 8-bit bytes as UTF-8 only and encoded words in unknown charsets
    not at all, and can raise on malformed input.
    """
    return [one_line(decode_words(value)) for value in _raw_values(msg, name)]


def _first(msg: Message, name: str) -> str:
    values = header_values(msg, name)
    return values[0] if values else ""


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    # Split the raw value first: a decoded display name may hold a comma.
    try:
        pairs = getaddresses(_raw_values(msg, name))
    except Exception:  # the parser is lenient, but this is untrusted input
        return []
    result = []
    for display, address in pairs:
        address = one_line(address).lower()
        # Longer than any deliverable address: junk, and it would overflow the database.
        if "@" not in address or len(address) > MAX_ADDRESS:
            continue
        result.append((header_text(display), address))
    return result


def message_ids(value: str) -> list[str]:
    """The Message-IDs in a header value, in order, angle brackets kept."""
    return MESSAGE_ID_RE.findall(value)


def sanitise_filename(name: str, content_type: str, index: int) -> str:
    """A filename safe to offer for download: no path, no control chars, bounded.

    Invisible format characters go too: a right-to-left override would make
    ``invoice\u202etxt.exe`` look like ``invoiceexe.txt``.
    """
    name = unicodedata.normalize("NFC", _C1_RE.sub(_c1_as_cp1252, clean_text(name or "")))
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
    raws = _raw_values(part, header)
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


def _content_type(part: Message) -> str:
    """The part's MIME type, or application/octet-stream if it is no valid one (NUL and all)."""
    ctype = part.get_content_type()
    return ctype if _MIME_TYPE_RE.fullmatch(ctype) else "application/octet-stream"


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload.encode("utf-8", "surrogateescape")
        return b""
    return payload


def _message_bytes(inner: Message) -> bytes:
    """An attached message as it was received.

    ``policy.default`` would re-fold its headers, which changes them and
    raises on raw 8-bit text; compat32 writes the raw values back unchanged.
    """
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
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    return bool(_filename(part)) and part.get_content_maintype() != "text"


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


def _text_lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _html_to_text(html: str) -> str:
    try:
        return get_text(html).strip()
    except Exception:  # lxml refuses some documents; tags stripped crudely beat nothing
        return re.sub(r"\s*\n\s*\n\s*", "\n\n", re.sub(r"<[^>]*>", " ", html)).strip()


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
        except (TypeError, ValueError, IndexError, OverflowError):
            date = None

    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[ParsedAttachment] = []
    for index, part in enumerate(_walk(msg), start=1):
        ctype = _content_type(part)
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            payload = _message_bytes(inner) if isinstance(inner, Message) else _part_bytes(part)
            inner_subject = _first(inner, "subject") if isinstance(inner, Message) else ""
            name = _filename(part) or (inner_subject + ".eml" if inner_subject else "")
            filename = sanitise_filename(name, "message/rfc822", index)
            if not filename.lower().endswith(".eml"):
                filename += ".eml"
            attachments.append(ParsedAttachment(filename, "message/rfc822", payload))
            continue
        if part.get_content_maintype() == "multipart":
            # A multipart whose boundary is missing or never found: mail
            # clients show its body as text, and so do we.
            text = clean_text(decode_bytes(_part_bytes(part), part.get_content_charset()))
            if text.strip():
                texts.append(text)
            continue
        content_id = _first(part, "content-id")[:MAX_HEADER_ID]
        if ctype in ("text/plain", "text/html") and not _is_attachment(part):
            text = clean_text(decode_bytes(_part_bytes(part), part.get_content_charset()))
            (texts if ctype == "text/plain" else htmls).append(text)
            continue
        filename = sanitise_filename(_filename(part), ctype, index)
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
    text = "\n\n".join(_text_lines(t).strip("\n") for t in texts)
    if not text.strip() and html.strip():
        text = _html_to_text(html)

    body_hash = body_fingerprint(data)
    message_id_header = _first(msg, "message-id")
    message_ids_found = message_ids(message_id_header)
    if not message_ids_found and _BARE_MESSAGE_ID_RE.fullmatch(message_id_header):
        message_ids_found = [f"<{message_id_header}>"]  # brackets forgotten by the client
    derived = not message_ids_found
    if message_ids_found:
        message_id = message_ids_found[0][:MAX_HEADER_ID]
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
        content_type=_content_type(msg),
        body_hash=body_hash,
        defects=[type(d).__name__ for d in msg.defects],
        report=_report(msg),
    )

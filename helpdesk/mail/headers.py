"""Header fields: raw values made into safe one-line text, addresses and Message-IDs.

Works on the raw values (``Message.raw_items``) rather than the stdlib's
header objects, which decode 8-bit bytes as UTF-8 only and encoded words in
unknown charsets not at all, and can raise on malformed input. Also owns the
line-ending rules of the header section and the body fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from email.message import Message

from helpdesk.mail.charsets import decode_bytes
from helpdesk.mail.mailboxes import getaddresses

MESSAGE_ID_RE = re.compile(r"<[^<>\s]+>")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# C1 controls never belong in text: they are cp1252 bytes decoded as latin-1.
C1_RE = re.compile(r"[\x80-\x9f]")
# Raw 8-bit bytes the stdlib kept as surrogates (surrogateescape), and any other surrogate.
_ESCAPED_BYTES_RE = re.compile(r"[\udc80-\udcff]+")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# RFC 2047 encoded words, leniently (some clients put spaces inside them).
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*?)\?=")
_HEADER_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS_RE = re.compile(r"[\r\n\t\u2028\u2029]+")
_SPACE_BEFORE_LF = (b" \n", b"\t\n", b"\r\n", b"\x0b\n", b"\x0c\n")
# RFC 5321 4.5.3.1.3: a path is at most 256 octets, brackets included.
MAX_ADDRESS = 254
MAX_HEADER_ID = 998


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


def c1_as_cp1252(match: re.Match[str]) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def one_line(value: str) -> str:
    """Collapse folding and strip control characters from a header value.

    C1 controls become the cp1252 characters they stand for: they come from
    an ``iso-8859-1`` label on text that was really Windows-1252.
    """
    value = C1_RE.sub(c1_as_cp1252, clean_text(value))
    value = _LINE_BREAKS_RE.sub(" ", value)
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
    """A hash of the body that survives relays re-folding lines or padding whitespace:
    line endings as LF, trailing whitespace of each line and of the whole removed."""
    body = split_body(raw).replace(b"\r\n", b"\n")
    if any(space in body for space in _SPACE_BEFORE_LF):  # rare: only then line by line
        body = b"\n".join(line.rstrip() for line in body.split(b"\n"))
    return hashlib.sha256(body.strip()).hexdigest()


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
    if "=?" not in value:
        return value
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


def raw_values(msg: Message, name: str) -> list[str]:
    """Every raw value of a header, unfolded and database-safe (not yet decoded)."""
    name = name.lower()
    return [
        clean_text(_unfold(str(value))) for key, value in msg.raw_items() if key.lower() == name
    ]


def header_values(msg: Message, name: str) -> list[str]:
    """Every value of a header, decoded to one line of text."""
    return [one_line(decode_words(value)) for value in raw_values(msg, name)]


def all_headers(msg: Message) -> dict[str, list[str]]:
    """Every header by lower-case name, each value decoded to one line, in one pass."""
    headers: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        text = one_line(decode_words(clean_text(_unfold(str(value)))))
        headers.setdefault(key.lower(), []).append(text)
    return headers


def first(msg: Message, name: str) -> str:
    values = header_values(msg, name)
    return values[0] if values else ""


def addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-case address) pairs of an address header, parsed strictly
    (``helpdesk.mail.mailboxes``): a malformed header gives none."""
    # Split the raw value first: a decoded display name may hold a comma.
    try:
        pairs = getaddresses(raw_values(msg, name))
    except Exception:  # untrusted input
        return []
    return [pair for pair in (mailbox(d, a) for d, a in pairs) if pair is not None]


def mailbox(display: str, address: str) -> tuple[str, str] | None:
    """A parsed (name, address) as stored: the name decoded, the address lower-case;
    None for an address that is no address."""
    address = one_line(address).lower()
    # Longer than any deliverable address: junk, and it would overflow the database.
    if "@" not in address or len(address) > MAX_ADDRESS:
        return None
    return header_text(display), address


def message_ids(value: str) -> list[str]:
    """The Message-IDs in a header value, in order, angle brackets kept."""
    return MESSAGE_ID_RE.findall(value)

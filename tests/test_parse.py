"""The email parser (``helpdesk.mail.parse``) on its own, from bytes.

Covers CPython's odd test messages (``test/test_email/data/msg_*.txt``: the
parser never raises, and every text it returns is safe for the database),
the helpers (``decode_bytes``, ``decode_words``, ``clean_text``,
``one_line``, ``sanitise_filename``, ``normalise_line_endings``), the derived
Message-ID's stability, and regressions found by the intake corpus.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import test.test_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.mail.parse import (
    MAX_FILENAME,
    InboundEmail,
    ParseError,
    clean_text,
    decode_bytes,
    decode_words,
    header_text,
    normalise_line_endings,
    one_line,
    parse,
    sanitise_filename,
)

CPYTHON_DATA = Path(test.test_email.__path__[0]) / "data"
CPYTHON_MESSAGES = sorted(CPYTHON_DATA.glob("msg_*.txt"))
SURROGATE = re.compile(r"[\ud800-\udfff]")


def assert_safe_text(value: str) -> None:
    """What every database accepts: a str, no NUL, no lone surrogate."""
    assert isinstance(value, str)
    assert "\x00" not in value
    assert not SURROGATE.search(value)
    value.encode("utf-8")


def assert_safe_mail(mail: InboundEmail) -> None:
    for value in (mail.subject, mail.from_name, mail.from_address, mail.reply_to, mail.message_id):
        assert_safe_text(value)
        assert not set("\r\n") & set(value)
    assert_safe_text(mail.text)
    assert_safe_text(mail.html)
    assert re.fullmatch(r"<[^<>\s]+>", mail.message_id)
    for values in mail.headers.values():
        for value in values:
            assert_safe_text(value)
            assert not set("\r\n") & set(value)
    for attachment in mail.attachments:
        assert_safe_text(attachment.filename)
        assert attachment.filename
        assert len(attachment.filename) <= MAX_FILENAME
        assert not set("/\\\x00\r\n") & set(attachment.filename)
        assert isinstance(attachment.data, bytes)


def mail(headers: str, body: str = "body\r\n", *, encoding: str = "utf-8") -> bytes:
    return (headers.strip("\n").replace("\n", "\r\n") + "\r\n\r\n" + body).encode(encoding)


# --- CPython's corpus -------------------------------------------------------


def test_cpython_corpus_is_there():
    assert len(CPYTHON_MESSAGES) >= 40


@pytest.mark.parametrize("path", CPYTHON_MESSAGES, ids=lambda p: p.stem)
@pytest.mark.parametrize("line_ends", ["as_is", "crlf"])
def test_cpython_messages_parse_safely(path, line_ends):
    raw = path.read_bytes()
    if line_ends == "crlf":  # as an MTA delivers it over SMTP
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert_safe_mail(parse(raw))


def test_cpython_multipart_without_boundary_is_text():
    """Regression: msg_41's body went into a nameless multipart 'attachment'."""
    parsed = parse((CPYTHON_DATA / "msg_41.txt").read_bytes())
    assert parsed.text == "Blah blah blah"
    assert parsed.attachments == []


def test_cpython_empty_multipart_part_is_no_attachment():
    parsed = parse((CPYTHON_DATA / "msg_39.txt").read_bytes())
    assert [a.content_type for a in parsed.attachments] == ["application/octet-stream"] * 2


# --- decode_bytes -----------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["iso-8859-1", "ISO-8859-1", "latin-1", "l1", "cp819", '"iso_8859-1"']
)
def test_latin1_labels_decode_as_cp1252(label):
    assert decode_bytes(b"\x80 \x93hi\x94 \x96 caf\xe9\x85", label) == "€ “hi” \u2013 café…"


def test_ascii_label_on_8bit_bytes():
    assert decode_bytes(b"\x93quoted\x94 \x80", "us-ascii") == "“quoted” €"
    # Valid UTF-8 under an ASCII label is UTF-8 (mislabelled either way).
    assert decode_bytes("Grüße".encode(), "us-ascii") == "Grüße"


@pytest.mark.parametrize(
    "data,label,expected",
    [
        ("Grüße".encode(), None, "Grüße"),
        (b"Gr\xfc\xdfe", None, "Grüße"),
        ("Grüße".encode(), "x-unknown", "Grüße"),
        (b"Gr\xfc\xdfe", "x-unknown", "Grüße"),
        ("Grüße".encode("utf-16"), "utf-16", "Grüße"),
        ("Grüße".encode("iso-8859-2"), "iso-8859-2", "Grüße"),
        ("喆的".encode("gbk"), "gb2312", "喆的"),
        ("ログイン".encode("iso-2022-jp"), "ISO-2022-JP", "ログイン"),
        (b"plain", "", "plain"),
        (b"plain", '"utf-8"', "plain"),
    ],
)
def test_decode_bytes(data, label, expected):
    assert decode_bytes(data, label) == expected


NOT_MAIL_CHARSETS = ["base64", "rot13", "zlib", "hex", "uu", "bz2", "quopri", "idna", "punycode"]
NOT_MAIL_CHARSETS += ["utf-7", "unicode-escape", "raw-unicode-escape", "undefined"]


@pytest.mark.parametrize("label", NOT_MAIL_CHARSETS)
def test_decode_bytes_survives_codecs_that_are_no_text_encodings(label):
    """Regression: these made decode_bytes raise (LookupError, UnicodeError)."""
    decoded = decode_bytes(b"caf\xc3\xa9 \x80\xff", label)
    assert isinstance(decoded, str)
    assert not SURROGATE.search(decoded)
    assert decode_bytes(b"Hallo", label) == "Hallo"


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=64),
    label=st.one_of(
        st.sampled_from(["utf-8", "us-ascii", "iso-8859-1", "utf-16", "utf-32", "idna", "base64"]),
        st.text(max_size=12),
    ),
)
def test_decode_bytes_never_raises(data, label):
    assert isinstance(decode_bytes(data, label), str)


# --- header decoding --------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("=?iso-8859-1?Q?Preis_=80_100_=93ok=94?=", "Preis € 100 “ok”"),
        ("=?utf-8?B?w5xiZXI=?= =?utf-8?Q?_f=C3=BCr?=", "Über für"),
        ("=?UTF-8?B?UHJlaXMg4oI=?= =?UTF-8?B?rCA0Mg==?=", "Preis € 42"),  # split character
        ("a =?utf-8?q?b?=  =?utf-8?q?c?= d", "a bc d"),  # whitespace between words dropped
        ("=?utf-8*de?Q?Gr=C3=BC=C3=9Fe?=", "Grüße"),  # RFC 2231 language suffix
        ("=?x-unknown?Q?caf=E9?=", "café"),
        ("=?utf-8?B?QUJDR?= kept", "=?utf-8?B?QUJDR?= kept"),  # malformed: left as it is
        ("=?utf-8?Q?caf\u00e9?=", "=?utf-8?Q?caf\u00e9?="),
        ("no words here", "no words here"),
    ],
)
def test_decode_words(raw, expected):
    assert decode_words(raw) == expected


def test_header_text_is_one_line():
    assert header_text("first\r\n second\r\n\tthird") == "first second third"
    assert header_text("=?utf-8?Q?a=0D=0ABcc:_x=00?=") == "a Bcc: x"
    assert header_text("x\u2028y") == "x y"


def test_clean_text_decodes_escaped_bytes_and_drops_nul():
    escaped = b"Gr\xc3\xbc\xc3\x9fe \xfc".decode("ascii", "surrogateescape")
    assert clean_text(escaped + "\x00") == "Grüße ü"
    assert clean_text("lone \ud800 surrogate") == "lone \ufffd surrogate"


def test_one_line_turns_c1_controls_into_cp1252():
    assert one_line("\x80 \x93x\x94\r\n y\x01\x81") == "€ “x”  y"


# --- filenames --------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\evil\\x.exe", "x.exe"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("a\x00b\x07c\r\nd.txt", "ab_c_d.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ('what?*|<>:".txt', "what_.txt"),
        ("  spaced   out  .txt  ", "spaced out .txt"),
        ("\x80uro.txt", "€uro.txt"),
        ("Cafe\u0301.txt", "Café.txt"),  # NFC
        ("", "attachment-3.pdf"),
        ("..", "attachment-3.pdf"),
        ("...", "attachment-3.pdf"),
        ("///", "attachment-3.pdf"),
    ],
)
def test_sanitise_filename(name, expected):
    assert sanitise_filename(name, "application/pdf", 3) == expected


def test_sanitise_filename_bounds_long_names_and_keeps_the_extension():
    name = sanitise_filename("x" * 500 + ".tar.gz", "application/gzip", 1)
    assert len(name) == MAX_FILENAME
    assert name.endswith("x.gz")
    assert len(sanitise_filename("y" * 500, "application/octet-stream", 1)) == MAX_FILENAME
    assert sanitise_filename("", "application/x-unknown-type", 2) == "attachment-2.bin"


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300), index=st.integers(min_value=1, max_value=99))
def test_sanitise_filename_invariants(name, index):
    result = sanitise_filename(name, "application/octet-stream", index)
    assert_safe_text(result)
    assert 0 < len(result) <= MAX_FILENAME
    assert not set('/\\<>:"|?*') & set(result)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]", result)
    assert result not in (".", "..")


def test_rfc2231_and_raw_filenames():
    raw = mail(
        """
From: a@b.example
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=B
""",
        "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        "--B\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=iso-8859-1'de'%80uro%20%93q%94.pdf\r\n\r\nx\r\n"
        "--B\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=x-unknown''%C3%A4%C3%B6.pdf\r\n\r\nx\r\n"
        "--B\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment;\r\n"
        " filename*0*=utf-8''%C3%BC; filename*1=ber.pdf\r\n\r\nx\r\n"
        '--B\r\nContent-Type: application/pdf; name="Gr\xfc\xdfe.pdf"\r\n\r\nx\r\n'
        "--B--\r\n",
        encoding="latin-1",
    )
    names = [a.filename for a in parse(raw).attachments]
    assert names == ["€uro “q”.pdf", "äö.pdf", "über.pdf", "Grüße.pdf"]


# --- line endings and header smuggling ---------------------------------------


def test_bare_lf_and_cr_in_headers_become_spaces():
    raw = (
        b"Subject: hi\nBcc: x@evil.example\r\n"
        b"X-A: 1\rReply-To: y@evil.example\r\n\r\nbody\nline\r\n"
    )
    assert normalise_line_endings(raw) == (
        b"Subject: hi Bcc: x@evil.example\r\nX-A: 1 Reply-To: y@evil.example\r\n\r\nbody\nline\r\n"
    )
    parsed = parse(raw)
    assert parsed.subject == "hi Bcc: x@evil.example"
    assert parsed.reply_to == ""
    assert "bcc" not in parsed.headers
    assert "reply-to" not in parsed.headers


def test_unix_line_endings_are_converted_whole():
    raw = b"From: a@b.example\nSubject: unix\n\nline 1\nline 2\n"
    assert normalise_line_endings(raw) == raw.replace(b"\n", b"\r\n")
    # smtplib appends a CRLF to a message that does not end in one.
    assert normalise_line_endings(raw + b"\r\n") == raw.replace(b"\n", b"\r\n") + b"\r\n"
    parsed = parse(raw + b"\r\n")
    assert (parsed.subject, parsed.from_address) == ("unix", "a@b.example")
    assert parsed.text == "line 1\nline 2"


def test_crlf_messages_and_headerless_bodies_are_unchanged():
    raw = b"Subject: x\r\n\r\nbody\nwith bare LF\r\n"
    assert normalise_line_endings(raw) == raw
    headerless = b"\r\nbody\nwith bare LF\r\nmore\r\n"
    assert normalise_line_endings(headerless) == headerless


def test_text_line_endings_are_lf():
    parsed = parse(mail("From: a@b.example\nSubject: x", "one\r\ntwo\rthree\r\n"))
    assert parsed.text == "one\ntwo\nthree"


# --- Message-IDs --------------------------------------------------------------

NO_ID = mail(
    """
From: Alarm <alarm@legacy.example>
To: help-desk@example.com
Subject: Disk full
Date: Fri, 6 Mar 2026 06:00:00 +0100
""",
    "Server FS01 is full.\r\n",
)


def test_derived_message_id_is_stable():
    first, second = parse(NO_ID), parse(NO_ID)
    assert first.message_id_derived
    assert re.fullmatch(r"<[0-9a-f]{40}@derived\.invalid>", first.message_id)
    assert first.message_id == second.message_id
    assert first.dedup_key == second.dedup_key
    # A relay adding trace headers or padding lines with whitespace changes nothing.
    relayed = b"Received: from relay.example by mx.example.com\r\n" + NO_ID.replace(
        b"full.\r\n", b"full.   \r\n"
    )
    assert parse(relayed).message_id == first.message_id


@pytest.mark.parametrize(
    "old,new",
    [
        (b"Server FS01 is full.", b"Server FS02 is full."),
        (b"Subject: Disk full", b"Subject: Disk fuller"),
        (b"alarm@legacy.example", b"other@legacy.example"),
        (b"06:00:00", b"06:00:01"),
    ],
)
def test_derived_message_id_changes_with_content(old, new):
    assert parse(NO_ID.replace(old, new)).message_id != parse(NO_ID).message_id


def test_message_ids():
    assert parse(mail("Message-ID: <a@b.example>")).message_id == "<a@b.example>"
    bare = parse(mail("Message-ID: 1234.5678@legacy.example"))
    assert (bare.message_id, bare.message_id_derived) == ("<1234.5678@legacy.example>", False)
    assert parse(mail("Message-ID: not an id")).message_id_derived
    refs = parse(mail("In-Reply-To: <x@y>\nReferences: <a@b>\n <c@d> junk <e@f>"))
    assert (refs.in_reply_to, refs.references) == (["<x@y>"], ["<a@b>", "<c@d>", "<e@f>"])


# --- whole messages -------------------------------------------------------------


def test_attached_message_is_kept_byte_for_byte():
    """Regression: re-serialising with policy.default raised on 8-bit headers."""
    inner = mail(
        "From: x@y.example\nSubject: Grüße =?utf-8?q?caf=C3=A9?= " + "A" * 300 + "\n folded",
        "Inner \xe4 body\r\n",
    ).replace(b"\xc3\xa4 body", b"\xe4 body")
    raw = (
        mail(
            """
From: a@b.example
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=XX
""",
            "--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--XX\r\nContent-Type: message/rfc822\r\n\r\n",
        )
        + inner
        + b"\r\n--XX--\r\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.data == inner
    assert attachment.content_type == "message/rfc822"
    # Named after its subject, cut to the filename limit with the extension kept.
    assert attachment.filename == ("Grüße café " + "A" * 300)[: MAX_FILENAME - 4] + ".eml"


def test_html_only_mail_gets_readable_text():
    parsed = parse(
        mail(
            "From: a@b.example\nContent-Type: text/html; charset=windows-1252",
            "<html><head><style>p{color:red}</style><script>alert(1)</script></head>"
            "<body><p>Hello &amp; welcome\x80</p><div>Second<br>line</div><!-- x --></body></html>",
            encoding="latin-1",
        )
    )
    assert "Hello & welcome€" in parsed.text
    assert "Second\n" in parsed.text
    assert not re.search(r"[<>]|alert|color|&amp;", parsed.text)
    assert parsed.html.startswith("<html>")


def test_display_name_with_encoded_comma():
    parsed = parse(mail("From: =?utf-8?q?M=C3=BCller=2C_Hans?= <Hans@X.example>"))
    assert (parsed.from_name, parsed.from_address) == ("Müller, Hans", "hans@x.example")
    assert not parsed.ambiguous_from
    # Two mailboxes in From are ambiguous (issue 10 row 11): no address is taken from it.
    two = parse(mail("From: =?utf-8?q?M=C3=BCller=2C_Hans?= <Hans@X.example>, b@c.example"))
    assert two.ambiguous_from and two.from_address == ""


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\r\n\r\n"])
def test_empty_message_is_a_parse_error(raw):
    with pytest.raises(ParseError):
        parse(raw)


@pytest.mark.parametrize(
    "date",
    ["Fri, 31 Dec 9999 23:00:00 -0500", "Mon, 45 Foo 2026 99:99:99 +9999", "yesterday", "0"],
)
def test_bad_dates_are_no_error(date):
    assert parse(mail(f"From: a@b.example\nDate: {date}")).date is None


HEADER_LINES = st.sampled_from(
    [
        "From: =?utf-8?q?X?= <a@b.example>",
        "From: \udcfc\udcdf <q@r.example>",
        "Subject: =?iso-8859-1?q?=80?= =?x?B?AAAA?=",
        "Subject: \udcff\udcfe",
        "Content-Type: multipart/mixed; boundary=B",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=base64",
        "Content-Type: text/plain; charset*=x''%FF",
        "Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1*=%82%AC",
        "Content-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: quoted-printable",
        "Message-ID: <a@b>",
        "Date: Mon, 1 Jan 2001 00:00:00 +0000",
        "Content-Type: message/rfc822",
    ]
)
BODY_LINES = st.sampled_from(
    [
        "--B",
        "--B--",
        "Content-Type: text/html",
        "",
        "<p>x</p>",
        "=80=93",
        "AAAA",
        "\udc80\udcff",
        "x\ry\nz",
        "\x00",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=st.lists(HEADER_LINES, max_size=8), body=st.lists(BODY_LINES, max_size=12))
def test_parse_never_raises_on_mixed_up_mime(headers, body):
    raw = "\r\n".join([*headers, "", *body]).encode("utf-8", "surrogateescape")
    try:
        parsed = parse(raw)
    except ParseError:
        return
    assert_safe_mail(parsed)


def test_overlong_and_invalid_fields_are_bounded():
    """Regression: such values overflowed PostgreSQL columns, so intake failed on every retry."""
    raw = mail(
        f"""
From: {"a" * 300}@x.example
Cc: {"c" * 250}@x.example, ok@x.example
Reply-To: r@x.example
Message-ID: <{"m" * 1200}@x.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=B
""",
        "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        "--B\r\nContent-Type: application/x-\x00evil\r\n"
        f"Content-ID: <{'i' * 1200}@x.example>\r\n\r\nabc\r\n--B--\r\n",
    )
    parsed = parse(raw)
    assert (parsed.from_address, parsed.from_name) == ("", "")
    assert parsed.cc == [("", "ok@x.example")]  # 250 + 10 characters: too long for an address
    assert parsed.reply_to == "r@x.example"
    assert len(parsed.message_id) == 998
    (attachment,) = parsed.attachments
    assert attachment.content_type == "application/octet-stream"
    assert attachment.content_id == "<" + "i" * 997

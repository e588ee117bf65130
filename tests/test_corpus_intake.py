"""Email intake corpus: real-looking ``.eml`` files sent through the real gateway.

Each ``tests/corpus/intake/NAME.eml`` is sent with smtplib over loopback to
the aiosmtpd gateway (on SQLite and on PostgreSQL); ``NAME.json`` next to it
says what must then be in the database. Keys of the JSON (all but
``envelope``, ``outcome`` and ``raw_state`` are optional, and a key that is
present is always checked):

- ``description``: what the case is about, and which client writes mail so.
- ``envelope``: ``{"mail_from": ..., "rcpt_tos": [...]}`` for SMTP.
- ``settings``: settings the gateway runs with for this case (e.g.
  ``{"smtp_allow_bare_lf": true}``); default: the test defaults.
- ``send_times``: deliver the same bytes this many times (default 1).
- ``outcome``: ``new_ticket`` (one ticket, one inbound message), ``dropped``
  (no ticket), ``stored`` (only: the raw mail is kept; for odd messages), or
  ``refused`` (the gateway answers DATA with ``refused``, e.g. ``"554 5.5.2"``,
  and keeps nothing).
- ``raw_state``: the raw mail's state, or a list of acceptable states (not
  for ``refused``).
- ``queue``, ``requester``, ``subject``: the ticket.
- ``from_name``, ``reply_to``, ``message_id`` (``"derived"`` for one we made
  up), ``sent_at`` (ISO 8601 or null), ``flags``, ``also_addressed``,
  ``message_cc``: the inbound message.
- ``text_contains``, ``text_not_contains``, ``text_equals``, ``html_contains``.
- ``attachments``: the exact list, in order; each with ``filename``,
  ``content_type``, ``inline`` and optionally ``content_id``, ``size``,
  ``data_sha256``.
- ``cc``: the ticket's CC addresses.
- ``acknowledged``: whether an acknowledgement to the requester is queued.

Add a case for every intake bug found.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.models import Attachment, Message, OutboxMail, RawMail, Ticket
from tests.conftest import start_gateway

CORPUS = Path(__file__).parent / "corpus" / "intake"
CASES = sorted(path.stem for path in CORPUS.glob("*.eml"))
KEYS = {
    "description", "envelope", "settings", "refused", "send_times", "outcome", "raw_state",
    "queue", "requester",
    "subject", "from_name", "reply_to", "message_id", "sent_at", "flags", "also_addressed",
    "message_cc", "text_contains", "text_not_contains", "text_equals", "html_contains",
    "attachments", "cc", "acknowledged",
}  # fmt: skip
ATTACHMENT_KEYS = {"filename", "content_type", "inline", "content_id", "size", "data_sha256"}


def load(name: str) -> tuple[bytes, dict]:
    return (CORPUS / f"{name}.eml").read_bytes(), json.loads((CORPUS / f"{name}.json").read_text())


def test_corpus_is_complete():
    """Every .eml has its .json and the other way round, and the JSON uses known keys."""
    assert len(CASES) >= 30
    assert {p.stem for p in CORPUS.glob("*.json")} == set(CASES)
    for name in CASES:
        _, expected = load(name)
        assert set(expected) <= KEYS, f"{name}: unknown keys {set(expected) - KEYS}"
        assert expected["outcome"] in ("new_ticket", "dropped", "stored", "refused"), name
        required = {"envelope", "outcome"}
        required |= {"refused"} if expected["outcome"] == "refused" else {"raw_state"}
        assert required <= set(expected), name
        for spec in expected.get("attachments", []):
            assert set(spec) <= ATTACHMENT_KEYS, f"{name}: {set(spec) - ATTACHMENT_KEYS}"


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("name", CASES)
def test_intake_corpus(name, gateway, session, settings, engine):
    raw, expected = load(name)
    if "settings" in expected:
        gateway.stop()
        gateway = start_gateway(replace(settings, **expected["settings"]), engine)
    try:
        run_case(raw, expected, gateway, session)
    finally:
        gateway.stop()


def run_case(raw: bytes, expected: dict, gateway, session) -> None:  # type: ignore[no-untyped-def]
    envelope = expected["envelope"]
    if expected["outcome"] == "refused":
        with pytest.raises(smtplib.SMTPDataError) as refusal:
            gateway.send(raw, mail_from=envelope["mail_from"], to=envelope["rcpt_tos"])
        code, status = expected["refused"].split()
        assert refusal.value.smtp_code == int(code)
        assert refusal.value.smtp_error.split()[0] == status.encode()
        assert count(session, RawMail) == 0
        assert count(session, Ticket) == 0
        return
    for _ in range(expected.get("send_times", 1)):
        # sendmail raises unless DATA is answered with 250; {} means no recipient refused.
        refused = gateway.send(raw, mail_from=envelope["mail_from"], to=envelope["rcpt_tos"])
        assert refused == {}

    # Never lost: exactly one raw mail, byte for byte, whatever happened next.
    row = session.scalars(select(RawMail)).one()
    assert row.content == raw
    assert row.mail_from.strip("<>") == envelope["mail_from"]
    assert row.rcpt_tos == envelope["rcpt_tos"]
    states = expected["raw_state"]
    assert row.state in (states if isinstance(states, list) else [states]), row.error

    acknowledgements = session.scalars(
        select(OutboxMail).where(OutboxMail.purpose == "acknowledgement")
    ).all()
    if "acknowledged" in expected:
        assert len(acknowledgements) == int(expected["acknowledged"])

    if expected["outcome"] == "dropped":
        assert count(session, Ticket) == 0
        assert count(session, Message) == 0
        assert row.ticket_id is None
        return
    if expected["outcome"] == "stored":
        return

    ticket = session.scalars(select(Ticket)).one()
    message = session.scalars(select(Message).where(Message.kind == "inbound")).one()
    assert message.ticket_id == ticket.id
    assert message.raw_mail_id == row.id
    assert row.ticket_id == ticket.id
    check_ticket(ticket, expected)
    check_message(message, expected)
    check_attachments(session, message, expected)
    if expected.get("acknowledged"):
        assert acknowledgements[0].rcpt_tos == [ticket.requester.email]
        assert acknowledgements[0].ticket_id == ticket.id


def check_ticket(ticket: Ticket, expected: dict) -> None:
    # Header values are one line, whatever the sender smuggled in.
    assert not set("\r\n\x00") & set(ticket.subject)
    if "queue" in expected:
        assert ticket.queue.slug == expected["queue"]
    if "requester" in expected:
        assert ticket.requester.email == expected["requester"]
    if "subject" in expected:
        assert ticket.subject == expected["subject"]
    if "cc" in expected:
        assert sorted(contact.email for contact in ticket.ccs) == sorted(expected["cc"])


def check_message(message: Message, expected: dict) -> None:
    for value in (message.subject, message.from_name, message.reply_to, message.message_id):
        assert not set("\r\n\x00") & set(value)
    assert "\x00" not in message.text_body
    if "subject" in expected:
        assert message.subject == expected["subject"]
    if "from_name" in expected:
        assert message.from_name == expected["from_name"]
    if "reply_to" in expected:
        assert message.reply_to == expected["reply_to"]
    if expected.get("message_id") == "derived":
        assert message.message_id.endswith("@derived.invalid>")
    elif "message_id" in expected:
        assert message.message_id == expected["message_id"]
    if "sent_at" in expected:
        sent_at = expected["sent_at"]
        assert message.sent_at == (datetime.fromisoformat(sent_at) if sent_at else None)
    if "flags" in expected:
        assert sorted(message.flags) == sorted(expected["flags"])
    if "also_addressed" in expected:
        assert message.also_addressed == expected["also_addressed"]
    if "message_cc" in expected:
        assert message.cc_addresses == expected["message_cc"]
    for fragment in expected.get("text_contains", []):
        assert fragment in message.text_body
    for fragment in expected.get("text_not_contains", []):
        assert fragment not in message.text_body
    if "text_equals" in expected:
        assert message.text_body == expected["text_equals"]
    for fragment in expected.get("html_contains", []):
        assert fragment in message.html_body


def check_attachments(session, message: Message, expected: dict) -> None:  # type: ignore[no-untyped-def]
    if "attachments" not in expected:
        return
    stored = session.scalars(
        select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.id)
    ).all()
    assert [a.filename for a in stored] == [spec["filename"] for spec in expected["attachments"]]
    for attachment, spec in zip(stored, expected["attachments"], strict=True):
        assert attachment.content_type == spec["content_type"]
        assert attachment.inline is spec["inline"]
        assert attachment.sha256 == hashlib.sha256(attachment.data).hexdigest()
        assert attachment.size == len(attachment.data)
        if "content_id" in spec:
            assert attachment.content_id == spec["content_id"]
        if "size" in spec:
            assert attachment.size == spec["size"]
        if "data_sha256" in spec:
            assert attachment.sha256 == spec["data_sha256"]

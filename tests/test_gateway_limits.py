"""Issue 10 rows 5, 9 and 10, over real SMTP on loopback (SQLite and PostgreSQL).

Row 5: a client holding sessions open (a NOOP now and then) can no longer
stop inbound mail: sessions per client address, commands per session and a
session's lifetime are capped, each with ``421``, and other clients keep
delivering. Row 9: a bare LF in DATA is refused with ``554 5.5.2`` and
nothing is kept, unless ``HELPDESK_SMTP_ALLOW_BARE_LF`` (then the parser
normalises it and nothing is smuggled). Row 10: no AUTH is advertised, before
or after STARTTLS, and the command is not understood.
"""

from __future__ import annotations

import contextlib
import smtplib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from sqlalchemy import select

from helpdesk import db
from helpdesk.models import Message, RawMail, Ticket
from mailgate.limits import client_key
from tests.test_gateway_replies import (
    ONE_TICKET,
    counts,
    mail,
    start,  # noqa: F401 - fixture
    tls_settings,  # noqa: F401 - fixture
    transaction,
    unverified_context,
)
from tests.test_intake_pipeline import write_locked


@contextlib.contextmanager
def session_open(running):  # type: ignore[no-untyped-def]
    client = running.smtp()
    try:
        client.ehlo()
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.close()


def read_reply(client: smtplib.SMTP) -> tuple[int, bytes]:
    """The next reply the server sends unasked (smtplib's reader, bounded by its timeout)."""
    return client.getreply()


def test_client_key_counts_ipv6_by_its_64():
    assert client_key(("192.0.2.7", 2525)) == "192.0.2.7"
    assert client_key(("2001:db8:1:2:aaaa::1", 25, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:2:bbbb::9", 25, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("::ffff:192.0.2.7", 25, 0, 0)) == "192.0.2.7"


def test_sessions_per_client_address_are_capped(start, settings, engine):  # noqa: F811
    running = start(replace(settings, max_connections=50, max_connections_per_ip=2))
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(session_open(running)) for _ in range(2)]
        with pytest.raises(smtplib.SMTPConnectError) as info:
            running.smtp()
        assert info.value.smtp_code == 421
        assert info.value.smtp_error.startswith(b"4.7.0")
        # The held sessions still work, and a closed one frees its slot.
        assert transaction(held[1], mail("held")).code == 250
        held[0].quit()
        with session_open(running) as again:
            assert transaction(again, mail("after-cap")).code == 250
    running.settle()
    assert counts(engine)["raw_mails"] == 2


def test_commands_per_session_are_capped(start, settings):  # noqa: F811
    running = start(replace(settings, max_commands_per_session=6))
    with session_open(running) as client:  # EHLO is the first command
        for _ in range(5):
            assert client.noop()[0] == 250
        code, text = client.noop()
        assert (code, text.split()[0]) == (421, b"4.7.0")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    # Another session starts afresh.
    with session_open(running) as client:
        assert transaction(client, mail("fresh-session")).code == 250


def test_session_lifetime_ends_an_idle_noop_holder(start, settings):  # noqa: F811
    # The idle timeout alone never ends a session that sends a NOOP now and then.
    running = start(replace(settings, smtp_session_lifetime=1.0, smtp_timeout=300.0))
    with session_open(running) as client:
        assert client.noop()[0] == 250
        code, text = read_reply(client)  # the server speaks first when time is up
        assert (code, text.split()[0]) == (421, b"4.4.2")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_lifetime_ending_during_a_commit_answers_the_commit_first(start, settings, engine):  # noqa: F811
    """250 only after the commit: a session whose time ends while its message is being
    committed gets the 250 (the message is kept), then 421."""
    changed = replace(settings, smtp_session_lifetime=2.0, database_timeout=30.0)
    running = start(changed)
    with session_open(running) as client, ThreadPoolExecutor(1) as pool:
        with write_locked(engine) as release:
            future = pool.submit(transaction, client, mail("committing"))
            # The lifetime passes while the spool's writer waits for the lock,
            # and no reply comes before the commit.
            with pytest.raises(TimeoutError):
                future.result(timeout=5)
            release.set()
            assert future.result(timeout=60).code == 250
        code, text = read_reply(client)
        assert (code, text.split()[0]) == (421, b"4.4.2")
    running.settle()
    assert counts(engine) == ONE_TICKET


BARE_LF_MAIL = (
    b"From: Mallory <mallory@attacker.example>\r\n"
    b"To: help-desk@example.com\r\n"
    b"Subject: a\nX-Evil: b\r\n"
    b"Message-ID: <bare-lf@attacker.example>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def test_bare_lf_is_refused_and_nothing_is_kept(gateway, engine):
    with gateway.smtp() as client:
        reply = transaction(client, BARE_LF_MAIL)
        assert (reply.code, reply.text.split()[0]) == (554, b"5.5.2")
        # The session goes on: the next message, with CRLF, is taken.
        assert transaction(client, mail("after-bare-lf")).code == 250
    gateway.settle()
    assert counts(engine) == ONE_TICKET
    # A message in Unix line endings throughout is refused as well.
    with gateway.smtp() as client:
        unix = mail("unix").replace(b"\r\n", b"\n")
        assert transaction(client, unix).code == 554


def test_bare_lf_allowed_by_setting_is_normalised_not_smuggled(start, settings, engine):  # noqa: F811
    running = start(replace(settings, smtp_allow_bare_lf=True))
    with running.smtp() as client:
        assert transaction(client, BARE_LF_MAIL).code == 250
        assert transaction(client, mail("unix").replace(b"\r\n", b"\n")).code == 250
    running.settle()
    with db.session_factory(engine)() as session:
        rows = session.scalars(select(RawMail).order_by(RawMail.id)).all()
        assert rows[0].content == BARE_LF_MAIL  # kept exactly as received
        subjects = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
        # Inside a CRLF header block the bare LF is a space (no X-Evil header);
        # a message in Unix line endings is read as such.
        assert subjects == ["a X-Evil: b", "Printer broken"]
        texts = session.scalars(
            select(Message.text_body).where(Message.kind == "inbound").order_by(Message.id)
        ).all()
        assert texts[1].strip() == "Message unix."


def test_no_auth_is_offered_before_or_after_starttls(start, tls_settings):  # noqa: F811
    running = start(tls_settings)
    with running.smtp() as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.starttls(context=unverified_context())[0] == 220
        client.ehlo()
        assert client.has_extn("8bitmime")
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        assert code == 500  # not a command here (it was 535 for every attempt)
        assert transaction(client, mail("after-auth")).code == 250

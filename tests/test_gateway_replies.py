"""Every reply of the inbound gateway, and its durability, over real SMTP on loopback.

On SQLite and PostgreSQL: 250 only once the raw message is committed (its
ticket follows from the applier); ``550 5.1.1``
for an unknown address of ours and ``550 5.7.1`` for anyone else's (never an
open relay); 552 past the SIZE limit; 421 past the connection cap; STARTTLS and
REQUIRE_TLS; one ticket for several queue addresses; no header smuggling with a
bare CR or LF. Then durability: a database failure before the spool commit (a
trigger, a failing COMMIT, a locked or unreachable database) is ``451 4.3.0``
with no internal text and leaves no row behind, and the same message sent
again afterwards is stored once. Failures are injected with real database
mechanisms (triggers, locks, a closed port), not by patching our code.
"""

from __future__ import annotations

import contextlib
import email
import smtplib
import sqlite3
import ssl
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email import policy

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.engine import make_url

from helpdesk import db
from helpdesk.clock import utcnow
from helpdesk.models import Contact, Message, OutboxMail, RawMail, Ticket, TicketCC
from helpdesk.settings import Settings
from helpdesk.tickets import contacts
from mailgate.handler import TEMPFAIL
from mailgate.tls import write_self_signed
from tests.conftest import SECRET, RunningGateway, free_port, outbox_bytes, start_gateway

SENDER = "alice@customer.example"
TEMPFAIL_TEXT = TEMPFAIL.split(" ", 1)[1].encode()
TABLES = (RawMail, Ticket, Message, OutboxMail, Contact)
NOTHING = {model.__tablename__: 0 for model in TABLES}
# One new ticket: raw mail, ticket, inbound message + acknowledgement, its outbox row.
ONE_TICKET = {"raw_mails": 1, "tickets": 1, "messages": 2, "outbox": 1, "contacts": 1}


def mail(
    tag: str,
    *,
    subject: str = "Printer broken",
    to: str = "help-desk@example.com",
    sender: str = SENDER,
) -> bytes:
    return (
        f"From: Customer <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{tag}@customer.example>\r\n"
        "Date: Thu, 26 Nov 2026 09:00:00 +0100\r\n"
        "\r\n"
        f"Message {tag}.\r\n"
    ).encode()


@dataclass
class Reply:
    """The first reply of a transaction that was not a success, or DATA's reply."""

    stage: str
    code: int
    text: bytes


def transaction(
    client: smtplib.SMTP, raw: bytes, rcpts: Sequence[str] = ("help-desk@example.com",)
) -> Reply:
    client.ehlo_or_helo_if_needed()
    code, reply = client.mail(SENDER)
    if code != 250:
        return Reply("MAIL", code, reply)
    for rcpt in rcpts:
        code, reply = client.rcpt(rcpt)
        if code != 250:
            client.rset()
            return Reply("RCPT", code, reply)
    try:
        code, reply = client.data(raw)
    except smtplib.SMTPDataError as exc:
        return Reply("DATA", exc.smtp_code, exc.smtp_error)
    return Reply("DATA", code, reply)


def deliver(
    running: RunningGateway, raw: bytes, rcpts: Sequence[str] = ("help-desk@example.com",)
) -> Reply:
    """One transaction; after a 250, wait until the applier has applied it."""
    with running.smtp() as client:
        reply = transaction(client, raw, rcpts)
    if reply.code == 250:
        running.settle()
    return reply


def assert_tempfail(reply: Reply, *stages: str) -> None:
    """451 4.3.0 with our fixed text: never a 5xx, never an exception's words."""
    assert reply.stage in stages
    assert (reply.code, reply.text) == (451, TEMPFAIL_TEXT)


def counts(engine: Engine) -> dict[str, int]:
    """Row counts seen by a new connection, as any other process would see them."""
    with db.session_factory(engine)() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in TABLES
        }


@pytest.fixture
def start(settings: Settings, engine: Engine) -> Iterator:  # type: ignore[type-arg]
    """Start gateways with changed settings; ``own_engine`` builds one from those settings."""
    running: list[RunningGateway] = []
    engines: list[Engine] = []

    def start_with(changed: Settings, *, own_engine: bool = False) -> RunningGateway:
        gateway_engine = engine
        if own_engine:
            gateway_engine = db.make_engine(changed)
            engines.append(gateway_engine)
        running.append(start_gateway(changed, gateway_engine))
        return running[-1]

    yield start_with
    for gateway in running:
        gateway.stop()
    for own in engines:
        own.dispose()


@pytest.fixture
def tls_settings(settings: Settings, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    cert, key = write_self_signed(tmp_path / "tls", "localhost")
    return replace(settings, tls_cert=str(cert), tls_key=str(key))


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- reply codes -------------------------------------------------------------------


def test_250_only_after_commit(gateway, engine):
    with gateway.smtp() as client:
        reply = transaction(client, mail("committed"))
        assert (reply.stage, reply.code) == ("DATA", 250)
        # Still inside the SMTP session: another connection already sees the raw mail.
        assert counts(engine)["raw_mails"] == 1
    gateway.settle()
    assert counts(engine) == ONE_TICKET


def test_unknown_address_in_our_domain_is_5_1_1(gateway, engine):
    unknown = [
        "nobody@example.com",
        "NOBODY@Example.COM",
        "help-desk.extra@example.com",
        "helpdesk@example.com",
        "user%elsewhere.example@example.com",
    ]
    with gateway.smtp() as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        for rcpt in unknown:
            code, reply = client.rcpt(rcpt)
            assert (rcpt, code, reply[:5]) == (rcpt, 550, b"5.1.1")
        assert client.rcpt("help-desk@example.com")[0] == 250
        assert client.data(mail("unknown-rcpts"))[0] == 250
    with db.session_factory(engine)() as session:
        # Refused recipients are not part of the delivery.
        assert session.scalars(select(RawMail.rcpt_tos)).one() == ["help-desk@example.com"]


def test_other_domain_is_5_7_1_never_relayed(gateway, engine):
    foreign = [
        "TO:<someone@elsewhere.example>",
        "TO:<help-desk@sub.example.com>",
        "TO:<help-desk@example.com.elsewhere.example>",
        'TO:<"help-desk@example.com"@elsewhere.example>',
        "TO:<@example.com:help-desk@elsewhere.example>",
    ]
    with gateway.smtp() as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        for argument in foreign:
            code, reply = client.docmd("RCPT", argument)
            assert (argument, code, reply[:5]) == (argument, 550, b"5.7.1")
        code, _ = client.docmd("DATA")
        assert code == 503  # no recipient was accepted
    assert counts(engine) == NOTHING


def test_size_limit_is_552_declared_or_not(start, settings, engine):
    running = start(replace(settings, max_message_size=2048))
    big = mail("too-big").replace(b"Message too-big.", b"\r\n".join([b"y" * 76] * 40))
    assert len(big) > 2048
    with running.smtp() as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "2048"
        assert client.mail(SENDER, ["SIZE=4096"])[0] == 552
        # Without a declared size the limit applies to the data itself.
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("help-desk@example.com")[0] == 250
        assert client.data(big)[0] == 552
        # The session goes on, and a message within the limit is accepted.
        assert client.mail(SENDER, ["SIZE=2048"])[0] == 250
        assert client.rcpt("help-desk@example.com")[0] == 250
        assert client.data(mail("small"))[0] == 250
    running.settle()
    with db.session_factory(engine)() as session:
        assert session.scalars(select(RawMail.message_id)).all() == ["<small@customer.example>"]


def _open_session(running: RunningGateway) -> smtplib.SMTP:
    """A session on a capped gateway, waiting (bounded) for a slot a closing one frees."""
    deadline = time.monotonic() + 10
    while True:
        try:
            client = running.smtp()
        except smtplib.SMTPConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        assert client.noop()[0] == 250
        return client


def test_connection_cap_is_421(start, settings):
    running = start(replace(settings, max_connections=2))
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(_open_session(running)) for _ in range(2)]
        with pytest.raises(smtplib.SMTPConnectError) as info:
            running.smtp()
        assert info.value.smtp_code == 421
        assert info.value.smtp_error.startswith(b"4.3.2")
        held[0].quit()
        # A closed session frees its slot.
        with _open_session(running) as third:
            assert transaction(third, mail("after-cap")).code == 250


def test_starttls_offered_only_with_a_certificate(gateway, start, tls_settings, engine):
    with gateway.smtp() as client:
        client.ehlo()
        assert not client.has_extn("starttls")
    running = start(tls_settings)
    with running.smtp() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=unverified_context())[0] == 220
        assert transaction(client, mail("over-tls")).code == 250
    running.settle()
    assert counts(engine) == ONE_TICKET


def test_require_tls_refuses_mail_before_starttls(start, tls_settings, engine):
    running = start(replace(tls_settings, require_tls=True))
    with running.smtp() as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 530
        assert client.docmd("RCPT", "TO:<help-desk@example.com>")[0] == 530
        assert client.docmd("DATA")[0] == 530
        assert client.starttls(context=unverified_context())[0] == 220
        assert transaction(client, mail("tls-required")).code == 250
    running.settle()
    assert counts(engine) == ONE_TICKET


def test_several_queue_addresses_make_one_ticket(gateway, engine):
    rcpts = ["tech-support@example.com", "help-desk@example.com", "service-desk+x@example.com"]
    raw = mail("several", to=", ".join(rcpts))
    assert deliver(gateway, raw, rcpts).code == 250
    # An MTA that splits recipients delivers the same message once per address.
    assert deliver(gateway, raw, ["help-desk@example.com"]).code == 250
    assert counts(engine) == ONE_TICKET
    with db.session_factory(engine)() as session:
        assert session.scalars(select(Ticket)).one().queue.slug == "tech-support"
        inbound = session.scalars(select(Message).where(Message.kind == "inbound")).one()
        assert inbound.also_addressed == ["help-desk", "service-desk"]
        assert session.scalars(select(RawMail.rcpt_tos)).one() == rcpts


@pytest.mark.parametrize("separator", [b"\n", b"\r"], ids=["bare-LF", "bare-CR"])
def test_header_smuggling_has_no_effect(gateway, start, settings, engine, separator):
    """The parser's defence; a bare LF reaches it only when the gateway is told to
    accept one (it refuses it by default: tests/test_gateway_limits.py)."""
    if separator == b"\n":
        gateway = start(replace(settings, smtp_allow_bare_lf=True))
    raw = (
        b"From: Alice <alice@customer.example>\r\n"
        b"To: help-desk@example.com\r\n"
        b"Subject: hi" + separator + b"Cc: evil@attacker.example" + separator + b"Bcc: "
        b"evil2@attacker.example" + separator + b"In-Reply-To: <x@attacker.example>\r\n"
        b"Message-ID: <smuggle@customer.example>\r\n"
        b"\r\n"
        b"Hello.\r\n"
    )
    assert deliver(gateway, raw).code == 250
    with db.session_factory(engine)() as session:
        ticket = session.scalars(select(Ticket)).one()
        inbound = session.scalars(select(Message).where(Message.kind == "inbound")).one()
        for subject in (ticket.subject, inbound.subject):
            assert "\n" not in subject and "\r" not in subject
            assert subject.startswith("hi")
        assert inbound.cc_addresses == []
        assert inbound.in_reply_to == ""
        assert session.scalars(select(TicketCC)).all() == []
        ack = session.scalars(select(OutboxMail)).one()
        assert ack.rcpt_tos == ["alice@customer.example"]
        sent = email.message_from_bytes(outbox_bytes(ack), policy=policy.default)
        assert (sent["To"], sent["Cc"], sent["Bcc"]) == ("alice@customer.example", None, None)
        # The raw bytes are kept exactly as received.
        assert session.scalars(select(RawMail)).one().content == raw


# --- durability: failures before commit ----------------------------------------------

TRIGGER = "hd_injected_failure"


def add_failing_trigger(engine: Engine, *, subject: str | None = None) -> None:
    """Make the spool's INSERT INTO raw_mails fail in the database (for mail whose bytes
    contain ``Subject: <subject>``, or always)."""
    needle = f"Subject: {subject}\r\n" if subject else ""
    with engine.begin() as conn:
        if db.is_sqlite(engine):
            when = f"WHEN instr(NEW.content, CAST('{needle}' AS BLOB)) > 0" if needle else ""
            conn.execute(
                text(
                    f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON raw_mails FOR EACH ROW {when} "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
            return
        when = f"WHEN (position(convert_to('{needle}', 'UTF8') in NEW.content) > 0)"
        conn.execute(
            text(
                f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON raw_mails FOR EACH ROW "
                f"{when if needle else ''} EXECUTE FUNCTION {TRIGGER}()"
            )
        )


def drop_failing_trigger(engine: Engine) -> None:
    with engine.begin() as conn:
        if db.is_sqlite(engine):
            conn.execute(text(f"DROP TRIGGER {TRIGGER}"))
        else:
            conn.execute(text(f"DROP TRIGGER {TRIGGER} ON raw_mails"))
            conn.execute(text(f"DROP FUNCTION {TRIGGER}()"))


def test_database_error_before_commit_is_451_and_stores_nothing(gateway, engine):
    raw = mail("trigger")
    add_failing_trigger(engine)
    assert_tempfail(deliver(gateway, raw), "DATA")
    assert counts(engine) == NOTHING
    drop_failing_trigger(engine)
    # The sender retries; and retries again as if our 250 had been lost.
    assert deliver(gateway, raw).code == 250
    assert deliver(gateway, raw).code == 250
    assert counts(engine) == ONE_TICKET


def test_failing_commit_is_451_and_stores_nothing(gateway, engine):
    def fail_commit(conn):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail")

    raw = mail("commit-fails")
    # Fires on the connection right before the DBAPI COMMIT, after every flush.
    event.listen(engine, "commit", fail_commit)
    try:
        assert_tempfail(deliver(gateway, raw), "DATA")
    finally:
        event.remove(engine, "commit", fail_commit)
    assert counts(engine) == NOTHING
    assert deliver(gateway, raw).code == 250
    assert counts(engine) == ONE_TICKET


def test_deferred_constraint_failing_at_commit_is_451(gateway, engine, backend):
    if backend != "postgresql":
        pytest.skip("deferred constraint triggers are PostgreSQL's")
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure at commit'; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT ON raw_mails "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
            )
        )
    raw = mail("deferred")
    assert_tempfail(deliver(gateway, raw), "DATA")
    assert counts(engine) == NOTHING
    with engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER {TRIGGER} ON raw_mails"))
        conn.execute(text(f"DROP FUNCTION {TRIGGER}()"))
    assert deliver(gateway, raw).code == 250
    assert counts(engine) == ONE_TICKET


def test_one_failing_message_fails_alone(gateway, engine):
    add_failing_trigger(engine, subject="poison")
    tags = [f"batch-{i}" for i in range(12)]

    def send(tag: str) -> Reply:
        poisoned = tags.index(tag) % 3 == 0
        return deliver(gateway, mail(tag, subject="poison" if poisoned else f"fine {tag}"))

    # Sent together, so that the committer batches several into one transaction.
    with ThreadPoolExecutor(len(tags)) as pool:
        replies = dict(zip(tags, pool.map(send, tags), strict=True))
    good = set()
    for i, tag in enumerate(tags):
        if i % 3 == 0:
            assert_tempfail(replies[tag], "DATA")
        else:
            assert replies[tag].code == 250
            good.add(f"<{tag}@customer.example>")
    with db.session_factory(engine)() as session:
        assert set(session.scalars(select(RawMail.message_id))) == good
        assert session.scalar(select(func.count()).select_from(Ticket)) == len(good)


@contextlib.contextmanager
def database_locked(engine: Engine, url: str) -> Iterator[None]:
    """Another connection holds the lock the gateway needs to store mail."""
    if db.is_sqlite(engine):
        conn = sqlite3.connect(make_url(url).database, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE raw_mails IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()


@pytest.mark.timeout(120)
def test_locked_database_is_451_not_a_hang(start, settings, engine):
    running = start(replace(settings, database_timeout=1.0), own_engine=True)
    raw = mail("locked")
    with database_locked(engine, settings.database_url):
        started = time.monotonic()
        # The client's 30 s socket timeout bounds this; a hang would fail the test.
        reply = deliver(running, raw)
        elapsed = time.monotonic() - started
    print(f"locked database answered {reply.code} after {elapsed:.1f} s")
    assert_tempfail(reply, "RCPT", "DATA")
    assert counts(engine) == NOTHING
    assert deliver(running, raw).code == 250
    assert counts(engine) == ONE_TICKET


@pytest.mark.timeout(120)
def test_unreachable_postgresql_is_451(tmp_path):
    closed_port = free_port()
    settings = Settings.load(
        environ={},
        instance_path=tmp_path,
        dotenv_path=None,
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/x",
        secret_key=SECRET,
        mail_domain="example.com",
        database_timeout=1.0,
    )
    engine = db.make_engine(settings)
    running = start_gateway(settings, engine)
    try:
        for _ in range(2):  # the second time on the same, still broken, gateway
            assert_tempfail(deliver(running, mail("unreachable")), "RCPT", "DATA")
    finally:
        running.stop()
        engine.dispose()


def test_two_gateways_store_a_message_once(start, settings, engine):
    """Several MX hosts: a burst of mail, each message arriving at both gateways at once.

    On PostgreSQL the two gateways' transactions deadlock on each other's rows
    (ticket counter, unique keys); the loser tries again and finds the message
    stored, so both answer 250 and it is stored once.
    """
    first = start(settings, own_engine=True)
    second = start(settings, own_engine=True)
    tags = [f"mx-{i}" for i in range(10)]
    jobs = [(gateway, tag) for tag in tags for gateway in (first, second)]

    def send(job: tuple[RunningGateway, str]) -> Reply:
        gateway, tag = job
        return deliver(gateway, mail(tag, sender=f"{tag}@customer.example"))

    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(send, jobs))
    assert [reply.code for reply in replies] == [250] * len(jobs)
    with db.session_factory(engine)() as session:
        stored = session.scalars(select(RawMail.message_id)).all()
        assert sorted(stored) == sorted(f"<{tag}@customer.example>" for tag in tags)
        assert session.scalar(select(func.count()).select_from(Ticket)) == len(tags)


def test_message_racing_another_transaction_is_accepted(gateway, engine):
    """Another transaction creates the sender's contact meanwhile: retried at once, not 451."""
    sender = "racer@customer.example"
    with (
        ThreadPoolExecutor(1) as pool,
        db.session_factory(engine, write=True)() as session,
        session.begin(),
    ):
        contacts.get_or_create(session, sender, "Racer", now=utcnow())
        reply = pool.submit(deliver, gateway, mail("race", sender=sender))
        if db.is_sqlite(engine):
            time.sleep(0.5)  # the gateway waits for our write lock; no race possible
        else:
            # Commit once the gateway waits on our uncommitted contact row (bounded).
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 10
            while not reply.done():
                with engine.connect() as probe:  # its own snapshot of the activity
                    if probe.execute(waiting).scalar():
                        break
                assert time.monotonic() < deadline, "the gateway never reached the contact"
                time.sleep(0.02)
    assert reply.result(timeout=30).code == 250
    with db.session_factory(engine)() as session:
        assert session.scalars(select(Ticket)).one().requester.email == sender


def test_long_lines_are_accepted_not_bounced(gateway, engine):
    """RFC 5321 allows 1000 octets a line, but refusing longer ones bounces real mail."""
    raw = mail("long-line").replace(b"Message long-line.", b"<p>" + b"z" * 20_000 + b"</p>")
    assert deliver(gateway, raw).code == 250
    with db.session_factory(engine)() as session:
        assert session.scalars(select(RawMail)).one().content == raw

"""The intake pipeline: spool first (250), apply after, over real SMTP on SQLite and PostgreSQL.

- a message gets 250 before it is applied (no applier running: spooled, no
  ticket), and its ticket appears once an applier runs;
- a 20,000-part message and a 2,000-deep message each end as an ``unparsed``
  ticket with the original attached, and a normal message sent meanwhile is
  accepted and becomes a ticket;
- a message that waited too long for the spool writer gets 451 and is never
  stored, even after the writer catches up (nothing is committed after a 4xx);
- DATA past the memory budget is 451 4.3.1 and stores nothing;
- a first message and its reply sent back to back thread together;
- a web POST while another connection holds the write lock for 3 s succeeds
  after the wait, and a GET meanwhile is served;
- ``helpdesk mail status`` / ``mail reprocess`` and the admin Mail page;
- the parse itself is bounded (a real child process that outlives its limit);
- one applier at a time holds the lease.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import undefer

from helpdesk import db
from helpdesk.intake.applier import Applier
from helpdesk.intake.parsing import Parser
from helpdesk.models import Attachment, Message, RawMail, Ticket
from tests.conftest import SECRET, start_gateway
from tests.test_web_smoke import csrf, sign_in

SENDER = "alice@customer.example"


def mail(tag: str, *, extra: str = "", body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: Customer <{SENDER}>\r\nTo: help-desk@example.com\r\nSubject: About {tag}\r\n"
        f"Message-ID: <{tag}@customer.example>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0100\r\n"
        f"{extra}\r\n{body}"
    ).encode()


def many_parts(count: int) -> bytes:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\npart\r\n"
    head = (
        b"From: Bomber <bomber@customer.example>\r\nTo: help-desk@example.com\r\n"
        b"Subject: Many parts\r\nMessage-ID: <many@customer.example>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    )
    return head + part * count + b"--b--\r\n"


def deep(depth: int) -> bytes:
    head = (
        b"From: Nester <nester@customer.example>\r\nTo: help-desk@example.com\r\n"
        b"Subject: Deep\r\nMessage-ID: <deep@customer.example>\r\nMIME-Version: 1.0\r\n"
    )
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="d%d"\r\n\r\n--d%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--d%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\ninnermost" + closing


def rows(engine: Engine) -> list[RawMail]:
    with db.session_factory(engine)() as session:
        stmt = select(RawMail).options(undefer(RawMail.content)).order_by(RawMail.id)
        return list(session.scalars(stmt))


def count(engine: Engine, model) -> int:  # type: ignore[no-untyped-def]
    with db.session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_250_before_apply_and_the_ticket_after(settings, engine):
    running = start_gateway(settings, engine, applier=False)
    try:
        with running.smtp() as client:
            assert client.sendmail(SENDER, ["help-desk@example.com"], mail("early")) == {}
        assert [row.state for row in rows(engine)] == ["spooled"]
        assert count(engine, Ticket) == 0
    finally:
        running.stop()
    applying = start_gateway(settings, engine)  # now with an applier
    try:
        applying.settle()
    finally:
        applying.stop()
    (row,) = rows(engine)
    assert row.state == "processed"
    with db.session_factory(engine)() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.subject == "About early"
        assert row.ticket_id == ticket.id


@pytest.mark.timeout(240)
def test_bombs_become_unparsed_tickets_and_normal_mail_flows(gateway, engine):
    bombs = {"many": many_parts(20_000), "deep": deep(2_000)}
    with ThreadPoolExecutor(3) as pool:
        sent = [
            pool.submit(gateway.send, raw, mail_from="x@customer.example") for raw in bombs.values()
        ]
        time.sleep(0.05)  # the normal one goes while the bombs are applied
        normal = pool.submit(gateway.send, mail("normal"), mail_from=SENDER)
        assert normal.result(timeout=120) == {}
        assert [future.result(timeout=120) for future in sent] == [{}, {}]
    gateway.settle()
    by_bytes = {row.content: row for row in rows(engine)}
    with db.session_factory(engine)() as session:
        for name, raw in bombs.items():
            row = by_bytes[raw]
            assert row.state == "unparsed", name
            assert "MIME" in row.error, row.error
            ticket = session.get(Ticket, row.ticket_id)
            message = session.scalars(select(Message).where(Message.raw_mail_id == row.id)).one()
            assert "unparsed" in message.flags
            assert "could not be read in full" in message.text_body
            assert ticket.requester.email.endswith("@customer.example")
            original = session.scalars(
                select(Attachment).where(Attachment.message_id == message.id)
            ).one()
            assert (original.filename, original.data) == ("original.eml", raw)
        row = by_bytes[mail("normal")]
        assert row.state == "processed"
        assert session.get(Ticket, row.ticket_id).subject == "About normal"


@contextlib.contextmanager
def write_locked(engine: Engine, seconds: float | None = None) -> Iterator[threading.Event]:
    """Another connection holds the write lock (SQLite) or locks the spool's and the
    sessions' tables against writes (PostgreSQL), until the yielded event is set or
    ``seconds`` pass."""
    release = threading.Event()
    if seconds is not None:
        threading.Timer(seconds, release.set).start()
    if db.is_sqlite(engine):
        conn = sqlite3.connect(
            make_url(str(engine.url)).database, isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN IMMEDIATE")
        holder = threading.Thread(target=lambda: (release.wait(30), conn.execute("ROLLBACK")))
    else:
        pg = engine.connect()
        pg.execute(text("LOCK TABLE raw_mails, web_sessions IN EXCLUSIVE MODE"))
        holder = threading.Thread(target=lambda: (release.wait(30), pg.rollback(), pg.close()))
    holder.start()
    try:
        yield release
    finally:
        release.set()
        holder.join(30)
        if db.is_sqlite(engine):
            conn.close()


def _deliver(port: int, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt("help-desk@example.com")
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def test_timed_out_intake_leaves_no_row(settings, engine):
    running = start_gateway(replace(settings, intake_timeout=0.5), engine)
    try:
        with write_locked(engine) as release, ThreadPoolExecutor(2) as pool:
            taken = pool.submit(_deliver, running.port, mail("taken"))
            # The writer takes the first and waits for the lock; the second waits for the writer.
            deadline = time.monotonic() + 10
            while running.gateway.handler.committer.taken == 0:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            withdrawn = pool.submit(_deliver, running.port, mail("withdrawn"))
            code, reply = withdrawn.result(timeout=30)
            assert (code, reply[:5]) == (451, b"4.3.0")
            release.set()
            assert taken.result(timeout=30)[0] == 250  # taken: its commit decided
        running.settle()
        # The writer is idle again; the withdrawn message was never written.
        assert running.gateway.handler.committer.idle()  # type: ignore[attr-defined]
        assert [row.content for row in rows(engine)] == [mail("taken")]
        assert count(engine, Ticket) == 1
    finally:
        running.stop()


def test_data_past_the_memory_budget_is_451_4_3_1(settings, engine):
    running = start_gateway(replace(settings, max_spool_memory=64 * 1024), engine)
    try:
        big = mail("big", body=("x" * 76 + "\r\n") * 2000)  # about 156 KB
        code, reply = _deliver(running.port, big)
        assert (code, reply[:5]) == (451, b"4.3.1")
        assert _deliver(running.port, mail("small"))[0] == 250
        running.settle()
        assert [row.content for row in rows(engine)] == [mail("small")]
        assert running.gateway.budget.used == 0  # type: ignore[attr-defined]
    finally:
        running.stop()


def test_first_message_and_reply_back_to_back_thread_together(gateway, engine):
    reply = mail(
        "reply", extra="In-Reply-To: <first@customer.example>\r\n", body="Also the scanner.\r\n"
    ).replace(b"Subject: About reply", b"Subject: Re: About first")
    with gateway.smtp() as client:
        client.sendmail(SENDER, ["help-desk@example.com"], mail("first"))
        client.sendmail(SENDER, ["help-desk@example.com"], reply)
    gateway.settle()
    with db.session_factory(engine)() as session:
        ticket = session.scalars(select(Ticket)).one()
        inbound = [m.message_id for m in ticket.messages if m.kind == "inbound"]
        assert inbound == ["<first@customer.example>", "<reply@customer.example>"]


def test_web_post_waits_for_the_write_lock(app, make_user, engine):
    make_user("agent@example.com", "agent", ["help-desk"])
    client = app.test_client()
    page = client.get("/login").data
    with write_locked(engine, seconds=3.0):
        if db.is_sqlite(engine):
            assert app.test_client().get("/login").status_code == 200  # reads go on
        started = time.monotonic()
        response = client.post(
            "/login",
            data={
                "email": "agent@example.com",
                "password": "password123",
                "csrf_token": csrf(page),
            },
        )
        waited = time.monotonic() - started
    print(f"the sign-in waited {waited:.1f} s for the write lock")
    assert response.status_code == 302
    assert client.get("/views/mine").status_code == 200
    assert sign_in(app.test_client(), "agent@example.com").status_code == 302


def _cli(settings, *args: str) -> str:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        HELPDESK_DATABASE_URL=settings.database_url,
        HELPDESK_SECRET_KEY=SECRET,
        HELPDESK_INSTANCE_PATH=str(settings.instance_path),
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("helpdesk")), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_operators_see_the_pipe_and_reprocess(gateway, app, make_user, settings, engine):
    gateway.send(mail("fine"), mail_from=SENDER)
    nobody = b"To: help-desk@example.com\r\nSubject: who?\r\n\r\nNo sender at all.\r\n"
    gateway.send(nobody, mail_from="")
    gateway.send(many_parts(2_000), mail_from="x@customer.example")
    status = _cli(settings, "mail", "status")
    assert "processed 1" in status and "failed 1" in status and "unparsed 1" in status
    assert "no sender address" in status
    assert "more than 1000 MIME parts" in status

    make_user("admin@example.com", "admin")
    admin = app.test_client()
    assert sign_in(admin, "admin@example.com").status_code == 302
    page = admin.get("/admin/mail")
    assert page.status_code == 200
    assert b"no sender address" in page.data and b"more than 1000 MIME parts" in page.data
    failed = next(row for row in rows(engine) if row.state == "failed")
    download = admin.get(f"/admin/mail/{failed.id}.eml")
    assert download.data == nobody
    assert download.headers["Content-Disposition"].startswith("attachment")
    agent = app.test_client()
    make_user("agent@example.com", "agent", ["help-desk"])
    assert sign_in(agent, "agent@example.com").status_code == 302
    assert agent.get("/admin/mail").status_code == 404

    gateway.stop()  # so the reprocessed mail stays in the spool where we can see it
    assert "1 failed messages back in the spool" in _cli(settings, "mail", "reprocess")
    assert "spooled 1" in _cli(settings, "mail", "status")


def test_the_parse_itself_is_bounded(settings):
    attachment = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    line = b"QUJD" * 19 + b"\r\n"
    part = b"--b\r\n" + attachment + b"\r\n" + line * 20_000
    raw = (
        b"From: Big <big@customer.example>\r\nSubject: Big\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + part * 10 + b"--b--\r\n"
    )  # 15 MB within every structure cap, but slow to read
    parser = Parser(replace(settings, parse_timeout=0.01, parse_workers=1))
    try:
        read = parser.result(parser.submit(raw), raw)
        assert read.unparsed.startswith("reading it"), read.unparsed
        assert read.subject == "Big"
        assert read.attachments[0].data == raw
        # The pool goes on with a new worker.
        small = mail("after")
        assert parser.result(parser.submit(small), small).unparsed == ""
    finally:
        parser.close()


def test_one_applier_holds_the_lease(settings, engine):
    first = Applier(engine, replace(settings, parse_workers=0))
    second = Applier(engine, replace(settings, parse_workers=0))
    try:
        assert first._hold()
        assert not second._hold()
        first._release()
        assert second._hold()
        assert not first._hold()
    finally:
        for applier in (first, second):
            applier._release()
            applier.close()

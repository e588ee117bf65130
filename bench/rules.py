"""Automation rules: what they cost intake, and one time-rule pass at 100,000 tickets.

1. Intake end to end, SMTP to applied ticket: the real gateway and applier in
   this process on a fresh database, N mails over 4 SMTP connections, timed
   from the first connection to the moment the spool is empty; rounds
   alternate between 0 and 50 enabled rules (45 on ``ticket.created`` that do
   not match, 5 that act: a tag, a priority, a note), so load on the machine
   hits both alike. Prints msgs/s and the process's CPU seconds per message
   for each, and the ratio (goal: with rules >= 0.8 x without).
2. One time-rule pass (``helpdesk.automation.timed``) over 100,000 open
   tickets on PostgreSQL (new, open and pending, of every age, in three
   queues with the seeded business calendar): the ready-made reminder and
   auto-close rules plus three more time rules (tags, requester domain, a
   priority). Timed twice: a steady pass (the rules acted on everything due
   already) and a pass where 300 tickets have just come due. Goal: < 1 s.

Usage: ``.venv/bin/python bench/rules.py [--messages 400] [--rounds 2]
[--tickets 100000] [--sqlite-only | --time-only]``. PostgreSQL comes from
``HELPDESK_TEST_POSTGRES_URL`` (default postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import resource
import smtplib
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpdesk import bootstrap, db
from helpdesk.automation import library, service, timed
from helpdesk.models import Contact, Queue, Rule, RuleMark, Ticket
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions

PG_URL = os.environ.get(
    "HELPDESK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def settings_for(url: str, instance: Path) -> Settings:
    return Settings.load(
        environ={}, instance_path=instance, dotenv_path=None, database_url=url,
        secret_key="bench-secret", mail_domain="example.com", parse_workers=1,
    )  # fmt: skip


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fresh_sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"


def fresh_postgres() -> str:
    name = f"hd_bench_rules_{uuid.uuid4().hex[:8]}"
    admin = create_engine(db.normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(make_url(db.normalise_url(PG_URL)).set(database=name).render_as_string(False))


def drop_postgres(url: str) -> None:
    admin = create_engine(db.normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def prepare(url: str, instance: Path) -> tuple[Settings, object]:
    settings = settings_for(url, instance)
    engine = db.make_engine(settings)
    db.upgrade(engine)
    with db.session_factory(engine, write=True)() as session, session.begin():
        bootstrap.seed(session, settings, now=datetime.now(UTC))
        for rule in session.scalars(select(Rule)):
            session.delete(rule)
    return settings, engine


def fifty_rules(session, now: datetime) -> None:  # type: ignore[no-untyped-def]
    for i in range(45):
        service.save(session, None, {
            "name": f"No match {i}", "enabled": True, "position": i, "trigger": "ticket.created",
            "conditions": {"all": [
                {"field": "subject", "op": "contains", "value": f"never-{i}"},
                {"any": [{"field": "requester_domain", "op": "in", "value": [f"d{i}.example"]},
                         {"field": "body", "op": "regex", "value": rf"order\s+#{i}\d+"}]},
            ]},
            "actions": [{"set": "priority", "value": "urgent"}],
        }, now=now)  # fmt: skip
    acting = [
        [{"add_tags": ["seen"]}],
        [{"set": "priority", "value": "high"}],
        [{"note": "Checked by a rule."}],
        [{"add_tags": ["printer"]}],
        [{"remove_tags": ["seen"]}],
    ]
    for i, actions in enumerate(acting):
        service.save(session, None, {
            "name": f"Acts {i}", "enabled": True, "position": 100 + i,
            "trigger": "ticket.created",
            "conditions": {"all": [{"field": "queue", "op": "is", "value": "help-desk"}]},
            "actions": actions,
        }, now=now)  # fmt: skip


def intake_round(rules: int, messages: int, folder: Path) -> tuple[float, float]:
    """msgs/s end to end, CPU seconds per message (this process: gateway + applier)."""
    from helpdesk.intake.applier import start_applier
    from helpdesk.intake.spool import pending
    from helpdesk.intake.wakeup import Wakeup
    from mailgate.server import start_gateway

    instance = folder / f"instance-{uuid.uuid4().hex[:6]}"
    instance.mkdir()
    settings, engine = prepare(fresh_sqlite(folder), instance)
    if rules:
        with writing_sessions(engine, settings)() as session, session.begin():
            fifty_rules(session, datetime.now(UTC))
    wakeup = Wakeup(engine)
    applier, thread = start_applier(settings, engine, wakeup=wakeup)
    with socket_port() as port:
        pass
    gateway = start_gateway(settings, "127.0.0.1", port, engine, on_commit=wakeup.notify)
    raws = [
        (
            f"From: Customer {i} <c{i}@customer{i % 50}.example>\r\nTo: help-desk@example.com\r\n"
            f"Subject: Printer {i} on fire\r\nMessage-ID: <bench-{i}-{uuid.uuid4().hex}@c.example>"
            f"\r\n\r\nPlease help with printer {i}.\r\n"
        ).encode()
        for i in range(messages)
    ]
    started, cpu_started = time.perf_counter(), cpu()

    def send(chunk: list[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for raw in chunk:
                client.sendmail("c@customer.example", ["help-desk@example.com"], raw)

    senders = [threading.Thread(target=send, args=(raws[k::4],)) for k in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with db.session_factory(engine)() as session:
            if pending(session) == 0:
                break
        time.sleep(0.005)
    elapsed, used = time.perf_counter() - started, cpu() - cpu_started
    gateway.stop()
    applier.stop()
    thread.join(30)
    applier.close()
    with db.session_factory(engine)() as session:
        made = session.scalar(select(func.count()).select_from(Ticket))
    assert made == messages, (made, messages)
    engine.dispose()
    return messages / elapsed, used / messages


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def bench_intake(messages: int, rounds: int) -> None:
    print(f"intake end to end, SQLite, {messages} mails over 4 SMTP connections per round")
    results: dict[int, list[tuple[float, float]]] = {0: [], 50: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for rules in (0, 50):
                rate, per = intake_round(rules, messages, Path(folder))
                results[rules].append((rate, per))
                print(f"  {rules:>2} rules: {rate:7.1f} msgs/s, {per * 1000:6.2f} ms CPU per mail")
    best = {k: max(r for r, _ in v) for k, v in results.items()}
    cpu_best = {k: min(c for _, c in v) for k, v in results.items()}
    print(
        f"  best of {rounds}: 0 rules {best[0]:.1f} msgs/s, 50 rules {best[50]:.1f} msgs/s: "
        f"{best[50] / best[0]:.2f}x (goal >= 0.80x); CPU per mail "
        f"{cpu_best[0] * 1000:.2f} vs {cpu_best[50] * 1000:.2f} ms: "
        f"{cpu_best[0] / cpu_best[50]:.2f}x"
    )


def fill(engine, count: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """``count`` open tickets of every age, set-based (no lifecycle: bench data)."""
    with engine.begin() as conn:
        queues = [row[0] for row in conn.execute(select(Queue.id).order_by(Queue.id))]
        conn.execute(insert(Contact), [
            {"email": f"c{i}@d{i % 40}.example", "name": f"C {i}", "created_at": now}
            for i in range(2000)
        ])  # fmt: skip
        contacts = [row[0] for row in conn.execute(select(Contact.id).order_by(Contact.id))]
        statuses = ("new", "open", "pending")
        batch = []
        for i in range(count):
            age = timedelta(minutes=(i * 7919) % (60 * 24 * 30))
            created = now - age - timedelta(days=1)
            changed = now - age
            batch.append({
                "number": i + 1, "queue_id": queues[i % len(queues)], "status": statuses[i % 3],
                "priority": ("low", "normal", "high", "urgent")[i % 4],
                "requester_id": contacts[i % len(contacts)], "subject": f"Ticket {i}",
                "created_at": created, "updated_at": changed, "channel": "mail",
                "status_changed_at": changed, "last_customer_message_at": created,
                "last_agent_reply_at": changed if i % 2 else None,
            })  # fmt: skip
            if len(batch) == 5000:
                conn.execute(insert(Ticket), batch)
                batch = []
        if batch:
            conn.execute(insert(Ticket), batch)
        conn.execute(text("ANALYZE"))


def bench_time_rules(count: int) -> None:
    url = fresh_postgres()
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings, engine = prepare(url, Path(folder))
            now = datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
            started = time.perf_counter()
            fill(engine, count, now)
            print(f"time rules, PostgreSQL, {count} open tickets (filled in "
                  f"{time.perf_counter() - started:.0f} s)")  # fmt: skip
            sessions = writing_sessions(engine, settings)
            with sessions() as session, session.begin():
                for _key, data in library.PRESETS:
                    if data["trigger"] == "time":
                        service.save(session, None, {**data, "enabled": True}, now=now)
                for i, extra in enumerate([
                    {"field": "tags", "op": "has", "value": "vip"},
                    {"field": "requester_domain", "op": "in", "value": ["d3.example", "d7.ex"]},
                    {"field": "priority", "op": "is", "value": "urgent"},
                ]):  # fmt: skip
                    service.save(session, None, {
                        "name": f"Time {i}", "enabled": True, "trigger": "time",
                        "conditions": {"all": [extra, {"field": "hours_since_customer_message",
                                                       "op": "gte", "value": 16}]},
                        "actions": [{"add_tags": ["late"]}],
                    }, now=now)  # fmt: skip
                rules = session.scalars(select(Rule).where(Rule.enabled)).all()
                # Steady state: everything due has been acted on (marked) already.
                from helpdesk.automation.engine import enabled_rules

                for rule in enabled_rules(session)["time"]:
                    chosen = timed.selection(session, rule, now)
                    found = timed.candidates(session, rule.id, chosen, limit=count)
                    session.execute(insert(RuleMark), [
                        {"rule_id": rule.id, "ticket_id": i, "anchor_at": a, "acted_at": now}
                        for i, a in found
                    ]) if found else None  # fmt: skip
                marks = session.scalar(select(func.count()).select_from(RuleMark))
            print(f"  {len(rules)} time rules; {marks} tickets already acted on (marked)")
            runner = timed.TimeRules(sessions, settings)
            for label, at in (("steady pass", now), ("steady pass again", now)):
                started, cpu_started = time.perf_counter(), cpu()
                acted = runner.run(at)
                print(f"  {label}: {time.perf_counter() - started:.3f} s "
                      f"({cpu() - cpu_started:.3f} s CPU here), acted on {acted}")  # fmt: skip
            later = now + timedelta(minutes=30)
            started, cpu_started = time.perf_counter(), cpu()
            acted = runner.run(later)
            elapsed = time.perf_counter() - started
            print(f"  pass 30 minutes later: {elapsed:.3f} s ({cpu() - cpu_started:.3f} s CPU "
                  f"here), acted on {acted} (goal < 1 s)")  # fmt: skip
            engine.dispose()
    finally:
        drop_postgres(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--sqlite-only", action="store_true", help="skip the PostgreSQL part")
    parser.add_argument("--time-only", action="store_true", help="skip the intake part")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    if not args.time_only:
        bench_intake(args.messages, args.rounds)
    if not args.sqlite_only:
        bench_time_rules(args.tickets)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()

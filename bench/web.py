"""Web benchmark: page times of the agent web app with 100,000 tickets, SQLite vs PostgreSQL.

What it measures
----------------
For each backend (``--backends sqlite,postgresql``) a fresh database is made:
a new SQLite file in a temp dir, or ``CREATE DATABASE bench_web_<random>`` on
the PostgreSQL server at 127.0.0.1:5432 (user ``postgres``), which is dropped
at the end. It is migrated with ``helpdesk.db.upgrade`` and seeded with
``helpdesk.bootstrap.seed`` (queues and the default SLA calendar and policy),
exactly as ``helpdesk init`` does, then filled with
generated data (same seed, so both backends hold the same rows):

* ``--tickets`` tickets (default 100,000) spread over the three queues
  (50 / 30 / 20 %), statuses (new 5, open 15, pending 10, resolved 20,
  closed 50 %; active tickets are recent, closed ones up to two years old),
  priorities (low 20, normal 60, high 15, urgent 5 %), about 0.3 % merged;
* 24 agents (8 per queue, some in two) plus the benchmark's own agent, who
  belongs to all three queues and is one of the assignees; new tickets are
  mostly unassigned, the others mostly assigned;
* 40 tags (0 to 3 per ticket, Zipf-distributed);
* requesters drawn (Zipf) from a pool of 3,000 contacts;
* one inbound message per ticket, plus an outbound reply (with its outbox
  row) on 10 % of them, i.e. about 1.1 messages per ticket; subjects and
  bodies are drawn (Zipf) from a vocabulary of about 5,000 words, so that
  full-text search has common and rare words to find;
* one ticket with 50 messages (inbound, outbound and notes; every other one
  with an HTML part and quoted history) and 15 audit events.

Every ticket also has its SLA row (``ticket_slas``, default policy; running,
due soon, breached, paused or met as its status implies), as intake would
have left it.

Rows go in, in batches of 5,000 tickets, with SQLAlchemy Core ``insert()``
and executemany on SQLite and with ``COPY ... FROM STDIN`` (psycopg) on
PostgreSQL. Full-text search is kept by the database itself, as in
production: on SQLite the FTS5 triggers of
migration 0002 fire on every INSERT into ``messages``; on PostgreSQL the GIN
expression index ``fts_messages`` is maintained by the server. After loading,
PostgreSQL gets ``VACUUM ANALYZE`` (what autovacuum does soon after a bulk
load); SQLite gets nothing, since the app never runs ``ANALYZE`` either
(``--sqlite-analyze`` runs it, to see what planner statistics would change).
Generation time (build + insert + vacuum) and database size are reported.
The schema is exactly what the migrations make; ``--with-indexes`` also
creates ``RECOMMENDED_INDEXES`` (below) after loading, to measure them.

Method
------
Requests go through the real Flask app (``helpdesk.web.create_app``) with
**Flask's test client**, in process: a signed-in agent of all three queues
(signed in through ``POST /login`` with its CSRF token, so every request runs
the session lookup, the sidebar counts, the view and the Jinja templates, as
in production). What is not measured is the HTTP server (waitress parsing a
request and writing the response, well under a millisecond on loopback).
Each page is requested 3 times to warm up, then ``--requests`` times (default
30); the table shows the median and the 95th percentile (nearest rank) of the
wall time of ``client.get()``, the number of SQL statements per request, and
the number of tickets the page reports (or the messages on the ticket page).
Every response must be 200 and show what it should; otherwise the run fails.

Pages: the queue list (``/queues/help-desk``, first page, default filters:
active tickets by last update), "my tickets" (``/views/mine``, where ``/``
lands), the "everything" view (``/views/all``), a filtered list
(``/views/all?status=open&priority=high&tag=<most used tag>``),
the ticket with 50 messages (``/tickets/<n>``), and searches
(``/search?q=<word>&status=any``) for a common and for a rare word.

Profiling: ``--profile`` runs pyinstrument around the measured requests of
every page and writes ``bench/out/web-<backend>-<page>.txt``;
``--explain`` prints EXPLAIN QUERY PLAN / EXPLAIN ANALYZE of the statements
each page runs (captured from one request).

How to run (from the repository root)::

    .venv/bin/python bench/web.py --tickets 10000            # quick iteration
    .venv/bin/python bench/web.py                            # 100,000 tickets, both backends
    .venv/bin/python bench/web.py --with-indexes             # plus the recommended index
    .venv/bin/python bench/web.py --backends sqlite --keep   # keep the database, print its URL

``--keep`` keeps the databases and prints their URLs (drop the PostgreSQL one
yourself: ``psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE "bench_web_..."'``).
Other load on the machine distorts the figures (the 1-minute load average
is printed before and after each backend's measurements): run twice and
compare, and compare variants (``--with-indexes``) in the same conditions.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpdesk import bootstrap, db  # noqa: E402
from helpdesk.accounts import users  # noqa: E402
from helpdesk.clock import utcnow  # noqa: E402
from helpdesk.models import (  # noqa: E402
    Contact,
    Counter,
    Message,
    OutboxMail,
    Queue,
    SlaPolicy,
    Tag,
    Ticket,
    TicketEvent,
    TicketSla,
    User,
    ticket_tags,
    user_queues,
)
from helpdesk.settings import Settings  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OUT = ROOT / "bench" / "out"
MAIL_DOMAIN = "example.com"
SECRET = "bench-secret-key-not-for-production"
AGENT = "bench-agent@example.com"
PASSWORD = "bench-password-123"
SEED = 20261126
BATCH = 5_000
CONTACTS = 3_000
TAGS = 40
WARMUPS = 3
BIG_THREAD = 50

QUEUE_SHARE = (("help-desk", 50), ("service-desk", 30), ("tech-support", 20))
STATUS_SHARE = (("new", 5), ("open", 15), ("pending", 10), ("resolved", 20), ("closed", 50))
PRIORITY_SHARE = (("low", 20), ("normal", 60), ("high", 15), ("urgent", 5))
ACTIVE = ("new", "open", "pending")

# Not in the migrations (yet): ``--with-indexes`` creates them after loading, to measure them.
# Every list and the sidebar counts filter on queue, status and "not merged" and sort by
# last update; with this partial index they read only the index (no row per ticket).
RECOMMENDED_INDEXES = {
    "sqlite": [
        "CREATE INDEX IF NOT EXISTS ix_tickets_live ON tickets "
        "(queue_id, status, updated_at, id, assignee_id, priority) WHERE merged_into_id IS NULL"
    ],
    "postgresql": [
        "CREATE INDEX IF NOT EXISTS ix_tickets_live ON tickets "
        "(queue_id, status, updated_at, id) INCLUDE (assignee_id, priority) "
        "WHERE merged_into_id IS NULL"
    ],
}


def _split(words: str) -> list[str]:
    return words.split()


# The most frequent words first: Zipf ranks follow this order.
COMMON_WORDS = _split("""
the a to and of is in it not my we you for on with this that can please be have
since after when again still does cannot will works working broken slow urgent today
yesterday morning every hour week help thanks regards hello hi issue problem question
""")
TOPIC_WORDS = _split("""
account access adapter address alert application approval archive audio backup badge
battery billing bluetooth boot browser budget cable calendar camera certificate charger
chrome client cloud cluster compiler computer conference configuration connection
contract cookie cursor dashboard database deadline delivery desktop device dialog
directory disk display dock document domain download driver dropbox email encryption
error ethernet excel export extension failure fan file firewall firmware folder font
form gateway graphics hardware headset heater helpdesk hotspot invoice keyboard kernel
key laptop license link login logout mailbox malware meeting memory microphone migration
modem monitor mouse network notebook notification office onboarding outage outlook
package password patch payment permission phone platform plugin policy portal power
printer procurement profile projector proxy purchase queue quota receipt recovery
refund register release remote report request reset restore router scanner schedule
screen script security server session settings share signature smartphone software
spreadsheet storage subscription support switch sync tablet teams template terminal
ticket timeout token toner training transfer update upgrade upload usb user vendor
video virus voicemail vpn warranty webcam website wifi windows wireless workstation
""")
FIRST = _split("""anna ben carla david elena frank greta hugo ines jan karin lars mia nils olga
paul quinn rosa sven tara uwe vera walter xenia yusuf zoe""")
LAST = _split("""adams becker costa dubois evans fischer garcia hansen ito jensen kowalski
larsen meyer nowak olsen petrov quist rossi schmidt tanaka ueda vogel weber young""")
DOMAINS = ("customer.example", "acme.example", "globex.example", "initech.example", "mail.example")
SYLLABLES = _split("ka lo mi nu pe ra si to ve zu bra cle dri fro glu pla sko tri")


@dataclass
class Plan:
    """What the generator made that the pages need to know."""

    tickets: int = 0
    messages: int = 0
    big_ticket: int = 0
    top_tag: str = ""
    common_word: str = ""
    rare_word: str = ""


@dataclass
class Result:
    name: str
    path: str
    times: list[float] = field(default_factory=list)
    queries: int = 0
    rows: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def p95(self) -> float:
        ordered = sorted(self.times)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


@dataclass
class Run:
    backend: str
    url: str
    generation: float = 0.0
    size: int = 0
    results: list[Result] = field(default_factory=list)
    plan: Plan | None = None


# --- databases --------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    engine = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def create_database(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench-web.db'}"
    name = f"bench_web_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    return make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    _pg_admin(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def database_size(engine: Engine) -> int:
    if db.is_sqlite(engine):
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(engine.url.database or "")
        return sum(
            p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()
        )  # fmt: skip
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)


def make_settings(url: str, instance: Path) -> Settings:
    instance.mkdir(parents=True, exist_ok=True)
    return Settings.load(
        environ={},
        instance_path=instance,
        dotenv_path=None,
        database_url=url,
        secret_key=SECRET,
        mail_domain=MAIL_DOMAIN,
    )


# --- data -------------------------------------------------------------------


def _weights(share: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    return [k for k, _ in share], [w for _, w in share]


def _zipf_cum(n: int, s: float = 1.0) -> list[float]:
    total, cum = 0.0, []
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        cum.append(total)
    return cum


def vocabulary(rng: random.Random) -> list[str]:
    """Real support words first (the frequent ones), then a long tail of made-up words."""
    words = list(dict.fromkeys(COMMON_WORDS + TOPIC_WORDS))
    seen = set(words)
    for _ in range(50_000):  # bounded: stops at 5,000 words
        if len(words) >= 5_000:
            break
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Generator:
    """Deterministic rows for tickets, messages, tags and outbox, in batches."""

    def __init__(self, tickets: int, now: datetime, queue_ids: dict[str, int]) -> None:
        self.rng = random.Random(SEED)
        self.n = tickets
        self.now = now
        self.queue_ids = queue_ids
        self.words = vocabulary(self.rng)
        self.word_cum = _zipf_cum(len(self.words), 1.05)
        self.contact_cum = _zipf_cum(CONTACTS, 0.8)
        self.tag_names = TOPIC_WORDS[::4][:TAGS]
        self.tag_cum = _zipf_cum(TAGS, 1.0)
        self.big_ticket = max(1, tickets - 10)
        self.message_id = 0
        self.outbox_id = 0
        # Filled in by the caller once users and contacts exist.
        self.agents_by_queue: dict[int, list[int]] = {}
        self.agent_id = 0
        self.policy_id: int | None = None
        self.contacts: list[tuple[int, str, str]] = []

    # Words ranked by how often they are drawn; index 0 is the most frequent.
    def common_word(self) -> str:
        return "printer"  # rank ~170 of 5,000: in about 4 % of messages

    def rare_word(self) -> str:
        return self.words[3_000]  # in about 0.2 % of messages

    def text(self, k: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.word_cum, k=k))

    def subject(self) -> str:
        return self.text(self.rng.randint(3, 8)).capitalize()

    def contact_rows(self) -> list[dict]:
        rows = []
        for i in range(1, CONTACTS + 1):
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            email = f"{first}.{last}{i}@{self.rng.choice(DOMAINS)}"
            created = self.now - timedelta(days=self.rng.uniform(0, 900))
            rows.append(
                {"id": i, "email": email, "name": f"{first.title()} {last.title()}",
                 "created_at": created, "bouncing_since": None, "last_acknowledged_at": None}
            )  # fmt: skip
            self.contacts.append((i, email, f"{first.title()} {last.title()}"))
        return rows

    def _message(self, ticket: dict, kind: str, at: datetime, *, html: bool = False) -> dict:
        self.message_id += 1
        contact = ticket["_contact"]
        queue_address = ticket["_queue_address"]
        if kind == "inbound":
            sender, name, to = contact[1], contact[2], [queue_address]
            author, contact_id = None, contact[0]
        else:
            sender, name, to = queue_address, "Support", [contact[1]] if kind == "outbound" else []
            author, contact_id = ticket["assignee_id"] or self.agent_id, None
        body = self.text(self.rng.randint(30, 120))
        body = "\n\n".join(body[i : i + 300] for i in range(0, len(body), 300))
        html_body = ""
        if html:
            body += "\n\nOn Monday someone wrote:\n> " + self.text(40)
            html_body = (
                f"<p>{body[:400]}</p><blockquote>{self.text(40)}</blockquote>"
                '<p><img src="https://tracker.example/p.gif"></p>'
            )
        subject = ticket["subject"] if kind != "outbound" else f"Re: {ticket['subject']}"
        return {
            "id": self.message_id, "ticket_id": ticket["id"], "raw_mail_id": None, "kind": kind,
            "message_id": f"<bench.{self.message_id}.{self.rng.getrandbits(32):x}@example.com>",
            "in_reply_to": "", "references_header": "", "from_address": sender,
            "from_name": name, "to_addresses": to, "cc_addresses": [], "reply_to": "",
            "subject": subject, "sent_at": at, "text_body": body, "html_body": html_body,
            "flags": [], "also_addressed": [], "contact_id": contact_id, "author_id": author,
            "created_at": at,
        }  # fmt: skip

    def _outbox(self, message: dict) -> dict:
        self.outbox_id += 1
        return {
            "id": self.outbox_id, "ticket_id": message["ticket_id"],
            "message_id": message["id"], "purpose": "reply",
            "mail_from": message["from_address"], "rcpt_tos": message["to_addresses"],
            "state": "sent", "attempts": 1, "next_attempt_at": message["created_at"],
            "last_error": "", "created_at": message["created_at"],
            "sent_at": message["created_at"], "content": b"(bench)",
        }  # fmt: skip

    def _sla(self, ticket: dict) -> dict:
        """Clocks as ``helpdesk.sla.service.refresh`` would leave them (default policy)."""
        rng, created, status = self.rng, ticket["created_at"], ticket["status"]
        answered = status != "new" and rng.random() < 0.9
        first_at = created + timedelta(minutes=rng.uniform(5, 400)) if answered else None
        first_due, resolution_due = created + timedelta(hours=4), created + timedelta(hours=24)
        due_at = next_check = None
        if status in ("resolved", "closed"):
            breached = rng.random() < 0.15
            state = "breached" if breached else "met"
        elif status == "pending":
            breached, state = False, "paused"
        else:
            state = rng.choices(("running", "due_soon", "breached"), (70, 10, 20))[0]
            breached = state == "breached"
            if breached:
                due_at = min(resolution_due, self.now - timedelta(minutes=5))
            else:
                hours = rng.uniform(0, 1) if state == "due_soon" else rng.uniform(1, 20)
                due_at = next_check = self.now + timedelta(hours=hours)
            resolution_due = due_at
        return {
            "ticket_id": ticket["id"], "policy_id": self.policy_id, "state": state,
            "breached": breached, "first_response_at": first_at,
            "first_response_due": first_due,
            "first_response_minutes": rng.uniform(5, 400) if first_at else None,
            "first_response_breached_at": first_due if breached and not first_at else None,
            "next_response_due": None, "next_response_breached_at": None,
            "next_response_answered": 0, "resolution_due": resolution_due,
            "resolution_minutes": None,
            "resolution_breached_at": resolution_due if breached else None,
            "resolved_at": ticket["resolved_at"], "paused_minutes": 0.0, "due_at": due_at,
            "next_check_at": next_check, "escalations": [], "computed_at": ticket["updated_at"],
        }  # fmt: skip

    def batches(self) -> Iterator[dict[str, list[dict]]]:
        rng = self.rng
        queue_names, queue_weights = _weights(QUEUE_SHARE)
        statuses, status_weights = _weights(STATUS_SHARE)
        priorities, priority_weights = _weights(PRIORITY_SHARE)
        for start in range(1, self.n + 1, BATCH):
            out: dict[str, list[dict]] = {
                "tickets": [], "messages": [], "tags": [], "outbox": [], "slas": []
            }  # fmt: skip
            events: list[dict] = []
            for tid in range(start, min(start + BATCH, self.n + 1)):
                queue = rng.choices(queue_names, queue_weights)[0]
                queue_id = self.queue_ids[queue]
                status = rng.choices(statuses, status_weights)[0]
                if tid == self.big_ticket:
                    queue, queue_id, status = "help-desk", self.queue_ids["help-desk"], "open"
                age = rng.uniform(0, 60 if status in ACTIVE else 730)
                created = self.now - timedelta(days=age)
                updated = min(self.now, created + timedelta(hours=rng.uniform(0, 24 * 10)))
                assigned = rng.random() < (0.2 if status == "new" else 0.9)
                contact = self.contacts[
                    rng.choices(range(CONTACTS), cum_weights=self.contact_cum)[0]
                ]
                merged = None
                if status == "closed" and tid > 100 and rng.random() < 0.006:
                    merged = rng.randint(1, tid - 1)
                ticket = {
                    "id": tid, "number": tid, "queue_id": queue_id, "status": status,
                    "priority": rng.choices(priorities, priority_weights)[0],
                    "requester_id": contact[0],
                    "assignee_id": rng.choice(self.agents_by_queue[queue_id]) if assigned else None,
                    "subject": self.subject(), "created_at": created, "updated_at": updated,
                    "resolved_at": updated if status in ("resolved", "closed") else None,
                    "closed_at": updated if status == "closed" else None,
                    "merged_into_id": merged, "follow_up_of_id": None,
                    "_contact": contact, "_queue_address": f"{queue}@{MAIL_DOMAIN}",
                }  # fmt: skip
                out["tickets"].append(ticket)
                out["slas"].append(self._sla(ticket))
                out["messages"].append(self._message(ticket, "inbound", created))
                if tid == self.big_ticket:
                    self._big_thread(ticket, out, events)
                elif rng.random() < 0.10:
                    reply = self._message(ticket, "outbound", updated)
                    out["messages"].append(reply)
                    out["outbox"].append(self._outbox(reply))
                count = rng.choices((0, 1, 2, 3), (40, 35, 18, 7))[0]
                chosen = set(rng.choices(range(TAGS), cum_weights=self.tag_cum, k=count))
                out["tags"].extend({"ticket_id": tid, "tag_id": t + 1} for t in chosen)
            for row in out["tickets"]:
                row.pop("_contact")
                row.pop("_queue_address")
            out["events"] = events
            yield out

    def _big_thread(self, ticket: dict, out: dict[str, list[dict]], events: list[dict]) -> None:
        ticket["assignee_id"] = self.agent_id
        at = ticket["created_at"]
        for i in range(1, BIG_THREAD):
            at = min(self.now, at + timedelta(minutes=self.rng.randint(5, 600)))
            kind = "note" if i % 5 == 0 else ("outbound" if i % 2 else "inbound")
            message = self._message(ticket, kind, at, html=i % 2 == 0)
            out["messages"].append(message)
            if kind == "outbound":
                out["outbox"].append(self._outbox(message))
        ticket["updated_at"] = at
        for i in range(15):
            events.append(
                {"ticket_id": ticket["id"], "actor_id": self.agent_id,
                 "kind": ("status", "priority", "tags", "reply", "note")[i % 5],
                 "old_value": "open", "new_value": "pending",
                 "created_at": ticket["created_at"] + timedelta(minutes=i)}
            )  # fmt: skip


def bulk_insert(conn, table, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    """SQLite: Core ``insert()`` with executemany (the FTS triggers fire per row).
    PostgreSQL: ``COPY ... FROM STDIN`` through psycopg (the GIN index is kept by the server)."""
    if conn.dialect.name == "sqlite":
        conn.execute(insert(table), rows)
        return
    from psycopg.types.json import Json
    from sqlalchemy import JSON

    columns = [c for c in table.columns if c.name in rows[0]]
    json = [isinstance(c.type, JSON) for c in columns]
    names = ", ".join(f'"{c.name}"' for c in columns)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [
                    Json(row[c.name]) if j else row[c.name]
                    for c, j in zip(columns, json, strict=True)
                ]
            )
    cursor.close()


def populate(engine: Engine, tickets: int, *, sqlite_analyze: bool, with_indexes: bool) -> Plan:
    """Fill a migrated, seeded database; returns what the pages need."""
    now = utcnow()
    writes = db.session_factory(engine, write=True)
    with writes() as session, session.begin():
        queue_ids = {q.slug: q.id for q in session.scalars(select(Queue))}
        users.add_or_update(
            session, AGENT, role="agent", queue_slugs=list(queue_ids), password=PASSWORD,
            name="Bench Agent", now=now,
        )  # fmt: skip
        agent_id = session.scalar(select(User.id).where(User.email == AGENT))
    gen = Generator(tickets, now, queue_ids)
    gen.agent_id = agent_id
    with engine.connect() as conn:
        gen.policy_id = conn.scalar(select(SlaPolicy.id).order_by(SlaPolicy.position).limit(1))
    slugs = [slug for slug, _ in QUEUE_SHARE]
    agent_rows, membership = [], []
    for i in range(24):
        home = slugs[i % 3]
        member_of = {home} | ({slugs[(i + 1) % 3]} if i % 4 == 0 else set())
        agent_rows.append(
            {"id": agent_id + 1 + i, "email": f"agent{i:02d}@{MAIL_DOMAIN}",
             "name": f"{FIRST[i].title()} Agent", "role": "agent", "password_hash": "",
             "active": True, "created_at": now, "notify_new_ticket": True,
             "notify_assigned": True, "notify_customer_reply": True}
        )  # fmt: skip
        membership += [{"user_id": agent_id + 1 + i, "queue_id": queue_ids[s]} for s in member_of]
    for queue_id in queue_ids.values():
        members = [m["user_id"] for m in membership if m["queue_id"] == queue_id]
        gen.agents_by_queue[queue_id] = [*members, agent_id]
    contacts = gen.contact_rows()
    with engine.begin() as conn:
        conn.execute(insert(User.__table__), agent_rows)
        conn.execute(insert(user_queues), membership)
        conn.execute(insert(Contact.__table__), contacts)
        conn.execute(
            insert(Tag.__table__), [{"id": i + 1, "name": n} for i, n in enumerate(gen.tag_names)]
        )
    tag_uses: dict[int, int] = {}
    messages = 0
    tables = (
        ("tickets", Ticket.__table__), ("messages", Message.__table__), ("tags", ticket_tags),
        ("slas", TicketSla.__table__), ("outbox", OutboxMail.__table__),
        ("events", TicketEvent.__table__),
    )  # fmt: skip
    for batch in gen.batches():
        with engine.begin() as conn:
            for key, table in tables:
                if batch[key]:
                    bulk_insert(conn, table, batch[key])
        messages += len(batch["messages"])
        for row in batch["tags"]:
            tag_uses[row["tag_id"]] = tag_uses.get(row["tag_id"], 0) + 1
    with engine.begin() as conn:
        conn.execute(update(Counter).where(Counter.name == "ticket_number").values(value=tickets))
        if not db.is_sqlite(engine):
            for table in ("users", "contacts", "tags", "tickets", "messages", "outbox",
                          "ticket_events"):  # fmt: skip
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    if with_indexes:
        with engine.begin() as conn:
            for statement in RECOMMENDED_INDEXES[engine.dialect.name]:
                conn.exec_driver_sql(statement)
    if db.is_sqlite(engine):
        if sqlite_analyze:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    check_search_index(engine, gen)
    top_tag = max(tag_uses, key=lambda t: tag_uses[t])
    return Plan(
        tickets=tickets,
        messages=messages,
        big_ticket=gen.big_ticket,
        top_tag=gen.tag_names[top_tag - 1],
        common_word=gen.common_word(),
        rare_word=gen.rare_word(),
    )


def check_search_index(engine: Engine, gen: Generator) -> None:
    """The generated messages must be in the full-text index (not just in the table)."""
    word = gen.common_word()
    with engine.connect() as conn:
        if db.is_sqlite(engine):
            indexed = conn.scalar(
                text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :w"), {"w": word}
            )
        else:
            from helpdesk.tickets.search import PG_DOCUMENT

            indexed = conn.scalar(
                text(f"SELECT count(*) FROM messages WHERE {PG_DOCUMENT} @@ "
                     "phraseto_tsquery('simple', :w)"),
                {"w": word},
            )  # fmt: skip
        total = conn.scalar(select(func.count()).select_from(Message.__table__))
    if not indexed:
        raise SystemExit(f"full-text index finds no message with {word!r} ({total} messages)")


# --- measuring --------------------------------------------------------------


def csrf_token(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        rb'name="csrf_token" value="([^"]+)"', page
    )
    if not match:
        raise SystemExit("no CSRF token on the sign-in page")
    return match.group(1).decode()


def pages(plan: Plan) -> list[tuple[str, str]]:
    return [
        ("queue list", "/queues/help-desk"),
        ("my tickets", "/views/mine"),
        ("everything", "/views/all"),
        ("filtered list", f"/views/all?status=open&priority=high&tag={plan.top_tag}"),
        (f"ticket, {BIG_THREAD} msgs", f"/tickets/{plan.big_ticket}"),
        ("search, common word", f"/search?q={plan.common_word}&status=any"),
        ("search, rare word", f"/search?q={plan.rare_word}&status=any"),
    ]


TOTAL_RE = re.compile(rb"<small>(\d+) tickets?</small>")


def shown(path: str, body: bytes) -> int:
    if path.startswith("/tickets/"):
        return len(re.findall(rb'<div class="message (?:inbound|outbound|note)"', body))
    match = TOTAL_RE.search(body)
    if not match:
        raise SystemExit(f"{path}: no ticket count on the page")
    return int(match.group(1))


def measure(
    engine: Engine, settings: Settings, plan: Plan, requests: int, *, profile: str | None,
    explain: bool,
) -> list[Result]:  # fmt: skip
    from helpdesk.web import create_app

    app = create_app(settings, engine)
    client = app.test_client()
    login = client.get("/login")
    signed = client.post(
        "/login", data={"email": AGENT, "password": PASSWORD, "csrf_token": csrf_token(login.data)}
    )
    if signed.status_code != 302:
        raise SystemExit(f"sign-in failed: {signed.status_code}")
    statements: list[tuple[str, object]] = []

    def count(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", count)
    load_before = os.getloadavg()[0]
    results = []
    try:
        for name, path in pages(plan):
            result = Result(name, path)
            for i in range(WARMUPS + requests):
                statements.clear()
                started = time.perf_counter()
                if profile and i == WARMUPS:
                    profiler = _start_profiler()
                response = client.get(path)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")
                if i == 0:
                    result.rows = shown(path, response.data)
                    if explain:
                        explain_statements(engine, name, list(statements))
                if i >= WARMUPS:
                    result.times.append(elapsed)
                    result.queries = len(statements)
            if profile:
                _stop_profiler(profiler, OUT / f"web-{profile}-{_slug(name)}.txt")
            results.append(result)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    print(f"  load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return results


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _start_profiler():  # type: ignore[no-untyped-def]
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    return profiler


def _stop_profiler(profiler, path: Path) -> None:  # type: ignore[no-untyped-def]
    profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.output_text(unicode=True, show_all=False))
    print(f"  profile: {path.relative_to(ROOT)}", flush=True)


def explain_statements(engine: Engine, page: str, statements: list[tuple[str, object]]) -> None:
    """Print the plan of every SELECT a page ran (SQLite: QUERY PLAN; PostgreSQL: ANALYZE)."""
    print(f"\n=== {page}: {len(statements)} statements", flush=True)
    sqlite = db.is_sqlite(engine)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            print("--", " ".join(statement.split())[:400])
            cursor = raw.cursor()
            if sqlite:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
                for row in cursor.fetchall():
                    print("   ", row[0], row[1], row[3])
            else:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or None)
                for (line,) in cursor.fetchall():
                    print("   ", line)
            cursor.close()
        if not sqlite:
            raw.rollback()


# --- main -------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> Run:
    url = create_database(backend, workdir)
    run = Run(backend, url)
    settings = make_settings(url, workdir / f"instance-{backend}")
    engine = db.make_engine(settings)
    try:
        print(f"[{backend}] migrating and generating {args.tickets:,} tickets ...", flush=True)
        started = time.perf_counter()
        db.upgrade(engine)
        with db.session_factory(engine, write=True)() as session, session.begin():
            bootstrap.seed(session, settings, now=utcnow())
        plan = populate(
            engine, args.tickets, sqlite_analyze=args.sqlite_analyze, with_indexes=args.with_indexes
        )
        run.generation = time.perf_counter() - started
        run.size = database_size(engine)
        print(
            f"[{backend}] {plan.tickets:,} tickets, {plan.messages:,} messages in "
            f"{run.generation:.1f} s, {run.size / 1e6:.0f} MB; measuring ...",
            flush=True,
        )
        run.results = measure(
            engine, settings, plan, args.requests,
            profile=backend if args.profile else None, explain=args.explain,
        )  # fmt: skip
        run.plan = plan
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(url)
    return run


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    plan = runs[0].plan
    assert plan is not None
    print()
    print(
        f"helpdesk web benchmark: {plan.tickets:,} tickets, {plan.messages:,} messages, "
        f"{args.requests} requests per page after {WARMUPS} warm-ups (Flask test client); "
        f"indexes: {'migrations + RECOMMENDED_INDEXES' if args.with_indexes else 'migrations'}"
    )
    print(
        f"search words: common {plan.common_word!r}, rare {plan.rare_word!r}; "
        f"filter tag {plan.top_tag!r}"
    )
    name_w = max(len(r.name) for r in runs[0].results) + 2
    head = f"{'page':<{name_w}}"
    for run in runs:
        head += f"| {run.backend + ' median':>17} {'p95':>8} {'SQL':>4} {'shown':>6} "
    print(head)
    print("-" * len(head))
    for i, result in enumerate(runs[0].results):
        line = f"{result.name:<{name_w}}"
        for run in runs:
            r = run.results[i]
            line += f"| {r.median:>14.1f} ms {r.p95:>5.1f} ms {r.queries:>4} {r.rows:>6} "
        print(line)
    print("-" * len(head))
    line = f"{'generation':<{name_w}}"
    for run in runs:
        line += f"| {run.generation:>16.1f} s {'':>8} {'':>4} {'':>6} "
    print(line)
    line = f"{'database size':<{name_w}}"
    for run in runs:
        line += f"| {run.size / 1e6:>15.0f} MB {'':>8} {'':>4} {'':>6} "
    print(line)
    if args.keep:
        print()
        for run in runs:
            print(f"kept {run.backend}: {run.url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30, help="measured requests per page")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the databases, print URLs")
    parser.add_argument("--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite")
    parser.add_argument(
        "--with-indexes", action="store_true", help="also create RECOMMENDED_INDEXES after loading"
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument, to bench/out")
    parser.add_argument("--explain", action="store_true", help="print query plans per page")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error("--backends takes sqlite, postgresql or both")
    if args.tickets < 100 or args.requests < 1:
        parser.error("--tickets must be at least 100 and --requests at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        runs = [run_backend(backend, args, workdir) for backend in backends]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

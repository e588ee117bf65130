"""SLA report benchmark: one year of tickets, the manager report on PostgreSQL and SQLite.

What it measures
----------------
For each backend (``--backends postgresql,sqlite``) a fresh database is made:
``CREATE DATABASE bench_sla_<random>`` on the PostgreSQL server at
127.0.0.1:5432 (user ``postgres``), or a new SQLite file in a temp dir. Both
are dropped at the end unless ``--keep``. Each is migrated with
``helpdesk.db.upgrade`` and seeded with ``helpdesk.bootstrap.seed`` (queues,
the default calendar in Europe/Berlin and the default SLA policy), as
``helpdesk init`` does, then filled with generated data (same seed on both
backends; only the tables the report reads):

* ``--pg-tickets`` tickets on PostgreSQL (default 1,000,000) and
  ``--sqlite-tickets`` on SQLite (default 100,000), created over the year
  ``--year`` (Europe/Berlin; weekdays five times as busy as weekend days,
  three quarters of them in office hours), numbered in order of creation;
* the three seeded queues (50 / 30 / 20 %), 20 agents (9 / 6 / 5 per queue),
  8 % of tickets unassigned, requesters from 5,000 contacts, 0.3 % of the
  closed tickets merged into an earlier one (the report leaves them out);
* one ``ticket_slas`` row per ticket, with the default policy, as the clocks
  would leave it: a first response for about 96 % (log-normal wall delay,
  median an hour; business minutes a random 30-100 % of it), resolved for
  about 83 % (median 16 wall hours, business minutes 20-45 % of it; the
  others wait on the customer (paused) or stay open), breach times where the
  business minutes pass the targets (4 h first response, 24 h resolution)
  and for open tickets left too long, next responses answered on 45 % of
  tickets and breached on about 8 % of those. About 20 % of the tickets end
  up with some breach (the printed summary gives the exact shares).

Rows are built in Python in batches of 50,000 tickets and written with
``COPY ... FROM STDIN`` (psycopg ``cursor.copy``) on PostgreSQL and with the
driver's ``executemany`` in one transaction per batch on SQLite (values go
through the columns' own SQLAlchemy bind processors, so they are stored
exactly as the app stores them). PostgreSQL then gets ``VACUUM ANALYZE``
(what autovacuum does soon after a bulk load); SQLite gets no ``ANALYZE``,
as the app never runs it. Generation time and database size are printed.

Method
------
``helpdesk.sla.report.build(session, ReportQuery(start, end, bucket,
timezone="Europe/Berlin"))`` for the whole year (totals, per queue, per
agent, trend, breaches), in a new session each time, for: all queues; one
queue (help-desk, the largest); one agent (the first help-desk agent),
each with weekly and with monthly buckets. Each is run once to warm up and
then ``--runs`` times (default 3); the table shows the minimum and the
median wall time of ``build()``, the median CPU time it took in this
process ("client": all of it on SQLite; on PostgreSQL, reading the rows)
and in the PostgreSQL backend ("server", read from /proc for the backend's
pid, since the server runs on this machine; parallel workers not counted),
the SQL statements it ran, and the tickets created in the period and the
breaches it found. The figures CSV (``figures_csv``) of each report is
timed the same way. The 1-minute load average before and after is printed:
on a shared machine, wall time follows the load, CPU time much less.

``--index TABLE:COL[,COL]`` (repeatable) creates an extra index by hand
after loading (never a migration), to measure what it changes.
``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the distinct statements
of the first scenario on PostgreSQL (EXPLAIN QUERY PLAN on SQLite);
``--profile`` runs pyinstrument around one build per scenario and writes
``bench/out/sla-report-<backend>-<scenario>.txt``.

``--verify`` checks, before timing, that ``build()`` gives the same report
as the brute-force reference ``build_from_rows(ticket_rows(...))``
(``bench/sla_reference.py``) for every scenario and for partial periods (day
buckets, a period starting and ending mid-bucket, across the October DST
change, one queue and agent together); integers must be equal, percentiles
and percentages equal within 1e-9 (PostgreSQL's percentile_cont interpolates
in float8 in its own order of operations). The reference is slow in Python:
verify on small databases.

How to run (from the repository root)::

    .venv/bin/python bench/sla_report.py --pg-tickets 20000 --sqlite-tickets 20000 --verify
    .venv/bin/python bench/sla_report.py --pg-tickets 50000 --sqlite-tickets 20000
    .venv/bin/python bench/sla_report.py                  # 1,000,000 / 100,000: the goal, < 2 s
    .venv/bin/python bench/sla_report.py --backends postgresql --index tickets:created_at
    .venv/bin/python bench/sla_report.py --keep            # keep the databases, print URLs

``--figures FILE`` writes every figure of every report ``--verify`` would check
(the figures CSV at full float precision, and the count and SHA-256 of the
breach rows) to ``FILE``, one section per backend and query, to compare the
figures of two versions of the code on the same generated data (the data is
the same in every run: a fixed seed)::

    .venv/bin/python bench/sla_report.py --runs 0 --figures /tmp/before.txt
    # ... change the report code ...
    .venv/bin/python bench/sla_report.py --runs 0 --figures /tmp/after.txt
    diff /tmp/before.txt /tmp/after.txt && echo identical

``--keep`` keeps the databases and prints their URLs (drop the PostgreSQL one
yourself: ``psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE "bench_sla_..."'``).
Other load on the machine distorts the figures: run twice and compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sla_reference import build_from_rows  # noqa: E402

from helpdesk import bootstrap, db  # noqa: E402
from helpdesk.models import (  # noqa: E402
    Contact,
    Counter,
    Queue,
    SlaPolicy,
    Ticket,
    TicketSla,
    User,
    user_queues,
)
from helpdesk.settings import Settings  # noqa: E402
from helpdesk.sla import report as sla_report  # noqa: E402
from helpdesk.sla.report import Figures, Report, ReportQuery  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OUT = ROOT / "bench" / "out"
MAIL_DOMAIN = "example.com"
SECRET = "bench-secret-key-not-for-production"
TIMEZONE = "Europe/Berlin"
SEED = 20261126
BATCH = 50_000
CONTACTS = 5_000
WARMUPS = 1
# (queue, share of tickets in %, agents)
QUEUES = (("help-desk", 50, 9), ("service-desk", 30, 6), ("tech-support", 20, 5))
FIRST_RESPONSE_TARGET = 4 * 60  # business minutes, the seeded default policy
RESOLUTION_TARGET = 24 * 60
SUBJECTS = (
    "Printer offline", "Cannot log in", "VPN drops every hour", "Invoice question",
    "Laptop battery", "Password reset", "New starter account", "Mailbox full",
    "Refund request", "Licence renewal", "Wi-Fi in meeting room", "Monitor flickers",
)  # fmt: skip

TICKET_COLUMNS = (
    "id", "number", "queue_id", "status", "priority", "requester_id", "assignee_id",
    "subject", "created_at", "updated_at", "resolved_at", "closed_at", "merged_into_id",
    "follow_up_of_id",
)  # fmt: skip
SLA_COLUMNS = (
    "ticket_id", "policy_id", "state", "breached", "first_response_at", "first_response_due",
    "first_response_minutes", "first_response_breached_at", "next_response_due",
    "next_response_breached_at", "next_response_answered", "resolution_due",
    "resolution_minutes", "resolution_breached_at", "resolved_at", "paused_minutes",
    "due_at", "next_check_at", "escalations", "computed_at",
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    name: str
    bucket: str
    queue: str | None = None
    agent: str | None = None


@dataclass
class Timing:
    scenario: Scenario
    times: list[float] = field(default_factory=list)
    csv_times: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)  # this process (SQLite: all of it)
    server_cpu: list[float] = field(default_factory=list)  # the PostgreSQL backend
    statements: int = 0
    created: int = 0
    breaches: int = 0
    trend: int = 0

    @staticmethod
    def _ms(values: list[float]) -> tuple[float, float]:
        return min(values) * 1000, statistics.median(values) * 1000


@dataclass
class Stats:
    tickets: int = 0
    slas: int = 0
    resolved: int = 0
    answered: int = 0
    breached: int = 0
    merged: int = 0


@dataclass
class Run:
    backend: str
    url: str
    requested: int
    generation: float = 0.0
    size: int = 0
    stats: Stats = field(default_factory=Stats)
    timings: list[Timing] = field(default_factory=list)
    verified: int | None = None
    indexes: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after timing


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
        return f"sqlite:///{workdir / 'bench-sla.db'}"
    name = f"bench_sla_{uuid.uuid4().hex[:10]}"
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
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
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
        timezone=TIMEZONE,
    )


def year_bounds(year: int) -> tuple[datetime, datetime]:
    zone = ZoneInfo(TIMEZONE)
    return (
        datetime(year, 1, 1, tzinfo=zone).astimezone(UTC),
        datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC),
    )


# --- data -------------------------------------------------------------------


class Generator:
    """Deterministic tickets and their SLA rows over one year, in batches of tuples."""

    def __init__(self, tickets: int, year: int, queue_agents: dict[int, list[int]]) -> None:
        self.rng = random.Random(SEED)
        self.n = tickets
        self.start, self.end = year_bounds(year)
        # The data is read two weeks after the year: some tickets resolved after it.
        self.now = self.end + timedelta(days=14)
        self.queue_agents = queue_agents
        self.policy_id: int | None = None
        self.stats = Stats()

    def created_times(self) -> list[float]:
        """``n`` creation times (epoch seconds), sorted: busier on weekdays and office hours."""
        rng, zone = self.rng, ZoneInfo(TIMEZONE)
        days: list[tuple[float, float]] = []  # (local midnight as epoch, length in seconds)
        day = self.start.astimezone(zone).date()
        weights: list[float] = []
        for _ in range(367):  # bounded: one year of days
            lo = datetime.combine(day, datetime.min.time(), zone).timestamp()
            hi = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).timestamp()
            if lo >= self.end.timestamp():
                break
            days.append((lo, hi - lo))
            weights.append(1.0 if day.weekday() < 5 else 0.2)
            day += timedelta(days=1)
        cum, total = [], 0.0
        for w in weights:
            total += w
            cum.append(total)
        chosen = rng.choices(days, cum_weights=cum, k=self.n)
        out = []
        for lo, length in chosen:
            if rng.random() < 0.75:
                offset = rng.uniform(8 * 3600, 18 * 3600)
            else:
                offset = rng.uniform(0, length)
            out.append(lo + min(offset, length - 1))
        out.sort()
        return out

    def batches(self) -> Iterator[tuple[list[tuple], list[tuple]]]:
        rng, now = self.rng, self.now
        times = self.created_times()
        queue_ids = list(self.queue_agents)
        queue_cum = []
        total = 0
        for (_, share, _), _qid in zip(QUEUES, queue_ids, strict=True):
            total += share
            queue_cum.append(total)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        now_ts = now.timestamp()
        for first in range(0, self.n, BATCH):
            tickets: list[tuple] = []
            slas: list[tuple] = []
            for index in range(first, min(first + BATCH, self.n)):
                tid = index + 1
                ts = times[index]
                created = epoch + timedelta(seconds=ts)
                queue_id = rng.choices(queue_ids, cum_weights=queue_cum)[0]
                assignee = rng.choice(self.queue_agents[queue_id]) if rng.random() > 0.08 else None
                r = rng.random()
                priority = (
                    "low" if r < 0.2 else "normal" if r < 0.8 else "high" if r < 0.95 else "urgent"
                )
                # First response: wall delay, and the business minutes inside it.
                fr_at = fr_minutes = fr_breached = None
                if rng.random() < 0.96:
                    wall = min(rng.lognormvariate(math.log(60), 1.0), 60 * 24 * 20)
                    if ts + wall * 60 < now_ts:
                        fr_at = created + timedelta(minutes=wall)
                        fr_minutes = round(wall * rng.uniform(0.3, 1.0), 2)
                        if fr_minutes > FIRST_RESPONSE_TARGET:
                            at = wall * FIRST_RESPONSE_TARGET / fr_minutes
                            fr_breached = created + timedelta(minutes=at)
                if fr_at is None and now_ts - ts > 3 * 86400:
                    fr_breached = created + timedelta(minutes=FIRST_RESPONSE_TARGET / 0.4)
                # Resolution.
                resolved_at = res_minutes = res_breached = None
                pending = False
                if rng.random() < 0.86 and fr_at is not None:
                    wall = rng.lognormvariate(math.log(16 * 60), 1.0)
                    at_ts = max(ts + wall * 60, fr_at.timestamp() + 60)
                    if at_ts < now_ts:
                        resolved_at = epoch + timedelta(seconds=at_ts)
                        wall = (at_ts - ts) / 60
                        res_minutes = round(wall * rng.uniform(0.2, 0.45), 2)
                        if res_minutes > RESOLUTION_TARGET:
                            at = wall * RESOLUTION_TARGET / res_minutes
                            res_breached = created + timedelta(minutes=at)
                if resolved_at is None:
                    pending = rng.random() < 0.7  # waiting on the customer: paused
                    if not pending and (now_ts - ts) / 60 * 0.33 > RESOLUTION_TARGET:
                        res_breached = created + timedelta(minutes=RESOLUTION_TARGET / 0.33)
                # Next responses (after each further customer message).
                r = rng.random()
                answered = 0 if r < 0.55 else 1 if r < 0.8 else 2 if r < 0.92 else 3
                nr_breached = None
                if answered and fr_at is not None and rng.random() < 0.08:
                    nr_breached = fr_at + timedelta(hours=rng.uniform(5, 72))
                breached = bool(fr_breached or res_breached or nr_breached)
                if resolved_at is not None:
                    closed = resolved_at < now - timedelta(days=7)
                    status = "closed" if closed else "resolved"
                    state = "breached" if breached else "met"
                    updated = resolved_at
                else:
                    closed = False
                    status = "pending" if pending else ("open" if fr_at else "new")
                    state = "paused" if pending else ("breached" if breached else "running")
                    updated = fr_at or created
                merged = None
                if closed and tid > 100 and rng.random() < 0.003:
                    merged = rng.randint(1, tid - 1)
                    self.stats.merged += 1
                fr_due = created + timedelta(hours=rng.uniform(4, 60))
                res_due = created + timedelta(hours=rng.uniform(24, 120))
                running = state in ("running", "breached") and resolved_at is None
                tickets.append(
                    (tid, tid, queue_id, status, priority, rng.randint(1, CONTACTS), assignee,
                     SUBJECTS[tid % len(SUBJECTS)], created, updated, resolved_at,
                     resolved_at if closed else None, merged, None)
                )  # fmt: skip
                slas.append(
                    (tid, self.policy_id, state, breached, fr_at, fr_due, fr_minutes,
                     fr_breached, None, nr_breached, answered, res_due, res_minutes,
                     res_breached, resolved_at, 0.0, res_due if running else None,
                     res_due if running else None, [], updated)
                )  # fmt: skip
                self.stats.resolved += resolved_at is not None
                self.stats.answered += fr_at is not None
                self.stats.breached += breached
            yield tickets, slas


def write_rows(conn, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: COPY FROM STDIN (psycopg). SQLite: the driver's executemany, with the
    columns' SQLAlchemy bind processors applied (stored exactly as the app stores them)."""
    names = ", ".join(columns)
    if conn.dialect.name != "sqlite":
        json_at = [i for i, c in enumerate(columns) if c == "escalations"]
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                if json_at:
                    row = list(row)
                    for i in json_at:
                        row[i] = json.dumps(row[i])
                copy.write_row(row)
        cursor.close()
        return
    sa_table = {"tickets": Ticket.__table__, "ticket_slas": TicketSla.__table__}[table]
    processors: list[Callable | None] = [
        sa_table.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for c in columns
    ]
    prepared = [
        tuple(v if p is None or v is None else p(v) for v, p in zip(row, processors, strict=True))
        for row in rows
    ]
    marks = ", ".join("?" for _ in columns)
    cursor = conn.connection.driver_connection.cursor()
    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", prepared)
    cursor.close()


def populate(engine: Engine, tickets: int, year: int) -> tuple[Stats, str]:
    """Agents, contacts, tickets and clocks; returns the counts and the scenario agent."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        queue_ids = {
            slug: qid for slug, qid in conn.execute(select(Queue.slug, Queue.id).order_by(Queue.id))
        }
        policy_id = conn.scalar(select(SlaPolicy.id).order_by(SlaPolicy.position).limit(1))
        next_user = int(conn.scalar(select(func.coalesce(func.max(User.id), 0))) or 0) + 1
    agents, membership, queue_agents = [], [], {}
    for slug, _share, count in QUEUES:
        members = []
        for i in range(count):
            uid = next_user
            next_user += 1
            agents.append(
                {"id": uid, "email": f"{slug}-agent{i + 1:02d}@{MAIL_DOMAIN}",
                 "name": f"{slug} agent {i + 1}", "role": "agent", "password_hash": "",
                 "active": True, "created_at": now, "notify_new_ticket": True,
                 "notify_assigned": True, "notify_customer_reply": True}
            )  # fmt: skip
            membership.append({"user_id": uid, "queue_id": queue_ids[slug]})
            members.append(uid)
        queue_agents[queue_ids[slug]] = members
    contacts = [
        {"id": i, "email": f"customer{i}@customer.example", "name": f"Customer {i}",
         "created_at": now, "bouncing_since": None, "last_acknowledged_at": None}
        for i in range(1, CONTACTS + 1)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(User.__table__), agents)
        conn.execute(insert(user_queues), membership)
        conn.execute(insert(Contact.__table__), contacts)
    gen = Generator(tickets, year, queue_agents)
    gen.policy_id = policy_id
    done = 0
    for ticket_rows, sla_rows in gen.batches():
        with engine.begin() as conn:
            write_rows(conn, "tickets", TICKET_COLUMNS, ticket_rows)
            write_rows(conn, "ticket_slas", SLA_COLUMNS, sla_rows)
        done += len(ticket_rows)
        if done % 200_000 == 0:
            print(f"  {done:,} tickets ...", flush=True)
    with engine.begin() as conn:
        conn.execute(update(Counter).where(Counter.name == "ticket_number").values(value=tickets))
        if not db.is_sqlite(engine):
            for table in ("users", "contacts", "tickets"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    if not db.is_sqlite(engine):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    stats = gen.stats
    with engine.connect() as conn:
        stats.tickets = int(conn.scalar(select(func.count()).select_from(Ticket)) or 0)
        stats.slas = int(conn.scalar(select(func.count()).select_from(TicketSla)) or 0)
    return stats, agents[0]["email"]


def add_indexes(engine: Engine, specs: list[str]) -> list[str]:
    """Extra indexes by hand (``table:col[,col]``), to measure them; returns their names."""
    names = []
    for spec in specs:
        table, _, cols = spec.partition(":")
        columns = [c.strip() for c in cols.split(",") if c.strip()]
        if table not in ("tickets", "ticket_slas") or not columns:
            raise SystemExit(f"--index {spec!r}: expected tickets:col[,col] or ticket_slas:...")
        name = f"bench_ix_{table}_{'_'.join(columns)}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})")
        names.append(f"{table}({', '.join(columns)})")
    if names and not db.is_sqlite(engine):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return names


# --- verifying --------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def _diff_figures(where: str, got: Figures, want: Figures, out: list[str]) -> None:
    for (name, a), b in zip(asdict(got).items(), asdict(want).values(), strict=True):
        if not _same(a, b):
            out.append(f"{where}.{name}: build() {a!r} != reference {b!r}")


def compare(got: Report, want: Report) -> list[str]:
    out: list[str] = []
    _diff_figures("totals", got.totals, want.totals, out)
    for label, g, w in (("by_queue", got.by_queue, want.by_queue),
                        ("by_agent", got.by_agent, want.by_agent)):  # fmt: skip
        if list(g) != list(w):
            out.append(f"{label} keys: build() {list(g)} != reference {list(w)}")
        for key in sorted(set(g) & set(w)):
            _diff_figures(f"{label}[{key}]", g[key], w[key], out)
    if [d for d, _ in got.trend] != [d for d, _ in want.trend]:
        out.append("trend buckets differ")
    for (day, g_fig), (_, w_fig) in zip(got.trend, want.trend, strict=False):
        _diff_figures(f"trend[{day}]", g_fig, w_fig, out)
    if [asdict(r) for r in got.breaches] != [asdict(r) for r in want.breaches]:
        out.append(f"breaches: build() {len(got.breaches)} rows != reference {len(want.breaches)}")
    return out


def verify_queries(scenarios: list[Scenario], year: int) -> list[ReportQuery]:
    start, end = year_bounds(year)
    zone = ZoneInfo(TIMEZONE)
    queries = [
        ReportQuery(start, end, s.queue, s.agent, s.bucket, TIMEZONE) for s in scenarios
    ]  # fmt: skip
    mid_start = datetime(year, 3, 15, 10, 30, tzinfo=zone).astimezone(UTC)
    mid_end = datetime(year, 5, 20, 16, 0, tzinfo=zone).astimezone(UTC)
    dst_start = datetime(year, 10, 1, tzinfo=zone).astimezone(UTC)
    dst_end = datetime(year, 11, 15, tzinfo=zone).astimezone(UTC)
    agent = next((s.agent for s in scenarios if s.agent), None)
    queries += [
        ReportQuery(mid_start, mid_end, bucket="day", timezone=TIMEZONE),
        ReportQuery(mid_start, mid_end, bucket="week", timezone=TIMEZONE),
        ReportQuery(mid_start, mid_end, bucket="month", timezone="UTC"),
        ReportQuery(dst_start, dst_end, bucket="day", timezone=TIMEZONE),
        ReportQuery(dst_start, dst_end, "help-desk", agent, "week", "America/New_York"),
        ReportQuery(start, end + timedelta(days=14), "tech-support", bucket="month",
                    timezone=TIMEZONE),
    ]  # fmt: skip
    return queries


def verify(engine: Engine, queries: list[ReportQuery]) -> int:
    """build() against the brute-force reference; exits on the first difference."""
    for query in queries:
        with Session(engine) as session:
            got = sla_report.build(session, query)
            want = build_from_rows(sla_report.ticket_rows(session, query), query)
        problems = compare(got, want)
        zone = ZoneInfo(query.timezone)
        label = (
            f"{query.start.astimezone(zone):%Y-%m-%d %H:%M}..{query.end.astimezone(zone):%Y-%m-%d}"
            f" {query.bucket} {query.timezone}"
        )
        label += f" queue={query.queue or '-'} agent={query.agent or '-'}"
        if problems:
            print(f"  VERIFY FAILED for {label}:", *problems[:20], sep="\n    ", flush=True)
            raise SystemExit(1)
        print(
            f"  verified {label}: created {want.totals.created:,}, "
            f"{len(want.trend)} buckets, {len(want.breaches):,} breaches",
            flush=True,
        )
    return len(queries)


def write_figures(engine: Engine, backend: str, queries: list[ReportQuery], path: Path) -> None:
    """Every figure of every report in ``queries``, to compare two versions of the code."""
    with path.open("a") as out:
        for query in queries:
            with Session(engine) as session:
                report = sla_report.build(session, query)
            breaches = [repr(sorted(asdict(row).items())) for row in report.breaches]
            digest = hashlib.sha256("\n".join(breaches).encode()).hexdigest()
            out.write(f"== {backend} {query}\n{sla_report.figures_csv(report)}")
            out.write(f"breaches: {len(breaches)} sha256 {digest}\n")
    print(f"  figures of {len(queries)} reports written to {path}", flush=True)


# --- measuring --------------------------------------------------------------


def scenarios_for(agent: str) -> list[Scenario]:
    out = []
    for bucket in ("week", "month"):
        out += [
            Scenario(f"all queues, {bucket}", bucket),
            Scenario(f"queue help-desk, {bucket}", bucket, queue="help-desk"),
            Scenario(f"agent {agent.split('@')[0]}, {bucket}", bucket, agent=agent),
        ]
    return out


def measure(
    engine: Engine, scenarios: list[Scenario], year: int, runs: int, *, backend: str,
    profile: bool, explain: bool,
) -> list[Timing]:  # fmt: skip
    start, end = year_bounds(year)
    statements: list[tuple[str, object]] = []

    def count(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", count)
    results = []
    try:
        for number, scenario in enumerate(scenarios):
            query = ReportQuery(
                start, end, scenario.queue, scenario.agent, scenario.bucket, TIMEZONE
            )
            timing = Timing(scenario)
            for i in range(WARMUPS + runs):
                profiler = _start_profiler() if profile and i == WARMUPS else None
                with Session(engine) as session:
                    server = _server_cpu(session)
                    statements.clear()
                    server_before, cpu_before = server(), time.process_time()
                    started = time.perf_counter()
                    report = sla_report.build(session, query)
                    elapsed = time.perf_counter() - started
                    client_cpu = time.process_time() - cpu_before
                    server_used = server() - server_before
                started = time.perf_counter()
                sla_report.figures_csv(report)
                csv_elapsed = time.perf_counter() - started
                if profiler is not None:
                    slug = "".join(c if c.isalnum() else "-" for c in scenario.name)
                    _stop_profiler(profiler, OUT / f"sla-report-{backend}-{slug}.txt")
                if i == 0:
                    timing.statements = len(statements)
                    timing.created = report.totals.created
                    timing.breaches = len(report.breaches)
                    timing.trend = len(report.trend)
                    if explain and number == 0:
                        explain_statements(engine, scenario.name, list(statements))
                else:
                    timing.times.append(elapsed)
                    timing.csv_times.append(csv_elapsed)
                    timing.client_cpu.append(client_cpu)
                    timing.server_cpu.append(server_used)
            lo, med = Timing._ms(timing.times)
            print(
                f"  {scenario.name:<32} min {lo:8.0f} ms  median {med:8.0f} ms  "
                f"(CPU: client {statistics.median(timing.client_cpu):.2f} s, "
                f"server {statistics.median(timing.server_cpu):.2f} s; "
                f"load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            results.append(timing)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return results


def _server_cpu(session: Session) -> Callable[[], float]:
    """CPU seconds used so far by the session's PostgreSQL backend (from /proc: the server
    runs on this machine); parallel workers are not counted. Always 0 on SQLite."""
    if db.is_sqlite(session.get_bind()):
        return lambda: 0.0
    pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
    path, tick = Path(f"/proc/{pid}/stat"), os.sysconf("SC_CLK_TCK")

    def used() -> float:
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    return used


def _start_profiler():  # type: ignore[no-untyped-def]
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    return profiler


def _stop_profiler(profiler, path: Path) -> None:  # type: ignore[no-untyped-def]
    profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.output_text(unicode=True, show_all=False))
    print(f"  profile: {path.relative_to(ROOT)}", flush=True)


def explain_statements(engine: Engine, name: str, statements: list[tuple[str, object]]) -> None:
    """Plans of the distinct SELECTs one build ran (PostgreSQL: EXPLAIN ANALYZE)."""
    seen: dict[str, int] = {}
    for statement, _ in statements:
        seen[statement] = seen.get(statement, 0) + 1
    print(f"\n=== {name}: {len(statements)} statements, {len(seen)} distinct", flush=True)
    sqlite = db.is_sqlite(engine)
    done: set[str] = set()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in statements:
            if statement in done or not statement.lstrip().upper().startswith("SELECT"):
                continue
            done.add(statement)
            print(f"-- (run {seen[statement]}x)", " ".join(statement.split())[:600])
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
    print(flush=True)


# --- main -------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> Run:
    tickets = args.pg_tickets if backend == "postgresql" else args.sqlite_tickets
    url = create_database(backend, workdir)
    run = Run(backend, url, tickets)
    settings = make_settings(url, workdir / f"instance-{backend}")
    engine = db.make_engine(settings)
    try:
        print(f"[{backend}] migrating and generating {tickets:,} tickets ...", flush=True)
        started = time.perf_counter()
        db.upgrade(engine)
        with db.session_factory(engine, write=True)() as session, session.begin():
            bootstrap.seed(session, settings, now=datetime.now(UTC))
        run.stats, agent = populate(engine, tickets, args.year)
        run.generation = time.perf_counter() - started
        run.indexes = add_indexes(engine, args.index)
        run.size = database_size(engine)
        print(
            f"[{backend}] {run.stats.tickets:,} tickets in {run.generation:.1f} s, "
            f"{run.size / 1e6:.0f} MB" + (f"; extra indexes {run.indexes}" if run.indexes else ""),
            flush=True,
        )
        scenarios = scenarios_for(agent)
        if args.verify:
            run.verified = verify(engine, verify_queries(scenarios, args.year))
        if args.figures:
            write_figures(engine, backend, verify_queries(scenarios, args.year), args.figures)
        if args.runs:
            run.load = (os.getloadavg()[0], 0.0)
            run.timings = measure(
                engine, scenarios, args.year, args.runs, backend=backend,
                profile=args.profile, explain=args.explain,
            )  # fmt: skip
            run.load = (run.load[0], os.getloadavg()[0])
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(url)
    return run


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    print()
    print(
        f"helpdesk SLA report benchmark: year {args.year} ({TIMEZONE}), build() of the whole "
        f"report, {args.runs} runs after {WARMUPS} warm-up; goal < 2 s"
    )
    for run in runs:
        s = run.stats
        print()
        print(
            f"{run.backend}: {s.tickets:,} tickets, {s.slas:,} ticket_slas "
            f"(resolved {_pct(s.resolved, s.tickets)}, first response "
            f"{_pct(s.answered, s.tickets)}, some breach {_pct(s.breached, s.tickets)}, "
            f"merged {s.merged:,}); generated in "
            f"{run.generation:.1f} s; database {run.size / 1e6:.0f} MB"
            + (f"; extra indexes: {', '.join(run.indexes)}" if run.indexes else "")
            + (f"; verified {run.verified} queries" if run.verified else "")
        )
        if not run.timings:
            continue
        print(
            f"load average (1 min) before/after timing: {run.load[0]:.1f} / {run.load[1]:.1f} "
            f"on {os.cpu_count()} CPUs; CPU = median seconds of this process (client) and "
            "of the PostgreSQL backend (server)"
        )
        head = (
            f"{'scenario':<34}| {'build min':>10} {'median':>9} | {'CPU client':>10} "
            f"{'server':>6} | {'CSV min':>8} {'median':>7} "
            f"| {'SQL':>4} {'created':>9} {'breaches':>9} {'buckets':>7} | goal"
        )
        print(head)
        print("-" * len(head))
        for t in run.timings:
            lo, med = Timing._ms(t.times)
            clo, cmed = Timing._ms(t.csv_times)
            client = statistics.median(t.client_cpu)
            server = "-" if run.backend == "sqlite" else f"{statistics.median(t.server_cpu):.1f} s"
            print(
                f"{t.scenario.name:<34}| {lo:>7.0f} ms {med:>6.0f} ms | "
                f"{client:>8.2f} s {server:>6} "
                f"| {clo:>5.1f} ms {cmed:>4.1f} ms | {t.statements:>4} {t.created:>9,} "
                f"{t.breaches:>9,} {t.trend:>7} | {'ok' if med < 2000 else 'MISSED'}"
            )
    if args.keep:
        print()
        for run in runs:
            print(f"kept {run.backend}: {run.url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pg-tickets", type=int, default=1_000_000)
    parser.add_argument("--sqlite-tickets", type=int, default=100_000)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--runs", type=int, default=3, help="measured runs (0: none)")
    parser.add_argument("--verify", action="store_true", help="compare with the reference")
    parser.add_argument(
        "--index", action="append", default=[], metavar="TABLE:COL[,COL]",
        help="create an extra index by hand after loading (repeatable)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the databases, print URLs")
    parser.add_argument("--profile", action="store_true", help="pyinstrument, to bench/out")
    parser.add_argument("--explain", action="store_true", help="query plans of one build")
    parser.add_argument(
        "--figures", type=Path, metavar="FILE", help="write every figure of the checked reports"
    )
    args = parser.parse_args(argv)
    if args.figures:
        args.figures.write_text("")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error("--backends takes postgresql, sqlite or both")
    if min(args.pg_tickets, args.sqlite_tickets) < 1_000 or args.runs < 0:
        parser.error("at least 1,000 tickets per backend, and --runs >= 0")
    if not 2000 <= args.year <= 2100:
        parser.error("--year between 2000 and 2100")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sla-"))
    try:
        runs = [run_backend(backend, args, workdir) for backend in backends]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

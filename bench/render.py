"""Render benchmark: the ticket page's cost against the size of a hostile mail (issue 10 row 3).

What it measures
----------------
The hostile mail of ``tests/hostile_mail.py`` (quoted lines, a long line,
unclosed ``<div>``; about 49 KB at 1x, the issue's 180 KB at 4x) at 1x, 4x
and 16x, each stored as a ticket through intake (``receive``: parse, HTML
sanitised once, applied) on a fresh SQLite database; then for each:

* store: CPU time to parse it (what the worker's parse pool spends once);
* page: CPU time of ``GET /tickets/<n>`` in this process (Flask test client,
  signed in as an agent), the median of ``--runs`` requests, both as the
  page opens (text) and with ``?html=1`` (the stored HTML);
* a reference in the same run: a normal one-paragraph ticket's page.

It prints each figure, the growth against 1x beside the growth of the size,
and whether the page grew no faster than the size (time ratio / size ratio
at most 1.25: a quadratic page would show ~4 at 4x and ~16 at 16x). Times
are CPU seconds of this process (``time.process_time``), so other load on
the machine distorts them less than wall time; the 1-minute load average is
printed beside them. Before this change the 4x page took 10.5 s of wall time.

How to run (from the repository root)::

    .venv/bin/python bench/render.py            # 1x, 4x, 16x
    .venv/bin/python bench/render.py --runs 9 --scales 1,2,4,8,16
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpdesk import bootstrap, db
from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.intake.receive import Envelope, receive
from helpdesk.mail.limits import Limits
from helpdesk.mail.parse import read_message
from helpdesk.settings import Settings
from helpdesk.subscribers import writing_sessions
from helpdesk.web import create_app
from tests.hostile_mail import hostile_mail

NORMAL = (
    b"From: Carol <carol@customer.example>\r\nTo: help-desk@example.com\r\n"
    b"Subject: Printer\r\nMessage-ID: <normal@customer.example>\r\n\r\n"
    b"The printer on floor 3 jams on every second page.\r\n"
)
LINEAR = 1.25


def cpu(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    """Median CPU seconds of ``fn()`` over ``runs`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="bench-render-"))
    settings = Settings.load(
        environ={}, instance_path=folder, dotenv_path=None,
        database_url=f"sqlite:///{folder / 'helpdesk.db'}", secret_key="bench-render",
        parse_workers=0,
    )  # fmt: skip
    engine = db.make_engine(settings)
    db.upgrade(engine)
    sessions = writing_sessions(engine, settings)
    with sessions() as session, session.begin():
        bootstrap.seed(session, settings, now=utcnow())
        users.add_or_update(
            session, "agent@example.com", role="agent", queue_slugs=["help-desk"],
            password="password123", now=utcnow(),
        )  # fmt: skip

    mails = {"normal": NORMAL} | {f"{s}x": hostile_mail(s, message_id=f"<h{s}@x>") for s in scales}
    numbers: dict[str, int] = {}
    store: dict[str, float] = {}
    limits = Limits.from_settings(settings)
    for name, raw in mails.items():
        store[name] = cpu(lambda raw=raw: read_message(raw, limits), max(1, args.runs // 2))
        with sessions() as session, session.begin():
            result = receive(
                session, raw, Envelope("mallory@attacker.example", ("help-desk@example.com",)),
                settings=settings, now=utcnow(),
            )  # fmt: skip
            numbers[name] = result.ticket_number or 0

    client = create_app(settings, engine).test_client()
    page = client.get("/login").data
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token is not None
    client.post(
        "/login",
        data={"email": "agent@example.com", "password": "password123", "csrf_token": token[1]},
    )
    load = os.getloadavg()[0]

    def page_time(number: int, query: str = "") -> float:
        def get() -> None:
            response = client.get(f"/tickets/{number}{query}")
            assert response.status_code == 200, response.status_code

        return cpu(get, args.runs)

    pages = {name: page_time(numbers[name]) for name in mails}
    html_pages = {name: page_time(numbers[name], "?html=1") for name in mails}

    print(f"render benchmark: CPU seconds (median of {args.runs}); load average {load:.1f}")
    print(f"reference (normal ticket, {len(NORMAL)} B): page {pages['normal'] * 1000:.1f} ms")
    header = f"{'mail':>6} {'size':>9} {'store':>9} {'page':>9} {'html page':>10}"
    print(header + f" {'size x':>7} {'page x':>7} {'html x':>7}")
    base = f"{scales[0]}x"
    verdicts = []
    for scale in scales:
        name = f"{scale}x"
        size_ratio = len(mails[name]) / len(mails[base])
        page_ratio = pages[name] / pages[base]
        html_ratio = html_pages[name] / html_pages[base]
        print(
            f"{name:>6} {len(mails[name]) / 1024:>7.0f}KB {store[name] * 1000:>7.1f}ms"
            f" {pages[name] * 1000:>7.1f}ms {html_pages[name] * 1000:>8.1f}ms"
            f" {size_ratio:>7.1f} {page_ratio:>7.1f} {html_ratio:>7.1f}"
        )
        if scale != scales[0]:
            verdicts.append(max(page_ratio, html_ratio) / size_ratio)
    worst = max(verdicts) if verdicts else 0.0
    verdict = "yes" if worst <= LINEAR else "NO"
    print(f"grows no faster than the size: {verdict} (worst time/size ratio {worst:.2f})")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.1f}")
    engine.dispose()


if __name__ == "__main__":
    main()

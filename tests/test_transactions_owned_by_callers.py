"""The caller owns the transaction (issue #15, item 6).

Services take a ``Session`` and never commit, roll back, begin or close it:
only the code that made the session does, i.e. the processes' loops and the
web app's request handling (``OWNERS``). A test walks the product's code for
such calls. And a page view writes nothing in the request: the Flask-Login
user loader notes a session's last use for the background recorder instead
of writing it, so a GET is served even while another process holds SQLite's
write lock.
"""

from __future__ import annotations

import ast
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, update

from helpdesk.clock import utcnow
from helpdesk.models import WebSession
from tests.test_web_smoke import sign_in

ROOT = Path(__file__).resolve().parent.parent
# Where sessions are made, and so where their transactions end.
OWNERS = {
    "helpdesk/cli.py",  # commands: one transaction each
    "helpdesk/web/db.py",  # the request's session: commit() for views, closed at teardown
    "helpdesk/scheduler.py",  # the escalation job
    "helpdesk/tickets/presence.py",  # the background recorder of presence and session use
    "helpdesk/intake/applier.py",  # the applier's batches
    "helpdesk/intake/wakeup.py",  # its own connection, watching for commits
    "mailgate/committer.py",  # the gateway's group commits
    "mailgate/outbox_sender.py",  # the outbox worker
    "helpdesk/automation/timed.py",  # the worker's time-rule pass: one transaction per rule
}
ENDING = {"commit", "rollback"}
SESSION_CALLS = {"begin", "close"}  # on something named like a session or connection


def _transaction_calls(path: Path, relative: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = ast.unparse(node.func.value).lower()
        if node.func.attr in ENDING or (
            node.func.attr in SESSION_CALLS and ("session" in receiver or "conn" in receiver)
        ):
            found.append(f"{relative}:{node.lineno}: {ast.unparse(node.func)}()")
    return found


def test_only_the_owners_of_sessions_end_transactions() -> None:
    files = sorted(
        [*ROOT.joinpath("helpdesk").rglob("*.py"), *ROOT.joinpath("mailgate").rglob("*.py")]
    )
    found: list[str] = []
    owners_seen = set()
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        calls = _transaction_calls(path, relative)
        if relative in OWNERS:
            owners_seen.add(relative)
        else:
            found += calls
    assert found == [], "a service ends or starts its caller's transaction:\n" + "\n".join(found)
    assert owners_seen == OWNERS  # the list names real files


def test_the_walk_finds_a_service_that_commits(tmp_path: Path) -> None:
    service = tmp_path / "service.py"
    service.write_text(
        "def close_ticket(session, ticket):\n"
        "    ticket.note = 'x'\n"
        "    session.commit()\n"
        "def undo(db_session):\n"
        "    db_session.rollback()\n"
        "def fresh(session):\n"
        "    with session.begin():\n"
        "        pass\n"
        "def fine(session, parser):\n"
        "    session.flush()\n"
        "    parser.close()\n"
        "    with session.begin_nested():\n"
        "        pass\n"
    )
    assert _transaction_calls(service, "service.py") == [
        "service.py:3: session.commit()",
        "service.py:5: db_session.rollback()",
        "service.py:7: session.begin()",
    ]


def test_a_page_view_writes_nothing_in_the_request(client, make_user, engine) -> None:
    make_user("agent@example.com", "agent", ["help-desk"])
    sign_in(client, "agent@example.com")
    # Last used long ago: the loader would note the use now, were it to write.
    with engine.begin() as conn:
        conn.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(hours=1)))
    request_thread = threading.get_ident()
    writes: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        verb = statement.lstrip().split(None, 1)[0].upper()
        if threading.get_ident() == request_thread and verb in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        for path in ("/views/mine", "/views/unassigned", "/queues/help-desk", "/me"):
            assert client.get(path).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert writes == []

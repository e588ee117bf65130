"""No password, token or session id in any log line of a real server (issue #10,
row 7; Build item 6).

``helpdesk serve`` runs as a subprocess in a fresh working directory, as an
operator starts it (SQLite under ``./instance``, the secret key generated
there). The test uses it as people do and as attackers try: an agent created
with ``user add --password-stdin``, an API token from ``token create``, sign-ins
with wrong passwords (in bracketed spellings) and the right one, the API with
the token and with a forged one, pages, a note, and sign-out. In the middle,
the SQLite database is locked by another process, which used to turn a page
view into a 500 that printed the live session id: every request then must be
answered (never a 500). Afterwards everything ``serve`` printed, on stdout and
stderr, is searched for every secret the test used or saw. The one exception
is by design: the first admin's random password, printed once on stdout when
``serve`` creates the database (an operator must learn it somehow).

The instance folder and its files are checked too: 0700 and 0600.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import subprocess
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from helpdesk import keys
from tests.conftest import start_relay
from tests.test_serve_round_trip import (
    ADMIN_LINE,
    DELIVERY_TIMEOUT,
    START_TIMEOUT,
    Browser,
    Served,
    accepts,
    form_fields,
    helpdesk_command,
    send,
    wait_for,
)

AGENT = "agent@example.com"
RELAY_PASSWORD = "relay-" + secrets.token_urlsafe(16)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    relay = start_relay()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        HELPDESK_SMTP_RELAY=relay.address,
        HELPDESK_SMTP_RELAY_USER="relay-user",
        HELPDESK_SMTP_RELAY_PASSWORD=RELAY_PASSWORD,
        HELPDESK_MAIL_DOMAIN="example.com",
        HELPDESK_DATABASE_TIMEOUT="3",
        PYTHONUNBUFFERED="1",
    )
    running = Served(tmp_path, env, relay)
    try:
        wait_for(
            "the web and SMTP ports",
            lambda: accepts(running.web_port) and accepts(running.smtp_port),
            START_TIMEOUT,
            running.proc,
        )
        yield running
    finally:
        running.terminate()
        relay.controller.stop()  # type: ignore[attr-defined]


def cookie_contents(value: str) -> dict:  # type: ignore[type-arg]
    """What a Flask session cookie carries (signed, not encrypted): read, not verified."""
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(data) if compressed else data)  # type: ignore[no-any-return]


def status_of(request: urllib.request.Request | str, opener=None) -> int:  # type: ignore[no-untyped-def]
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=30) as response:
            return response.status  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def api_status(served: Served, token: str, path: str = "/api/v1/tickets") -> int:
    return status_of(
        urllib.request.Request(served.base_url + path, headers={"Authorization": f"Bearer {token}"})
    )


def page_when_free(browser: Browser, path: str) -> str:
    """GET ``path``; a 503 (the worker was writing at that moment) is asked again."""

    def attempt() -> str | None:
        try:
            return browser.get(path)[2]
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 503:
                raise
            return None

    return wait_for(f"GET {path}", attempt, START_TIMEOUT)  # type: ignore[no-any-return]


def sign_in(browser: Browser, email: str, password: str) -> int:
    _, _, page = browser.get("/login")
    fields = {**form_fields(page, "/login"), "email": email, "password": password}
    return browser.post("/login", fields)[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_secret_in_any_log_line(served: Served) -> None:
    admin = wait_for(
        "the first admin's password", lambda: ADMIN_LINE.search(served.output()), START_TIMEOUT
    )
    admin_password = admin.group(2)
    instance = served.workdir / "instance"
    secret_key = (instance / "secret_key").read_text().strip()

    # Private files, while the server runs (so -wal and -shm exist).
    assert mode(instance) == 0o700
    for name in ("secret_key", "helpdesk.db", "helpdesk.db-wal", "helpdesk.db-shm"):
        assert mode(instance / name) == 0o600, name

    customer = EmailMessage()
    customer["From"] = "Alice <alice@customer.example>"
    customer["To"] = "help-desk@example.com"
    customer["Subject"] = "Printer on fire"
    customer["Message-ID"] = make_msgid(domain="customer.example")
    customer.set_content("It burns.")
    send(served.smtp_port, customer, "help-desk@example.com")

    agent_password = "agent-" + secrets.token_urlsafe(16)
    done = subprocess.run(
        [helpdesk_command(), "user", "add", AGENT, "--role", "agent", "--queue", "help-desk",
         "--password-stdin"],
        input=agent_password + "\n", cwd=served.workdir, env=served.env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = served.cli("token", "create", AGENT).strip().splitlines()[-1]
    forged_token = "hd_" + secrets.token_urlsafe(32)

    # Sign-in: wrong passwords in several spellings, then the right one.
    browser = Browser(served.base_url)
    wrong = ["wrong-" + secrets.token_urlsafe(12) for _ in range(3)]
    assert sign_in(browser, AGENT, wrong[0]) == 401
    assert sign_in(browser, f"<<{AGENT}>>", wrong[1]) == 401
    assert sign_in(browser, "nobody@example.com", wrong[2]) == 401
    assert sign_in(browser, f"Agent <{AGENT.upper()}>", agent_password) == 200
    [cookie] = [c.value for c in browser.cookies if c.name == "helpdesk_session"]
    session_id = cookie_contents(cookie)["_user_id"]
    csrf_token = cookie_contents(cookie)["csrf_token"]
    page = page_when_free(browser, "/tickets/1")
    assert "Printer on fire" in page

    assert api_status(served, token) == 200
    assert api_status(served, forged_token) == 401

    # The database is locked by another process; the session was last seen 2 minutes
    # ago, so the next page view notes that it was used (best effort, not in the request).
    db_path = instance / "helpdesk.db"
    two_minutes_ago = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(sep=" ")
    lock = sqlite3.connect(db_path, isolation_level=None)
    try:
        lock.execute("UPDATE web_sessions SET last_seen_at = ?", (two_minutes_ago,))
        lock.execute("BEGIN IMMEDIATE")
        lock.execute("UPDATE counters SET value = value")
        locked = {
            "page": status_of(served.base_url + "/views/mine", browser.opener),
            "presence": status_of(served.base_url + "/tickets/1/presence?after=0", browser.opener),
            "note": browser.post(
                "/tickets/1/note", {**form_fields(page, "/tickets/1/note"), "body": "x"}
            )[0],
            "api": api_status(served, token),
            "sign-in": sign_in(Browser(served.base_url), AGENT, agent_password),
        }
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert 500 not in locked.values(), locked
    # A GET writes nothing (presence is recorded in the background): served. A POST
    # waits for the write lock, then answers 503.
    assert locked["presence"] == 200 and locked["note"] == 503, locked

    page = page_when_free(browser, "/views/mine")  # still signed in
    assert 'action="/logout"' in page
    assert browser.post("/logout", form_fields(page, "/logout"))[0] == 200
    wait_for(  # the acknowledgement's delivery attempt, with the relay's credentials
        "an outbox delivery attempt",
        lambda: "delivery failed" in served.stderr.read_text(errors="replace"),
        DELIVERY_TIMEOUT,
        served.proc,
    )
    assert served.terminate() == 0

    stdout = served.stdout.read_text(errors="replace")
    stderr = served.stderr.read_text(errors="replace")
    assert "answered 503" in stderr  # the locked database was logged, without secrets
    session_key = keys.derive(secret_key, keys.SESSION)
    found = {
        name: stream
        for name, secret in {
            "agent password": agent_password,
            "wrong password 1": wrong[0],
            "wrong password 2": wrong[1],
            "wrong password 3": wrong[2],
            "API token": token,
            "forged API token": forged_token,
            "session id": session_id,
            "session id hash": hashlib.sha256(session_id.encode()).hexdigest(),
            "session cookie": cookie,
            "CSRF token": csrf_token,
            "secret key": secret_key,
            "session key": session_key.hex(),
            "relay password": RELAY_PASSWORD,
        }.items()
        for stream, text in (("stdout", stdout), ("stderr", stderr))
        if secret in text
    }
    assert found == {}, f"secrets in the logs: {found}\n--- stderr:\n{stderr[-4000:]}"
    # The first admin's password: once, on the line that hands it to the operator.
    assert admin_password not in stderr
    lines = [line for line in stdout.splitlines() if admin_password in line]
    assert len(lines) == 1 and lines[0].startswith("created the first user:"), lines

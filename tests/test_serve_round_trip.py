"""The round trip through ``helpdesk serve``, as an operator runs it: one process, a relay.

``.venv/bin/helpdesk serve`` runs as a subprocess in a fresh working directory
(the embedded default: SQLite under ``./instance``, created on first start),
with ``HELPDESK_SMTP_RELAY`` pointing at an aiosmtpd sink started by the test.
A customer's mail goes in over SMTP; the worker inside ``serve`` delivers the
acknowledgement to the sink; the customer's answer, built from the
acknowledgement's headers as a mail client builds it, goes in and must land
in the same ticket without a second acknowledgement. The JSON API (with a
token from the ``helpdesk token create`` CLI) and the web app (signed in over
plain HTTP with the first admin's password that ``serve`` printed) must both
show it. An agent's reply sent through the web form then serves as a barrier:
the worker sends in queue order, so once that reply reaches the sink,
anything queued before it (such as a second acknowledgement) would have
arrived too. Finally ``serve`` must stop cleanly on SIGTERM.

SQLite only by design (it is what ``serve`` creates on first start), so it
uses none of the backend-parametrised fixtures.
"""

from __future__ import annotations

import email
import http.cookiejar
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Relay, free_port, start_relay

HOST = "127.0.0.1"
QUEUE_ADDRESS = "help-desk@example.com"
CUSTOMER = "alice@customer.example"
SUBJECT = "Printer on fire"
START_TIMEOUT = 60.0  # seconds for `serve` to create its database and listen
DELIVERY_TIMEOUT = 30.0  # seconds for the worker (polling every second) to deliver
STOP_TIMEOUT = 30.0  # seconds for `serve` to exit after SIGTERM
ADMIN_LINE = re.compile(r"created the first user: (\S+) with password (\S+)")


def helpdesk_command() -> str:
    """The ``helpdesk`` console script of the venv running the tests."""
    script = Path(sys.executable).with_name("helpdesk")
    if script.is_file():
        return str(script)
    found = shutil.which("helpdesk")
    assert found, "the helpdesk console script is not installed"
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc=None) -> Any:  # type: ignore[no-untyped-def]
    """Poll ``check`` until it returns something truthy (bounded); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"helpdesk serve exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


class Served:
    """``helpdesk serve`` running in ``workdir``, and what it printed."""

    def __init__(self, workdir: Path, env: dict[str, str], relay: Relay) -> None:
        self.workdir = workdir
        self.env = env
        self.relay = relay
        self.web_port = free_port()
        self.smtp_port = free_port()
        self.stdout = workdir / "serve.stdout"
        self.stderr = workdir / "serve.stderr"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    helpdesk_command(), "serve",
                    "--web", f"{HOST}:{self.web_port}", "--smtp", f"{HOST}:{self.smtp_port}",
                ],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )  # fmt: skip

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.web_port}"

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")[-8000:]

    def cli(self, *args: str) -> str:
        """Run another ``helpdesk`` command in the same working directory and environment."""
        done = subprocess.run(
            [helpdesk_command(), *args], cwd=self.workdir, env=self.env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"helpdesk {' '.join(args)}: {done.stderr}"
        return done.stdout

    def terminate(self) -> int | None:
        """SIGTERM, a bounded wait, then SIGKILL; returns the exit status after SIGTERM
        (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    relay = start_relay()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        HELPDESK_SMTP_RELAY=relay.address,
        HELPDESK_MAIL_DOMAIN="example.com",
        PYTHONUNBUFFERED="1",  # the first admin's password is read from stdout while it runs
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
        # Shown by pytest only when the test failed.
        print(f"--- helpdesk serve stdout:\n{running.output()}\n--- stderr:\n{running.logs()}")


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def sink_mails(relay: Relay) -> list[tuple[list[str], EmailMessage]]:
    return [(rcpts, parsed(data)) for _, rcpts, data in list(relay.messages)]


def to_customer(relay: Relay) -> list[EmailMessage]:
    """What the relay got for the customer (each addressed to the customer alone)."""
    mails = [(rcpts, m) for rcpts, m in sink_mails(relay) if CUSTOMER in rcpts]
    assert all(rcpts == [CUSTOMER] for rcpts, _ in mails)
    return [m for _, m in mails]


def send(port: int, msg: EmailMessage, rcpt: str) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as smtp:
        refused = smtp.send_message(msg, from_addr=CUSTOMER, to_addrs=[rcpt])
    assert refused == {}


def api(served: Served, token: str, path: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        served.base_url + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.load(response)


class FormFields(HTMLParser):
    """The input fields of the first form whose action ends with ``action_suffix``."""

    def __init__(self, action_suffix: str) -> None:
        super().__init__()
        self.action_suffix = action_suffix
        self.inside = False
        self.found = False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.found:
            self.inside = values.get("action", "").split("?")[0].endswith(self.action_suffix)
            self.found = self.inside
        elif (
            tag == "input"
            and self.inside
            and values.get("name")
            and values.get("type") not in ("checkbox", "file", "submit")
        ):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def form_fields(page: str, action_suffix: str) -> dict[str, str]:
    parser = FormFields(action_suffix)
    parser.feed(page)
    assert parser.found, f"no form posting to …{action_suffix} on the page"
    return parser.fields


class Browser:
    """A plain HTTP client with a cookie jar (urllib), as far as signing in needs."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, final URL, body) after redirects."""
        with self.opener.open(self.base_url + path, timeout=30) as response:
            return response.status, response.url, response.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(fields).encode()
        try:
            with self.opener.open(self.base_url + path, data=data, timeout=30) as response:
                return response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.url, exc.read().decode(errors="replace")


def test_round_trip_through_helpdesk_serve(served: Served) -> None:
    relay = served.relay
    admin = wait_for(
        "the first admin's password on stdout",
        lambda: ADMIN_LINE.search(served.output()),
        START_TIMEOUT,
        served.proc,
    )
    admin_email, admin_password = admin.group(1), admin.group(2)
    assert admin_email == "admin@example.com"

    # 1. A customer writes to the help desk.
    first = EmailMessage()
    first["From"] = f"Alice Example <{CUSTOMER}>"
    first["To"] = QUEUE_ADDRESS
    first["Subject"] = SUBJECT
    first["Message-ID"] = make_msgid(domain="customer.example")
    first.set_content("The printer in room 4 is on fire.")
    send(served.smtp_port, first, QUEUE_ADDRESS)

    # 2. The worker inside `serve` delivers the acknowledgement to the relay (and the
    # new-ticket notification to the admin, who is an agent of every queue).
    wait_for(
        "the acknowledgement at the relay",
        lambda: to_customer(relay),
        DELIVERY_TIMEOUT,
        served.proc,
    )
    [ack] = to_customer(relay)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == first["Message-ID"]
    assert "[HD#1]" in ack["Subject"] and SUBJECT in ack["Subject"]
    ack_id = ack["Message-ID"]
    assert ack_id and ack_id.endswith("@example.com>")

    # 3. The customer answers the acknowledgement, as a mail client would.
    reply_to = parseaddr(ack["Reply-To"] or ack["From"])[1]
    assert reply_to == QUEUE_ADDRESS
    answer = EmailMessage()
    answer["From"] = f"Alice Example <{CUSTOMER}>"
    answer["To"] = reply_to
    answer["Subject"] = "Re: " + ack["Subject"]
    answer["Message-ID"] = make_msgid(domain="customer.example")
    answer["In-Reply-To"] = ack_id
    answer["References"] = " ".join([*str(ack["References"] or "").split(), ack_id])
    answer.set_content("It is still burning. Please hurry.")
    send(served.smtp_port, answer, reply_to)

    # 4. The JSON API: one ticket holding inbound, outbound, inbound (250 came after commit).
    token = served.cli("token", "create", admin_email).strip().splitlines()[-1]
    listing = api(served, token, "/api/v1/tickets")
    assert listing["total"] == 1, listing
    [summary] = listing["tickets"]
    assert summary["number"] == 1 and summary["subject"] == SUBJECT
    ticket = api(served, token, "/api/v1/tickets/1")
    assert [m["kind"] for m in ticket["messages"]] == ["inbound", "outbound", "inbound"]
    inbound, outbound, answered = ticket["messages"]
    assert inbound["message_id"] == first["Message-ID"]
    assert outbound["message_id"] == ack_id and "acknowledgement" in outbound["flags"]
    assert outbound["delivery"]["state"] == "sent"
    assert answered["message_id"] == answer["Message-ID"]

    # 5. The web app: sign in with the printed password, open the ticket.
    browser = Browser(served.base_url)
    status, _, page = browser.get("/login")
    assert status == 200
    login_fields = form_fields(page, "/login")
    assert login_fields.get("csrf_token")
    status, url, page = browser.post(
        "/login",
        {
            "csrf_token": login_fields["csrf_token"],
            "email": admin_email,
            "password": admin_password,
        },
    )
    assert status == 200 and not urllib.parse.urlsplit(url).path.startswith("/login"), page[:500]
    status, url, page = browser.get("/tickets/1")
    assert status == 200 and urllib.parse.urlsplit(url).path == "/tickets/1"
    assert SUBJECT in page
    assert "It is still burning." in page

    # 6. An agent's reply through the web form. The worker sends in queue order, so
    # once it reaches the relay, a second acknowledgement (queued earlier) would have too.
    fields = form_fields(page, "/tickets/1/reply")
    fields["body"] = "Evacuate the room; we are on our way."
    status, _, page = browser.post("/tickets/1/reply", fields)
    assert status == 200, page[:300]
    wait_for(
        "the agent's reply at the relay",
        lambda: len(to_customer(relay)) >= 2,
        DELIVERY_TIMEOUT,
        served.proc,
    )
    delivered = to_customer(relay)
    assert [m["Auto-Submitted"] for m in delivered] == ["auto-replied", None]
    agent_reply = delivered[1]
    assert agent_reply["In-Reply-To"] == answer["Message-ID"]
    assert ack_id in str(agent_reply["References"])
    assert "Evacuate the room" in agent_reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Everything else the relay got went to the admin (agent notifications), not to the customer.
    others = [(rcpts, m["Subject"]) for rcpts, m in sink_mails(relay) if CUSTOMER not in rcpts]
    assert all(rcpts == [admin_email] for rcpts, _ in others), others
    ticket = api(served, token, "/api/v1/tickets/1")
    kinds = [m["kind"] for m in ticket["messages"]]
    assert kinds == ["inbound", "outbound", "inbound", "outbound"]
    assert api(served, token, "/api/v1/tickets")["total"] == 1

    # 7. SIGTERM stops everything cleanly.
    assert served.terminate() == 0, served.logs()

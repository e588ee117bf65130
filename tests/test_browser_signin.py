"""Sign-in and sessions in a real browser (issue #10, rows 4 and 7; Build item 5).

Headless chromium against the web app served by waitress, on SQLite and on
PostgreSQL: an account throttled by failures typed in several spellings stays
throttled for the right password; a site configured for HTTPS hands out a
``__Host-`` Secure cookie that the browser keeps and sends back (chromium
treats 127.0.0.1 as a secure origin, as it does localhost); an admin's password
change signs the agent out of their browser; and a page requested while the
database is locked is a "busy" page with 503, never a 500.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from helpdesk import db
from helpdesk.settings import Settings
from tests.conftest import free_port

pytest_plugins = ["tests.browser_support"]
pytestmark = pytest.mark.slow

AGENT = "agent@example.com"
ADMIN = "admin@example.com"
PASSWORD = "password123"  # what make_user sets


@contextmanager
def serving(settings: Settings, engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The web app with these settings on a loopback port; yields its base URL."""
    from waitress.server import create_server

    from helpdesk.web import create_app

    port = free_port()
    server = create_server(create_app(settings, engine), host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, name=f"web-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=10)
        thread.join(timeout=10)


@pytest.fixture
def open_browser(browser: Any, screenshots: Path) -> Iterator[Callable[[str, str], Any]]:
    """A fresh browser context on any base URL: ``open_browser(url, "name")``."""
    from tests.browser_support import Agent  # here: the plugin is loaded (and rewritten) first

    opened: list[Agent] = []

    def open_(base_url: str, name: str) -> Agent:
        context = browser.new_context(base_url=base_url, accept_downloads=False)
        opened.append(Agent(context, base_url, screenshots, name))
        return opened[-1]

    yield open_
    for agent in opened:
        agent.context.close()


def submit_login(agent: Any, email: str, password: str) -> int:
    """Fill and send the sign-in form; returns the status of the page that comes back."""
    page = agent.page
    page.goto(agent.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign in").click()
    return navigation.value.status  # type: ignore[no-any-return]


def test_throttled_account_stays_throttled_in_every_spelling(
    live_server, open_agent, make_user
) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    agent = open_agent("attacker")
    # An email field takes no angle brackets; case and spaces it does (the API
    # and form tests cover the bracket forms).
    spellings = [AGENT, AGENT.upper(), "  Agent@Example.com ", "AGENT@example.COM", AGENT]
    for spelling in spellings:
        assert submit_login(agent, spelling, "not-the-password") == 401
        assert agent.page.get_by_text("Wrong email or password.").is_visible()
    assert submit_login(agent, "Agent@EXAMPLE.com", PASSWORD) == 429
    assert agent.page.get_by_text("Too many failed sign-ins").is_visible()
    agent.page.goto(agent.url("/views/mine"))
    assert "/login" in agent.page.url
    assert not agent.guard.problems(), agent.guard


def test_https_site_cookie_is_host_prefixed_and_kept(
    settings, engine, make_user, open_browser
) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    https_settings = replace(settings, base_url="https://help.example.com")
    with serving(https_settings, engine) as url:
        agent = open_browser(url, "agent")
        agent.sign_in(AGENT)  # lands on /views/mine: the browser sent the cookie back
        cookies = {c["name"]: c for c in agent.context.cookies()}
        assert set(cookies) == {"__Host-helpdesk_session"}, cookies
        cookie = cookies["__Host-helpdesk_session"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["path"] == "/"
        assert cookie["domain"] == "127.0.0.1"  # host-only: no Domain attribute
        response = agent.open("/views/mine")
        assert response.status == 200 and "/views/mine" in agent.page.url


def test_password_change_signs_the_agent_out_of_the_browser(
    live_server, open_agent, make_user
) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    make_user(ADMIN, "admin")
    agent, admin = open_agent("agent"), open_agent("admin")
    agent.sign_in(AGENT)
    admin.sign_in(ADMIN)
    admin.open("/admin/users")
    form = admin.page.locator("form.stacked")
    form.get_by_label("Email").fill(AGENT)
    form.get_by_label("Role").select_option("agent")
    form.get_by_label("Queues").select_option("help-desk")
    form.get_by_label("New password").fill("a-brand-new-password")
    admin.click_and_load(form.get_by_role("button", name="Save user"))
    assert admin.page.get_by_text(f"Saved {AGENT}.").is_visible()
    agent.open("/views/mine")
    assert "/login" in agent.page.url  # signed out
    admin.open("/views/mine")
    assert "/views/mine" in admin.page.url  # the admin's own session goes on
    agent.sign_in(AGENT, "a-brand-new-password")
    assert not agent.guard.problems() and not admin.guard.problems()


@contextmanager
def database_locked(settings: Settings) -> Iterator[None]:
    """Hold the database's lock while inside: on SQLite the write lock (as a long
    import or a backup would), on PostgreSQL an exclusive lock on the tables every
    page reads."""
    url = make_url(db.normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE counters SET value = value")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            for table in ("web_sessions", "users", "tickets", "ticket_viewers"):
                conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def test_page_during_a_locked_database_is_busy_not_a_500(
    backend, settings, engine, make_user, open_browser, gateway
) -> None:
    gateway.send(
        b"From: bob@customer.example\r\nTo: help-desk@example.com\r\n"
        b"Subject: Printer on fire\r\nMessage-ID: <lock-1@customer.example>\r\n\r\nHelp!\r\n"
    )
    make_user(AGENT, "agent", ["help-desk"])
    quick = replace(settings, database_timeout=1.0)
    with serving(quick, db.make_engine(quick)) as url:
        agent = open_browser(url, "agent")
        agent.sign_in(AGENT)
        assert agent.open("/tickets/1").status == 200
        with database_locked(settings):
            if backend == "sqlite":
                # GETs write nothing (presence is recorded in the background), and on
                # SQLite a reader is not held up by a writer: served.
                assert agent.open("/tickets/1/presence?after=0").status == 200
                assert agent.open("/tickets/1").status == 200
                # A write waits for the lock, gives up, and says so.
                agent.page.get_by_label("Internal note").fill("Locked out?")
                with agent.page.expect_navigation() as navigation:
                    agent.page.locator("form.note button[type=submit]").click()
                response = navigation.value
            else:
                # The tables every page reads are locked: wait, give up, and say so.
                response = agent.open("/tickets/1/presence?after=0")
            assert response.status == 503, response.status
            assert response.headers.get("retry-after") == "5"
            assert agent.page.get_by_text("The help desk is busy").is_visible()
        response = agent.open("/tickets/1")
        assert response.status == 200
        assert agent.page.get_by_text("Printer on fire").first.is_visible()
        assert not agent.guard.problems(), agent.guard

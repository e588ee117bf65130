"""Browser test support: the real web app served over HTTP on loopback (waitress in
a thread, on the test's database, so on SQLite and PostgreSQL) and Debian's
chromium driven headless by Playwright, fenced in to 127.0.0.1.

Test modules load these fixtures with ``pytest_plugins = ["tests.browser_support"]``.
Without ``/usr/bin/chromium`` (or Playwright) the browser tests skip, unless
``HELPDESK_TEST_REQUIRE_BROWSER=1`` makes that a failure. Screenshots go to
``HELPDESK_TEST_SCREENSHOTS`` when set, else to the test's tmp dir.

Every page an ``Agent`` opens is watched: dialogs (``alert``, ``confirm``),
Content-Security-Policy violations reported on the console, uncaught page
errors, popups, and any request that tried to leave 127.0.0.1 (aborted).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from helpdesk.settings import Settings
from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("HELPDESK_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Belt and braces with the request fence below: no name resolves but loopback.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 15_000
PASSWORD = "password123"  # what the ``make_user`` fixture sets

# What an agent page may hold once loaded: no marker set, no title rewritten,
# and (on our own pages) no script but ours.
STATE_JS = """() => ({
  xss: typeof window.__xss,
  title: document.title,
  url: location.href,
  scripts: Array.from(document.querySelectorAll('script'), s => s.src || '(inline)'),
})"""

# True once tasks queued by the page so far (error events, focus handlers) have run.
SETTLE_JS = (
    """() => new Promise(done => requestAnimationFrame(() => setTimeout(() => done(true))))"""
)


@dataclass
class LiveServer:
    """The web app on a loopback port."""

    url: str
    server: Any


@pytest.fixture
def live_server(settings: Settings, engine) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """``create_app(settings, engine)`` served by waitress on 127.0.0.1:<free port>."""
    from waitress.server import create_server

    from helpdesk.web import create_app

    port = free_port()
    server = create_server(create_app(settings, engine), host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=server.run, name=f"web-{port}", daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{port}", server)
    server.close()
    server.task_dispatcher.shutdown(timeout=10)  # no request still using the database
    thread.join(timeout=10)


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (HELPDESK_TEST_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session; each test gets its own contexts."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} not found: install Debian's chromium (.ci/system-packages)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: ``HELPDESK_TEST_SCREENSHOTS`` or the test's tmp dir."""
    folder = Path(os.environ.get("HELPDESK_TEST_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Guard:
    """What a page did that it should not have: each list should stay empty."""

    dialogs: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    popups: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        return {
            name: values
            for name, values in vars(self).items()
            if values and name != "remote_requests"
        }


class Agent:
    """One browser context (one signed-in agent) with one watched page."""

    def __init__(self, context: Any, base_url: str, screenshots: Path, name: str) -> None:
        self.context = context
        self.base_url = base_url
        self.folder = screenshots
        self.name = name
        self.guard = Guard()
        self.accept_dialogs = False
        context.set_default_timeout(TIMEOUT_MS)
        # Only requests leaving loopback are intercepted (the rest stay fast and cached).
        context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), self._fence)
        self.page = context.new_page()
        self.page.on("popup", lambda popup: self.guard.popups.append(popup.url))
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.guard.page_errors.append(str(error)))

    def _fence(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":  # the pattern should not let these in
            route.continue_()
        else:
            self.guard.remote_requests.append(f"{route.request.resource_type} {url}")
            route.abort("blockedbyclient")

    def _dialog(self, dialog: Any) -> None:
        self.guard.dialogs.append(f"{dialog.type}: {dialog.message} on {self.page.url}")
        if self.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.guard.csp_violations.append(f"{self.page.url}: {message.text}")

    def url(self, path: str) -> str:
        return self.base_url + path

    def open(self, path: str) -> Any:
        """Load ``path``; returns Playwright's response for the main document."""
        response = self.page.goto(self.url(path))
        self.settle()
        return response

    def settle(self) -> None:
        """Let the page run what it queued while loading (bounded by the timeout)."""
        self.page.wait_for_function(SETTLE_JS, timeout=TIMEOUT_MS)

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        """Sign in through the form, as a person would."""
        page = self.page
        page.goto(self.url("/login"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(self.url("/views/mine"))

    def click_and_load(self, locator: Any) -> None:
        """Click something that navigates, and wait until the new page (app.js
        included) has loaded."""
        with self.page.expect_navigation():
            locator.click()

    def screenshot(self, name: str) -> Path:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def state(self) -> dict[str, Any]:
        return self.page.evaluate(STATE_JS)  # type: ignore[no-any-return]


@pytest.fixture
def open_agent(
    browser: Any, live_server: LiveServer, screenshots: Path
) -> Iterator[Callable[..., Agent]]:
    """Open a fresh browser context on the live server: ``open_agent("alice")``."""
    opened: list[Agent] = []

    def open_(name: str = "agent", **context_options: Any) -> Agent:
        context = browser.new_context(
            base_url=live_server.url,
            viewport={"width": 1280, "height": 900},
            accept_downloads=False,  # a download is refused at once; that it was one is enough
            service_workers="block",
            **context_options,
        )
        agent = Agent(context, live_server.url, screenshots, name)
        opened.append(agent)
        return agent

    yield open_
    for agent in opened:
        agent.context.close()

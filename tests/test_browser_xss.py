"""An XSS corpus delivered by email through the real gateway, then read by an
agent in a real browser (chromium headless via Playwright): none may execute.

``tests/corpus/xss/payloads.json`` holds the payloads; each would call
``alert(1)``, set ``window.__xss`` or rewrite ``document.title`` to ``XSS`` if
it ran. Each payload travels in its own mail in five places at once: the
subject, the From display name, the plain body, the HTML body and an
attachment's filename (attachment types rotate through HTML, SVG, PNG, GIF,
octet-stream and text, each with script inside). One more mail carries every
payload in one HTML body. The agent then loads the list pages, each ticket
plainly, with ``?html=1`` and with ``?html=1&images=1`` (the all-in-one also with
``?images=1``), every attachment (the download URL's headers, and the inline URL
in the browser: a raster image or a download), and a search for each payload.

After each load: no dialog, ``window.__xss`` undefined, the title ours, no
script but ``app.js``, the strict CSP header, and in the sanitised HTML only
allowed elements and attributes and only safe URLs. CSP violations on the
console would mean the sanitiser let something through even though CSP held;
they are findings too. Findings are collected and reported together.
"""

from __future__ import annotations

import base64
import json
from email.header import Header
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import select

from helpdesk.models import Message, Ticket

pytest_plugins = ["tests.browser_support"]
pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "corpus" / "xss" / "payloads.json"
PAYLOADS: list[dict[str, str]] = json.loads(CORPUS.read_text(encoding="utf-8"))
POSITIONS = ("subject", "from display name", "plain body", "HTML body", "attachment filename")
SENDER = "mallory@attacker.example"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
ATTACHMENT_KINDS = [
    ("text/html", b"<script>window.__xss=1;alert(1)</script><img src=x onerror=alert(1)>"),
    (
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<script>window.__xss=1</script></svg>",
    ),
    ("image/png", PNG + b"<script>alert(1)</script>"),
    ("image/gif", b"GIF89a<html><script>alert(1)</script>"),
    ("application/octet-stream", b"<!doctype html><script>alert(1)</script>"),
    ("text/plain", b"<script>alert(1)</script>"),
]
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
# "?images=1" alone shows the plain text (only "?html=1" shows the HTML body of
# a mail that has both), so per payload the plain and two HTML views suffice.
HTML_VIEWS = ("?html=1", "?html=1&images=1")
ALL_VIEWS = ("", "?images=1", *HTML_VIEWS)

# The sanitiser's output, checked in the DOM the browser built from it (so
# after any parser mutation): allowed elements and attributes, safe URLs.
# Kept apart from the sanitiser's own lists on purpose: widening those (say, to
# <style>) should make this test fail until someone looks.
SAFE_TAGS = [
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
]  # fmt: skip
SAFE_ATTRIBUTES = [
    "href", "title", "src", "alt", "width", "height", "colspan", "rowspan", "align", "start", "rel",
]  # fmt: skip
THREAD_JS = """([showImages, allowedTags, allowedAttributes]) => {
  const tags = new Set(allowedTags);
  const attributes = new Set(allowedAttributes);
  const bad = [];
  for (const body of document.querySelectorAll('.thread .body.html')) {
    for (const el of body.querySelectorAll('*')) {
      if (el.namespaceURI !== 'http://www.w3.org/1999/xhtml' || !tags.has(el.localName)) {
        bad.push('element <' + el.localName + '>');
      }
      for (const attr of el.attributes) {
        if (!attributes.has(attr.name)) bad.push('attribute ' + el.localName + '@' + attr.name);
      }
    }
    for (const a of body.querySelectorAll('a[href]')) {
      if (!['http:', 'https:', 'mailto:', 'cid:'].includes(a.protocol)) {
        bad.push('link to ' + a.getAttribute('href'));
      }
    }
    for (const img of body.querySelectorAll('img[src]')) {
      const url = new URL(img.src, location.href);
      const ok = url.origin === location.origin || url.protocol === 'data:'
        || (showImages && (url.protocol === 'https:' || url.protocol === 'http:'));
      if (!ok) bad.push('image from ' + img.getAttribute('src'));
    }
  }
  for (const el of document.querySelectorAll(
      'iframe, frame, object, embed, base, meta[http-equiv], link:not([rel=stylesheet])')) {
    bad.push('page holds <' + el.localName + '>');
  }
  return bad;
}"""


def _header_text(value: str) -> str:
    """Raw when plain ASCII (as most senders would), else RFC 2047 encoded words."""
    if value.isascii() and value.isprintable():
        return value
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")


def _display_name(name: str) -> str:
    if name.isascii() and name.isprintable():
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Header(name, "utf-8").encode(linesep="\r\n")


def _filename_param(name: str) -> str:
    """A quoted string when plain ASCII, else RFC 2231 (``filename*=utf-8''...``)."""
    if name.isascii() and name.isprintable():
        return 'filename="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "filename*=utf-8''" + quote(name, safe="")


def _part(headers: str, data: bytes) -> str:
    encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    return f"{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}"


def _mail(
    *, from_: str, subject: str, message_id: str, text: str, html: str, attachment: str = ""
) -> bytes:
    """multipart/mixed(alternative(text, html)[, attachment]), built by hand so that
    any filename (control characters included) can be written."""
    alternative = (
        'Content-Type: multipart/alternative; boundary="=-alt"\r\n\r\n--=-alt\r\n'
        + _part("Content-Type: text/plain; charset=utf-8", text.encode())
        + "--=-alt\r\n"
        + _part("Content-Type: text/html; charset=utf-8", html.encode())
        + "--=-alt--\r\n"
    )
    parts = [alternative] + ([attachment] if attachment else [])
    body = "".join(f"--=-mix\r\n{part}" for part in parts) + "--=-mix--\r\n"
    head = (
        f"From: {from_}\r\nTo: help-desk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="=-mix"\r\n\r\n'
    )
    return (head + body).encode("ascii")


def payload_mail(index: int, payload: str) -> bytes:
    """One mail with the payload in all five positions."""
    content_type, data = ATTACHMENT_KINDS[index % len(ATTACHMENT_KINDS)]
    return _mail(
        from_=f"{_display_name(payload)} <{SENDER}>",
        subject=_header_text(payload),
        message_id=f"<xss-{index}@attacker.example>",
        text=f"Payload {index} in the plain body:\n{payload}\n",
        html=f"<p>Payload {index} in the HTML body:</p>\n{payload}\n",
        attachment=_part(
            f"Content-Type: {content_type}\r\n"
            f"Content-Disposition: attachment; {_filename_param(payload)}",
            data,
        ),
    )


def all_in_one_mail() -> bytes:
    """Every payload in one HTML body (and one plain body), side by side."""
    return _mail(
        from_=f"All Payloads <{SENDER}>",
        subject="Every XSS payload at once",
        message_id="<xss-all@attacker.example>",
        text="\n".join(item["payload"] for item in PAYLOADS) + "\n",
        html="".join(f"<div>{item['payload']}</div>\n" for item in PAYLOADS),
    )


class Inspector:
    """Loads pages as the agent and collects every sign of executed or leaked markup."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.page = agent.page
        self.findings: list[str] = []
        self.server_errors: list[str] = []  # reported, but no XSS finding by themselves
        self.loads = 0

    def _fail(self, where: str, problem: str) -> None:
        self.findings.append(f"{where}: {problem}")

    def _inert(self, where: str, *, ours: bool) -> None:
        if ours:  # attachments come with CSP "sandbox": no script runs there, not even ours
            self.agent.settle()
        state = self.agent.state()
        if state["xss"] != "undefined":
            self._fail(where, f"window.__xss is {state['xss']}")
        if state["title"] == "XSS" or (ours and not state["title"].endswith("· helpdesk")):
            self._fail(where, f"title changed to {state['title']!r}")
        expected = [self.agent.url("/static/app.js")] if ours else []
        if state["scripts"] != expected:
            self._fail(where, f"scripts on the page: {state['scripts']}")

    def _csp(self, where: str, response: Any) -> None:
        policy = response.headers.get("content-security-policy", "")
        directives = {
            part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()
        }
        if directives.get("script-src") != ["'self'"]:
            self._fail(where, f"script-src is {directives.get('script-src')}")
        if "unsafe-inline" in policy or "unsafe-eval" in policy:
            self._fail(where, f"CSP allows unsafe scripts: {policy}")
        if directives.get("object-src") != ["'none'"] or directives.get("base-uri") != ["'none'"]:
            self._fail(where, f"CSP lacks object-src/base-uri 'none': {policy}")

    def app_page(self, path: str, *, expect_status: tuple[int, ...] = (200,)) -> Any:
        """One of our HTML pages: load it, then check headers, state and the thread."""
        self.loads += 1
        remote_before = len(self.agent.guard.remote_requests)
        response = self.agent.open(path)
        if response.status >= 500:  # not ours to render; inert all the same?
            self.server_errors.append(f"{path}: HTTP {response.status}")
            self._inert(path, ours=False)
            return response
        if response.status not in expect_status:
            self._fail(path, f"HTTP {response.status}")
        self._csp(path, response)
        self._inert(path, ours=True)
        show_images = "images=1" in path
        for problem in self.page.evaluate(THREAD_JS, [show_images, SAFE_TAGS, SAFE_ATTRIBUTES]):
            self._fail(path, problem)
        remote = self.agent.guard.remote_requests[remote_before:]
        allowed = [r for r in remote if show_images and r.startswith("image ")]
        if remote != allowed:
            self._fail(path, f"tried to load from outside: {remote}")
        if self.page.url != response.url:
            self._fail(path, f"navigated away to {self.page.url}")
        return response

    def attachment(self, where: str, href: str) -> None:
        """An attachment link: a download always; inline only as a raster image."""
        from playwright.sync_api import Error as PlaywrightError

        request = self.agent.context.request
        download = request.get(self.agent.url(href))
        headers = download.headers
        if not headers.get("content-disposition", "").startswith("attachment"):
            self._fail(where, f"{href} not served as a download: {headers}")
        if headers.get("x-content-type-options") != "nosniff":
            self._fail(where, f"{href} lacks nosniff")
        if "sandbox" not in headers.get("content-security-policy", ""):
            self._fail(where, f"{href} lacks the sandbox CSP")
        inline_url = self.agent.url(href.replace("?download=1", ""))
        inline = request.get(inline_url)
        content_type = inline.headers.get("content-type", "").split(";")[0]
        disposition = inline.headers.get("content-disposition", "")
        if disposition.startswith("inline"):
            if content_type not in INLINE_TYPES:
                self._fail(where, f"{inline_url} inline as {content_type}")
            self.loads += 1
            self.page.goto(inline_url)
            self._inert(f"{where} {inline_url}", ours=False)
        else:
            if content_type != "application/octet-stream":
                self._fail(where, f"{inline_url} downloads as {content_type}")
            self.loads += 1
            try:
                self.page.goto(inline_url)
            except PlaywrightError as exc:
                if "Download is starting" not in exc.message:
                    raise
            else:
                self._fail(where, f"{inline_url} was rendered, not downloaded")


def _tickets(session) -> dict[str, Ticket]:  # type: ignore[no-untyped-def]
    rows = session.execute(
        select(Message.message_id, Ticket).join(Ticket, Message.ticket_id == Ticket.id)
    ).all()
    return {message_id: ticket for message_id, ticket in rows}


def test_the_corpus_is_big_and_varied():
    assert len(PAYLOADS) >= 50
    assert len({item["payload"] for item in PAYLOADS}) == len(PAYLOADS)
    assert all(item["name"] and item["payload"] for item in PAYLOADS)


@pytest.mark.timeout(900)  # some 600 page loads; the app takes ~0.1 s per ticket page
def test_xss_corpus_by_mail_never_executes(gateway, session, make_user, open_agent, capsys):
    from playwright.sync_api import expect

    with gateway.smtp() as smtp:
        for index, item in enumerate(PAYLOADS):
            smtp.sendmail(SENDER, ["help-desk@example.com"], payload_mail(index, item["payload"]))
        smtp.sendmail(SENDER, ["help-desk@example.com"], all_in_one_mail())
    gateway.settle()
    tickets = _tickets(session)
    make_user("agent@example.com", "agent", ["help-desk"])

    agent = open_agent("agent")
    agent.sign_in("agent@example.com")
    inspect = Inspector(agent)

    # Lists: subjects and display names in every row, every page.
    for view in ("/queues/help-desk?status=any", "/views/all", "/views/unassigned"):
        path = view
        while path:
            inspect.app_page(path)
            following = agent.page.locator("nav.pages a[rel=next]")
            path = following.get_attribute("href") if following.count() else None
    agent.screenshot("xss-01-queue-list")

    # Each ticket, in every view, and its attachments.
    expected = {f"<xss-{i}@attacker.example>": item for i, item in enumerate(PAYLOADS)}
    expected["<xss-all@attacker.example>"] = {"name": "every payload", "payload": ""}
    assert set(expected) <= set(tickets), "a payload mail did not become a ticket"
    for message_id, item in expected.items():
        ticket = tickets[message_id]
        where = f"#{ticket.number} ({item['name']})"
        path = f"/tickets/{ticket.number}"
        if message_id == "<xss-all@attacker.example>":
            for view in ALL_VIEWS:
                inspect.app_page(path + view)
            agent.page.goto(agent.url(path + "?html=1"))
            agent.screenshot("xss-03-all-payloads-html")
            continue
        # The plain view: subject, display name, plain body and filenames shown
        # as text, exactly (escaped, neither executed nor lost).
        inspect.app_page(path)
        inbound = next(m for m in ticket.messages if m.message_id == message_id)
        expect(agent.page.locator("h1")).to_contain_text(ticket.subject)
        head = agent.page.locator(f"#m{inbound.id} .message-head strong")
        expect(head).to_have_text(inbound.from_name or inbound.from_address)
        shown = agent.page.locator(f"#m{inbound.id}").text_content() or ""
        for line in inbound.text_body.splitlines():
            if line.strip() not in shown:
                inspect.findings.append(f"{where}: plain body line not shown: {line!r}")
        links = agent.page.locator(f"#m{inbound.id} .attachments a")
        expect(links).to_have_text([a.filename for a in inbound.attachments])
        hrefs = links.evaluate_all("links => links.map(a => a.getAttribute('href'))")
        # The sanitised HTML body, with remote images blocked and allowed.
        for view in HTML_VIEWS:
            inspect.app_page(path + view)
        if message_id == "<xss-0@attacker.example>":
            agent.screenshot("xss-02-script-tag-ticket-html")
        for href in hrefs:
            inspect.attachment(where, href)

    # Reflected: each payload as a search query.
    for item in PAYLOADS:
        query = urlencode({"q": item["payload"], "status": "any"})
        inspect.app_page(f"/search?{query}", expect_status=(200, 400))

    # Chromium's own image viewer styles itself inline, which an attachment's
    # "default-src 'none'" refuses: expected there, and no sign of the sanitiser.
    guard = agent.guard
    in_viewer = [v for v in guard.csp_violations if "/attachments/" in v.split(": ")[0]]
    guard.csp_violations = [v for v in guard.csp_violations if v not in in_viewer]
    with capsys.disabled():
        print(
            f"\nXSS corpus: {len(PAYLOADS)} payloads x {len(POSITIONS)} positions "
            f"+ 1 all-in-one mail; {inspect.loads} loads; "
            f"{len(guard.remote_requests)} remote requests blocked; "
            f"{len(guard.csp_violations)} CSP violations on our pages "
            f"({len(in_viewer)} in the browser's image viewer)"
        )
        for violation in guard.csp_violations[:20]:
            print("  CSP:", violation[:300])
        for request in guard.remote_requests[:20]:
            print("  blocked:", request)
        if inspect.server_errors:
            print(f"  {len(inspect.server_errors)} server errors, e.g.", inspect.server_errors[0])
    problems = inspect.findings + [
        f"{kind}: {value}" for kind, values in guard.problems().items() for value in values
    ]
    assert problems == [], "\n".join(problems[:100])

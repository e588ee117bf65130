"""What an agent sees of a mail body: HTML sanitised with nh3 (remote images
blocked unless asked for, cid: images pointed at our attachment URLs) and
plain text split into the new part and the quoted history.

A page must cost what the mail is worth, linearly. So the work is split:

- ``prepare_html`` runs once, when the message is stored (for received mail
  in the parse step, in its bounded child process): element nesting is cut
  at ``MAX_HTML_DEPTH`` first (a parser's cost per tag grows with the depth
  of open elements, so 30,000 unclosed ``<div>`` made sanitising quadratic),
  then nh3 cleans it. The result is kept (``Message.html_safe``).
- ``present_html`` runs per view on that stored, well-formed HTML: one
  regular-expression pass over its ``<img>`` tags points ``cid:`` images at
  our attachment URLs and blocks remote ones unless asked for.
- ``fold_quotes`` splits plain text in one pass.

The page also caps what it shows (``HELPDESK_MAX_DISPLAY_BODY``); the
original mail stays downloadable in full.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "ol": {"start"},
}
QUOTE_HEADER_RE = re.compile(
    r"^(On .{3,200} wrote:|Am .{3,200} schrieb .{1,200}:|Le .{3,200} a écrit ?:|"
    r"-{2,} ?(Original Message|Ursprüngliche Nachricht|Message d'origine) ?-{2,}|"
    r"From: .+|Von: .+)\s*$",
    re.IGNORECASE,
)


@dataclass
class SafeHtml:
    html: str
    blocked_images: int


def _compact(url: str) -> str:
    """A URL as a browser reads its scheme: without spaces and control characters."""
    return re.sub(r"[\x00-\x20\x7f]+", "", url).lower()


# Elements deeper than this are unwrapped (their content kept) before nh3 parses.
MAX_HTML_DEPTH = 100
VOID_ELEMENTS = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
    "param", "source", "track", "wbr",
})  # fmt: skip
# Up to the next "<" at most: a "<" never closed must not make each later one rescan.
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>")
# A tag as nh3 (html5ever) writes it: attribute values double-quoted, quotes escaped.
_SAFE_IMG_RE = re.compile(r'<img((?:\s+[^\s=>"/]+(?:="[^"]*")?)*)\s*/?>')
_ATTRIBUTE_RE = re.compile(r'\s+([^\s=>"/]+)(?:="([^"]*)")?')


def cap_nesting(html: str, max_depth: int = MAX_HTML_DEPTH) -> str:
    """Drop the tags that would open elements deeper than ``max_depth`` (and their
    closing tags), keeping their content; one pass. Not a sanitiser: nh3 runs after."""
    depth = 0
    dropped: dict[str, int] = {}

    def visit(match: re.Match[str]) -> str:
        nonlocal depth
        closing, name = match.group(1), match.group(2).lower()
        if name in VOID_ELEMENTS or match.group(3).endswith("/"):
            return match.group(0)
        if closing:
            if dropped.get(name):
                dropped[name] -= 1
                return ""
            depth = max(0, depth - 1)
            return match.group(0)
        if depth >= max_depth:
            dropped[name] = dropped.get(name, 0) + 1
            return ""
        depth += 1
        return match.group(0)

    return _TAG_RE.sub(visit, html)


def _keep_image_source(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered.startswith(("cid:", "http://", "https://")):
        return value.strip()
    if lowered.startswith("data:image/") and not lowered.startswith("data:image/svg"):
        return value
    return None  # protocol-relative, javascript:, svg and anything else


def prepare_html(html: str) -> str:
    """Sanitised HTML to store: no scripts, handlers, styles; nesting capped. Image
    sources stay as written (``cid:``, remote, raster ``data:``) for ``present_html``."""

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            return _keep_image_source(value)
        # "data" is an allowed scheme for images only: a data: link opens a
        # document of the sender's making. Browsers ignore spaces and controls.
        if attribute == "href" and _compact(value).startswith("data:"):
            return None
        return value

    return nh3.clean(
        cap_nesting(html),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=attribute_filter,
        strip_comments=True,
    )


def present_html(
    safe: str, *, cid_url: Callable[[str], str | None], show_remote_images: bool = False
) -> SafeHtml:
    """Stored HTML (``prepare_html``) as the page shows it: ``cid:`` images at our
    attachment URLs, remote images blocked unless asked for; one pass."""
    blocked = 0

    def source(value: str) -> str | None:
        nonlocal blocked
        lowered = value.lower()
        if lowered.startswith("cid:"):
            return cid_url(value[4:].strip().strip("<>"))
        if lowered.startswith(("http://", "https://")) and not show_remote_images:
            blocked += 1
            return None
        return value

    def image(match: re.Match[str]) -> str:
        parts = []
        # Attributes one by one, as nh3 wrote them (values quoted, no quote inside).
        for name, value in _ATTRIBUTE_RE.findall(match.group(1)):
            if name.lower() == "src":
                url = source(html_lib.unescape(value))
                if url is None:
                    continue
                value = html_lib.escape(url, quote=True)
            parts.append(f' {name}="{value}"')
        return "<img" + "".join(parts) + ">"

    return SafeHtml(_SAFE_IMG_RE.sub(image, safe), blocked)


def sanitise_html(
    html: str, *, cid_url: Callable[[str], str | None], show_remote_images: bool = False
) -> SafeHtml:
    """HTML safe to put in our page: no scripts, handlers, styles or remote fetches."""
    return present_html(prepare_html(html), cid_url=cid_url, show_remote_images=show_remote_images)


@dataclass
class FoldedText:
    new: str
    quoted: str


def fold_quotes(text: str) -> FoldedText:
    """Split a plain-text body at the start of its quoted history, in one pass: at the
    first quote header ("On ... wrote:"), or at the first line of the trailing run of
    lines that are all quoted (``>``) or blank."""
    lines = text.splitlines()
    # The index of the last line that is neither blank nor quoted: a ">" line after it
    # starts the trailing quote.
    last_plain = -1
    for index in range(len(lines) - 1, -1, -1):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith(">"):
            last_plain = index
            break
    for index, line in enumerate(lines):
        stripped = line.strip()
        if QUOTE_HEADER_RE.match(stripped) or (stripped.startswith(">") and index > last_plain):
            if index == 0:
                break
            return FoldedText("\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]))
    return FoldedText(text.rstrip(), "")

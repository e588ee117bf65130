"""What an agent sees of a mail body: HTML sanitised with nh3 (remote images
blocked unless asked for, cid: images pointed at our attachment URLs) and
plain text split into the new part and the quoted history.
"""

from __future__ import annotations

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


def sanitise_html(
    html: str, *, cid_url: Callable[[str], str | None], show_remote_images: bool = False
) -> SafeHtml:
    """HTML safe to put in our page: no scripts, handlers, styles or remote fetches."""
    blocked = 0

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and attribute == "src":
            lowered = value.strip().lower()
            if lowered.startswith("cid:"):
                return cid_url(value.strip()[4:].strip("<>"))
            if lowered.startswith(("http://", "https://", "//")):
                if show_remote_images and not lowered.startswith("//"):
                    return value
                blocked += 1
                return None
            if lowered.startswith("data:image/") and not lowered.startswith("data:image/svg"):
                return value
            return None
        # "data" is an allowed scheme for images only: a data: link opens a
        # document of the sender's making. Browsers ignore spaces and controls.
        if attribute == "href" and _compact(value).startswith("data:"):
            return None
        return value

    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=attribute_filter,
        strip_comments=True,
    )
    return SafeHtml(cleaned, blocked)


@dataclass
class FoldedText:
    new: str
    quoted: str


def fold_quotes(text: str) -> FoldedText:
    """Split a plain-text body at the start of its quoted history."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if QUOTE_HEADER_RE.match(stripped) or (
            stripped.startswith(">")
            and all(not rest.strip() or rest.lstrip().startswith(">") for rest in lines[index:])
        ):
            if index == 0:
                break
            return FoldedText("\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]))
    return FoldedText(text.rstrip(), "")

"""Composing outgoing mail: templates rendered to text and HTML, threading headers,
and a hard refusal of any header value that carries CR or LF.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import jinja2

from helpdesk.mail.classify import LOOP_HEADER
from helpdesk.resources import resource_dir

_TAG_PREFIXES_RE = re.compile(
    r"^\s*((re|fwd?|aw|wg|sv|vs|antw|r)(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)


class HeaderInjection(ValueError):
    """A header value contained CR or LF; the mail is refused, never passed on."""


@functools.lru_cache(maxsize=4)
def _environment(path: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(path),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, **context: object) -> str:
    """Render ``templates/<template>`` (HTML templates are autoescaped)."""
    return _environment(str(resource_dir("templates"))).get_template(template).render(**context)


def render_for_queue(name: str, queue_slug: str, **context: object) -> str:
    """``templates/email/queues/<slug>/<name>`` if the queue has its own, else ``email/<name>``."""
    own = f"email/queues/{queue_slug}/{name}"
    if (resource_dir("templates") / own).is_file():
        return render(own, **context)
    return render(f"email/{name}", **context)


# RFC 5322 asks for the parent's References plus its Message-ID and leaves
# trimming to us; like news software (RFC 5537 3.4.4) we keep the root and
# the newest ones, which is what clients need to place the message.
MAX_REFERENCES = 20


def thread_references(
    parent_references: str, parent_message_id: str, parent_in_reply_to: str = ""
) -> list[str]:
    """References for a reply (RFC 5322 3.6.4): the parent's References (or,
    lacking them, its single In-Reply-To) plus the parent's Message-ID; at
    most ``MAX_REFERENCES``, the root kept when trimmed."""
    before = parent_references.split()
    if not before and len(parent_in_reply_to.split()) == 1:
        before = parent_in_reply_to.split()
    chain = list(dict.fromkeys(mid for mid in [*before, parent_message_id] if mid))
    if len(chain) <= MAX_REFERENCES:
        return chain
    return [chain[0], *chain[-(MAX_REFERENCES - 1) :]]


def tag(prefix: str, number: int) -> str:
    return f"[{prefix}{number}]"


def tagged_subject(subject: str, prefix: str, number: int) -> str:
    """``[HD#12] original subject``, without Re:/Fwd: prefixes or a second tag.

    A subject holding CR or LF is refused here, before whitespace folding
    could hide it (subjects from mail are already single lines).
    """
    check_header("Subject", subject or "")
    marker = tag(prefix, number)
    core = _TAG_PREFIXES_RE.sub("", subject or "").replace(marker, "").strip()
    core = re.sub(r"\s{2,}", " ", core)
    return f"{marker} {core}".rstrip()


def reply_subject(subject: str, prefix: str, number: int) -> str:
    """``Re: [HD#12] original subject``, without piling up Re:/tags."""
    return f"Re: {tagged_subject(subject, prefix, number)}"


def check_header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection(f"CR or LF in header {name}")
    return value


@dataclass
class Outgoing:
    """Everything needed to build one outgoing message."""

    from_address: str
    from_name: str
    to: list[str]
    subject: str
    message_id: str
    text: str
    html: str = ""
    cc: list[str] = field(default_factory=list)
    reply_to: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    automatic: bool = False
    loop_marker: str = ""
    date: datetime | None = None
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


def build(out: Outgoing) -> EmailMessage:
    """The MIME message; raises HeaderInjection for any CR/LF in a header value."""
    for name, value in (
        ("From", out.from_name),
        ("From", out.from_address),
        ("Subject", out.subject),
        ("Message-ID", out.message_id),
        ("In-Reply-To", out.in_reply_to),
        ("Reply-To", out.reply_to),
        *(("To", a) for a in out.to),
        *(("Cc", a) for a in out.cc),
        *(("References", r) for r in out.references),
    ):
        check_header(name, value)
    msg = EmailMessage()
    local, _, domain = out.from_address.partition("@")
    msg["From"] = Address(display_name=out.from_name, username=local, domain=domain)
    # Every recipient may be a CC (the requester's address bounces): say so.
    msg["To"] = ", ".join(out.to) if out.to else "undisclosed-recipients:;"
    if out.cc:
        msg["Cc"] = ", ".join(out.cc)
    if out.reply_to:
        msg["Reply-To"] = out.reply_to
    msg["Subject"] = out.subject
    msg["Message-ID"] = out.message_id
    if out.date:
        msg["Date"] = format_datetime(out.date)
    if out.in_reply_to:
        msg["In-Reply-To"] = out.in_reply_to
    if out.references:
        msg["References"] = " ".join(out.references)
    if out.automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "auto_reply"
    if out.loop_marker:
        msg[LOOP_HEADER] = out.loop_marker
    msg.set_content(out.text)
    if out.html:
        msg.add_alternative(out.html, subtype="html")
    for filename, content_type, data in out.attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
    return msg

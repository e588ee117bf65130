"""``Authentication-Results`` (RFC 8601): what the MX in front of us found, if we trust it.

Only the header of the host named by ``HELPDESK_TRUSTED_AUTHSERV_ID`` counts,
and only the topmost one carrying that id: an MX prepends its own above
whatever the sender wrote, so a copy further down is the sender's (RFC 8601
section 5 asks the MX to remove such copies; not every one does). Anyone
can write this header, so without a trusted id nothing here is believed.

Parsed leniently but safely: comments (in parentheses) removed, results
split at ``;``, each ``method=result`` with its ``ptype.property=value``
pairs; anything unreadable is skipped, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN_RE = re.compile(r'([A-Za-z0-9._/-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


@dataclass(frozen=True)
class Result:
    """One ``method=result`` with its properties (``header.from``, ``smtp.mailfrom``...)."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    """The trusted host's results, by method (the first result of each method)."""

    authserv_id: str
    results: dict[str, Result]

    def result(self, method: str) -> str:
        found = self.results.get(method)
        return found.result if found else ""

    def dmarc_pass_for(self, domain: str) -> bool:
        """DMARC passed for this From domain."""
        found = self.results.get("dmarc")
        if found is None or found.result != "pass":
            return False
        return found.properties.get("header.from", "").lower() == domain.lower()

    @property
    def failed(self) -> list[str]:
        """The methods among SPF and DMARC that failed (``spf_fail``, ``dmarc_fail`` flags)."""
        return [m for m in ("spf", "dmarc") if self.result(m) == "fail"]


def _strip_comments(value: str) -> str:
    out, depth, quoted, escaped = [], 0, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            continue
        elif not quoted and char == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


def parse(value: str) -> AuthResults | None:
    """One header value; None when it has no authserv-id."""
    parts = _strip_comments(value).split(";")
    head = parts[0].split()
    if not head:
        return None
    results: dict[str, Result] = {}
    for part in parts[1:]:
        pairs = _TOKEN_RE.findall(part)
        if not pairs:
            continue
        method, result = pairs[0]
        method = method.split("/", 1)[0].lower()
        properties = {k.lower(): v.strip('"') for k, v in pairs[1:] if "." in k}
        results.setdefault(method, Result(method, result.lower(), properties))
    return AuthResults(head[0].lower(), results)


def trusted(values: list[str], authserv_id: str) -> AuthResults | None:
    """The results of the topmost header from ``authserv_id`` (None: none, or no id trusted)."""
    if not authserv_id:
        return None
    for value in values:
        parsed = parse(value)
        if parsed is not None and parsed.authserv_id == authserv_id.lower():
            return parsed
    return None

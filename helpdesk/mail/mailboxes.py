"""Strict parsing of address headers (From, To, Cc, Reply-To), as CPython's fix for
CVE-2023-27043 does.

The stdlib's lenient parser reads ``alice@x.example <bob@y.example>`` as two
addresses and ``a@x)<b@y>`` as ``b@y``; code that takes the first (or last)
one can be made to see an address the mail client did not show. The fix
(gh-102988, in CPython 3.11.10 and 3.12.6; ``email.utils.getaddresses(...,
strict=True)``) refuses a value whose parentheses do not balance, whose
address count differs from its commas, or whose address holds a ``[``
outside a domain literal. This module uses the stdlib's strict mode where the
running Python has it and the same checks, ported, where it does not (3.11.7
here).

``from_mailbox`` adds the rule for From: exactly one From header with
exactly one mailbox; anything else is ambiguous, and the caller flags it
(``ambiguous_from``) and matches it to nobody.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator, Sequence
from email._parseaddr import AddressList  # type: ignore[import-not-found]  # getaddresses' parser

_STDLIB_STRICT = getattr(email.utils, "supports_strict_parsing", False)
INVALID: list[tuple[str, str]] = [("", "")]


def _escaped(value: str) -> Iterator[tuple[int, str]]:
    escape = False
    pos = 0
    for pos, char in enumerate(value):
        if escape:
            yield pos, "\\" + char
            escape = False
        elif char == "\\":
            escape = True
        else:
            yield pos, char
    if escape:
        yield pos, "\\"


def _strip_quoted_names(value: str) -> str:
    if '"' not in value:
        return value
    start, opened, parts = 0, None, []
    for pos, char in _escaped(value):
        if char != '"':
            continue
        if opened is None:
            opened = pos
        else:
            if start != opened:
                parts.append(value[start:opened])
            start, opened = pos + 1, None
    if start < len(value):
        parts.append(value[start:])
    return "".join(parts)


def _balanced(value: str) -> bool:
    depth = 0
    for _, char in _escaped(_strip_quoted_names(value)):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def getaddresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """(name, address) pairs of header values; ``[("", "")]`` when any value is malformed."""
    if _STDLIB_STRICT:  # pragma: no cover - a newer Python than this machine's
        return email.utils.getaddresses(list(values), strict=True)
    values = [str(v) if _balanced(str(v)) else "('', '')" for v in values]
    pairs = AddressList(", ".join(values)).addresslist
    pairs = [("", "") if "[" in address else (name, address) for name, address in pairs]
    expected = sum(1 + _strip_quoted_names(v).count(",") for v in values)
    return pairs if len(pairs) == expected else INVALID


def from_mailbox(values: Sequence[str]) -> tuple[str, str] | None:
    """The one (name, address) of the From header values; ``("", "")`` when there is no
    address at all (no From, or one with a name only); None when it is ambiguous:
    several From headers, several mailboxes, or a value the strict parser refuses
    that a lenient reader would take an address from."""
    values = [v for v in values if v.strip()]
    if not values:
        return "", ""
    if len(values) > 1:
        return None
    pairs = [(name, address) for name, address in getaddresses(values) if "@" in address]
    if len(pairs) == 1:
        return pairs[0]
    if not pairs and not any("@" in a for _, a in AddressList(values[0]).addresslist):
        return "", ""  # nothing that looks like an address, even to a lenient reader
    return None

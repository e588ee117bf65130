"""Regular expressions in rule conditions, with a time limit.

Patterns come from admins and are matched against text from strangers (a
subject, a mail body), so a pattern that backtracks catastrophically must not
stall intake. The ``regex`` package matches with a ``timeout`` (it checks the
clock while it backtracks) and raises ``TimeoutError`` past it; the text is
also cut to ``MAX_TEXT`` characters first. A match that times out counts as
no match, and the rule's log says so.
"""

from __future__ import annotations

import functools

import regex

TIMEOUT_SECONDS = 0.02
MAX_PATTERN = 500
MAX_TEXT = 100_000


class PatternError(ValueError):
    """Not a usable pattern; the message is safe to show."""


class PatternTimeout(Exception):
    """The pattern took longer than ``TIMEOUT_SECONDS``."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """Compile once (case-insensitive); ``PatternError`` for a bad or too long one."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"a pattern is at most {MAX_PATTERN} characters")
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error as exc:
        raise PatternError(f"not a valid regular expression: {exc}") from None


def search(pattern: str, text: str, *, timeout: float = TIMEOUT_SECONDS) -> bool:
    """Does the pattern occur in the text? Raises ``PatternTimeout`` past ``timeout``."""
    try:
        return compile_pattern(pattern).search(text[:MAX_TEXT], timeout=timeout) is not None
    except TimeoutError:
        raise PatternTimeout(pattern) from None

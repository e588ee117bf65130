"""Signing in to the web app: password checks with throttling, and server-side
sessions (``accounts.sessions``) that end at once on sign-out or deactivation.

The typed address is normalised once, by ``account_key``, and that one string
is both what the throttle counts and what the account is looked up by: two
spellings of an address can never be two throttles for one account. Failures
are also counted per client address (an IPv6 client per /64, which one host
usually holds whole); behind a proxy the web app supplies the client's address
from a trusted ``X-Forwarded-For`` (``web.proxy``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from helpdesk.accounts import passwords, sessions
from helpdesk.accounts.users import active_by_email, check_password
from helpdesk.models import ApiToken, LoginFailure, User

FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
MAX_ADDRESS_LENGTH = 320  # the users.email and login_failures.email columns
_BRACKETED_RE = re.compile(r"<([^<>]*)>")


class Throttled(Exception):
    """Too many failed sign-ins lately; try again later."""


def account_key(typed: str) -> str:
    """The one form of a typed sign-in address, for the throttle and the lookup alike.

    ``admin@example.com``, `` ADMIN@example.com ``, ``<<admin@example.com>>`` and
    ``Admin <admin@example.com>`` are one account: the address inside the last
    pair of angle brackets (if any), without whitespace, invisible format
    characters or stray brackets, lower-cased, cut to the column's length.
    """
    text = "".join(
        char for char in typed if not char.isspace() and unicodedata.category(char) != "Cf"
    )
    inside = [found for found in _BRACKETED_RE.findall(text) if found]
    if inside:
        text = inside[-1]
    return text.replace("<", "").replace(">", "").lower()[:MAX_ADDRESS_LENGTH]


def client_key(remote_addr: str) -> str:
    """What failures from one client are counted under: its address, or for IPv6
    its /64 network (an IPv4 address mapped into IPv6 counts as itself)."""
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return remote_addr[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def throttled(session: Session, key: str, client: str, *, now: datetime) -> bool:
    """Whether the account ``key`` or the client ``client`` failed too often lately."""
    since = now - FAILURE_WINDOW
    per_account = session.scalar(
        select(func.count()).where(LoginFailure.email == key, LoginFailure.at >= since)
    )
    per_client = session.scalar(
        select(func.count()).where(LoginFailure.remote_addr == client, LoginFailure.at >= since)
    )
    return (per_account or 0) >= MAX_FAILURES_PER_ACCOUNT or (
        per_client or 0
    ) >= MAX_FAILURES_PER_ADDRESS


def sign_in(
    session: Session, email: str, password: str, *, remote_addr: str, now: datetime
) -> tuple[str, User] | None:
    """A new session (its id, for the cookie, and the user) for valid credentials;
    None, and a recorded failure, otherwise. Raises Throttled before any password
    is checked when the account or the client failed too often. A valid password
    whose stored hash is out of date is hashed again (``accounts.passwords``)."""
    key, client = account_key(email), client_key(remote_addr)
    if throttled(session, key, client, now=now):
        raise Throttled()
    user = active_by_email(session, key)
    if user is None or not check_password(user, password):
        session.add(LoginFailure(email=key, remote_addr=client, at=now))
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.email == key))
    if passwords.needs_rehash(user.password_hash):
        # made by an older method or with weaker parameters: store a current one
        user.password_hash = passwords.hash_password(password)
    return sessions.start(session, user, now=now), user


def session_user(session: Session, session_id: str, *, now: datetime) -> User | None:
    """The active user of a live session, refreshing its last use."""
    return sessions.user_of(session, session_id, now=now)


def sign_out(session: Session, session_id: str) -> None:
    sessions.end(session, session_id)


def deactivate(session: Session, user: User) -> None:
    """Deactivate a user: every session and API token stops working now."""
    user.active = False
    sessions.end_all(session, user)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))

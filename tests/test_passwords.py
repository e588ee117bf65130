"""Password hashes without Werkzeug (``accounts.passwords``): hashes Werkzeug made
before still sign in, and sign-in replaces an out-of-date one with a current one.

Werkzeug is only the reference here (Flask brings it to the test environment);
the core no longer imports it (the ``core`` import-linter contract).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from helpdesk import db
from helpdesk.accounts import passwords, signin
from helpdesk.clock import utcnow
from helpdesk.models import User

PASSWORD = "password123"  # what make_user sets


def test_a_new_hash_checks_and_is_current() -> None:
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("scrypt:32768:8:1$")
    assert passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, PASSWORD + "x")
    assert not passwords.needs_rehash(stored)
    assert passwords.hash_password(PASSWORD) != stored  # a new salt each time


@pytest.mark.parametrize(
    "method", ["scrypt", "scrypt:16384:8:1", "pbkdf2:sha256:1000", "pbkdf2:sha512:1000"]
)
def test_hashes_werkzeug_made_still_check(method: str) -> None:
    stored = generate_password_hash(PASSWORD, method=method)
    assert passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, "password124")
    assert passwords.needs_rehash(stored) == (method != "scrypt")


def test_our_hashes_check_with_werkzeug() -> None:
    """Rolling back to a release that still used Werkzeug keeps every password working."""
    assert check_password_hash(passwords.hash_password(PASSWORD), PASSWORD)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "no-dollar",
        "scrypt:32768:8:1$salt",
        "scrypt:32768:8$salt$00",
        "scrypt:x:8:1$salt$00",
        "scrypt:1073741824:8:1$salt$00",  # would take 128 GiB: refused, not tried
        "pbkdf2:md5:1000$salt$00",
        "pbkdf2:sha256:0$salt$00",
        "plain$salt$password123",
    ],
)
def test_malformed_or_unknown_hashes_never_check(stored: str) -> None:
    assert not passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, "00")


def _stored_hash(engine, email: str) -> str:  # type: ignore[no-untyped-def]
    with db.session_factory(engine)() as session:
        return session.scalars(select(User.password_hash).where(User.email == email)).one()


def _sign_in(engine, password: str):  # type: ignore[no-untyped-def]
    with db.session_factory(engine, write=True)() as session, session.begin():
        return signin.sign_in(
            session, "agent@example.com", password, remote_addr="127.0.0.1", now=utcnow()
        )


def test_sign_in_rehashes_an_old_werkzeug_hash(engine, make_user) -> None:
    make_user("agent@example.com", "agent", ["help-desk"])
    old = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    with engine.begin() as conn:
        conn.execute(
            update(User).where(User.email == "agent@example.com").values(password_hash=old)
        )

    assert _sign_in(engine, "wrong-password") is None
    assert _stored_hash(engine, "agent@example.com") == old  # a failed sign-in changes nothing

    assert _sign_in(engine, PASSWORD) is not None
    new = _stored_hash(engine, "agent@example.com")
    assert new != old and not passwords.needs_rehash(new)
    assert passwords.verify(new, PASSWORD)

    assert _sign_in(engine, PASSWORD) is not None  # the new hash signs in, and stays
    assert _stored_hash(engine, "agent@example.com") == new


def test_sign_in_keeps_a_current_hash(engine, make_user) -> None:
    make_user("agent@example.com", "agent", ["help-desk"])
    before = _stored_hash(engine, "agent@example.com")
    assert not passwords.needs_rehash(before)
    assert _sign_in(engine, PASSWORD) is not None
    assert _stored_hash(engine, "agent@example.com") == before

"""Sign-in and sessions, as an attacker tries them (issue #10, row 4 and Build item 5).

One account, one throttle: every spelling of an address (brackets, case,
whitespace, a display name) counts against the same account, and the right
password in any spelling is refused while the account is throttled. Failures
also count per client address, which behind a proxy comes from
``X-Forwarded-For`` only when the peer is in ``HELPDESK_TRUSTED_PROXIES``.
Sessions are stored as hashes, end when the password or role changes (all but
the changer's own), and their cookie is ``__Host-`` and ``Secure`` when the site
is served over HTTPS. Sessions, CSRF tokens and Message-IDs each use their own
key derived from the secret; Message-IDs signed with the old key still verify.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import replace

import pytest
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import inspect, select, text

from helpdesk import db, keys
from helpdesk.accounts import signin, users
from helpdesk.clock import utcnow
from helpdesk.mail.messageid import _signature, make_message_id, verify_message_id
from helpdesk.models import LoginFailure, WebSession
from helpdesk.web import create_app
from helpdesk.web.proxy import client_address
from tests.conftest import SECRET
from tests.test_web_smoke import csrf

AGENT = "agent@example.com"
ADMIN = "admin@example.com"
PASSWORD = "password123"  # what make_user sets
VARIANTS = (
    AGENT,
    f"<{AGENT}>",
    f"<<{AGENT}>>",
    f"  {AGENT.upper()}\t",
    f"Agent Smith <{AGENT}>",
    f'"Agent, Smith" < {AGENT} >',
    f"<<{AGENT}>>>",
    f"\u200b{AGENT}",  # a zero-width space in front
)


def post_login(client, email: str, password: str, **kwargs):  # type: ignore[no-untyped-def]
    token = csrf(client.get("/login", **kwargs).data)
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}, **kwargs
    )


def session_id(client) -> str:  # type: ignore[no-untyped-def]
    with client.session_transaction() as cookie:
        return cookie["_user_id"]


def signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    return client.get("/views/mine").status_code == 200


# --- one key per account ---------------------------------------------------------


@pytest.mark.parametrize("typed", VARIANTS)
def test_every_spelling_is_one_account_key(typed: str) -> None:
    assert signin.account_key(typed) == AGENT


def test_account_key_is_bounded() -> None:
    assert len(signin.account_key("a" * 5000 + "@example.com")) == 320


def test_throttle_counts_every_spelling_against_one_account(client, make_user, session) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    codes = [post_login(client, typed, "wrong-password").status_code for typed in VARIANTS[:5]]
    assert codes == [401] * 5
    session.expire_all()
    assert set(session.scalars(select(LoginFailure.email))) == {AGENT}
    # The right password, in every spelling, is now refused: the account is throttled.
    for typed in VARIANTS:
        assert post_login(client, typed, PASSWORD).status_code == 429, typed
    assert not signed_in(client)


def test_any_spelling_signs_in_when_not_throttled(client, make_user) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    for typed in VARIANTS:
        fresh = client.application.test_client()
        assert post_login(fresh, typed, PASSWORD).status_code == 302, typed
        assert signed_in(fresh)


def test_throttle_per_client_address(client, make_user, session) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    attacker = {"environ_base": {"REMOTE_ADDR": "198.51.100.7"}}
    for n in range(signin.MAX_FAILURES_PER_ADDRESS):
        assert post_login(client, f"guess{n}@example.com", "x", **attacker).status_code == 401
    # That client is refused for every account now, even with the right password...
    assert post_login(client, AGENT, PASSWORD, **attacker).status_code == 429
    # ...and nobody else is.
    other = client.application.test_client()
    assert post_login(other, AGENT, PASSWORD).status_code == 302


def test_ipv6_clients_are_counted_per_64(client, make_user, session) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    for n in range(signin.MAX_FAILURES_PER_ADDRESS):
        host = {"environ_base": {"REMOTE_ADDR": f"2001:db8:1:2::{n + 1:x}"}}
        assert post_login(client, f"guess{n}@example.com", "x", **host).status_code == 401
    neighbour = {"environ_base": {"REMOTE_ADDR": "2001:db8:1:2:ffff::1"}}
    assert post_login(client, AGENT, PASSWORD, **neighbour).status_code == 429
    elsewhere = {"environ_base": {"REMOTE_ADDR": "2001:db8:1:3::1"}}
    assert post_login(client, AGENT, PASSWORD, **elsewhere).status_code == 302
    session.expire_all()
    assert set(session.scalars(select(LoginFailure.remote_addr))) == {"2001:db8:1:2::/64"}


# --- the client's address behind proxies -------------------------------------------


NETS = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "", "203.0.113.9"),  # no header
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer's header
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the left part is the client's
        ("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies
        ("127.0.0.1", "10.9.9.9", "10.9.9.9"),  # only proxies: the farthest one
        ("127.0.0.1", "unknown", "127.0.0.1"),
        ("127.0.0.1", "6.6.6.6, garbage, 10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "[2001:db8::1]", "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: str, client: str) -> None:
    assert client_address(peer, forwarded, NETS) == client


def failures_by_address(session) -> list[str]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return sorted(session.scalars(select(LoginFailure.remote_addr)))


def test_forwarded_for_counts_only_from_a_trusted_proxy(
    settings, engine, make_user, session
) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    spoofed = {"headers": {"X-Forwarded-For": "192.0.2.55"}}
    # Not configured: the header is ignored, the peer is the client.
    plain = create_app(settings, engine).test_client()
    post_login(plain, AGENT, "wrong", **spoofed)
    assert failures_by_address(session) == ["127.0.0.1"]
    # Configured, and the peer (127.0.0.1 in the test client) is trusted.
    proxied = create_app(replace(settings, trusted_proxies="127.0.0.1, 10.0.0.0/8"), engine)
    post_login(proxied.test_client(), AGENT, "wrong", **spoofed)
    assert failures_by_address(session) == ["127.0.0.1", "192.0.2.55"]
    # Configured, but this peer is not a proxy we trust.
    direct = {**spoofed, "environ_base": {"REMOTE_ADDR": "203.0.113.4"}}
    post_login(proxied.test_client(), AGENT, "wrong", **direct)
    assert failures_by_address(session) == ["127.0.0.1", "192.0.2.55", "203.0.113.4"]


def test_many_clients_behind_one_proxy_are_throttled_apart(settings, engine, make_user) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    app = create_app(replace(settings, trusted_proxies="127.0.0.1"), engine)
    client = app.test_client()
    attacker = {"headers": {"X-Forwarded-For": "198.51.100.7"}}
    for n in range(signin.MAX_FAILURES_PER_ADDRESS):
        assert post_login(client, f"guess{n}@example.com", "x", **attacker).status_code == 401
    assert post_login(client, AGENT, PASSWORD, **attacker).status_code == 429
    colleague = {"headers": {"X-Forwarded-For": "198.51.100.8"}}
    assert post_login(app.test_client(), AGENT, PASSWORD, **colleague).status_code == 302


def test_a_stolen_cookie_does_not_travel_with_a_forged_forwarded_for(
    settings, engine, make_user
) -> None:
    """Sessions are bound to the client's address as the app trusts it: a thief who
    copies the cookie and writes the victim's address into X-Forwarded-For (which the
    proxy extends with the thief's own) is not signed in."""
    make_user(AGENT, "agent", ["help-desk"])
    app = create_app(replace(settings, trusted_proxies="127.0.0.1"), engine)
    victim = app.test_client()
    at_home = {"headers": {"X-Forwarded-For": "198.51.100.1"}}
    assert post_login(victim, AGENT, PASSWORD, **at_home).status_code == 302
    assert victim.get("/views/mine", **at_home).status_code == 200
    with victim.session_transaction(**at_home) as cookie:
        contents = dict(cookie)
    thief = app.test_client()
    with thief.session_transaction() as cookie:
        cookie.update(contents)
    forged = {"headers": {"X-Forwarded-For": "198.51.100.1, 203.0.113.66"}}
    assert thief.get("/views/mine", **forged).status_code == 302


def test_malformed_trusted_proxies_is_a_clear_error(tmp_path) -> None:
    from helpdesk.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.load(environ={"HELPDESK_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"},
                      instance_path=tmp_path, dotenv_path=None)  # fmt: skip


# --- sessions: stored hashed, ended by credential changes ------------------------------


def test_session_ids_are_stored_hashed(client, make_user, session) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    assert post_login(client, AGENT, PASSWORD).status_code == 302
    raw = session_id(client)
    session.expire_all()
    [row] = session.scalars(select(WebSession)).all()
    assert row.id_hash == hashlib.sha256(raw.encode()).hexdigest()
    dumped = " ".join(str(v) for v in session.execute(text("SELECT * FROM web_sessions")).one())
    assert raw not in dumped
    # Whoever reads the table cannot use what is in it as a cookie.
    with client.session_transaction() as cookie:
        contents = dict(cookie)
    thief, copy = client.application.test_client(), client.application.test_client()
    with thief.session_transaction() as cookie:
        cookie.update(contents, _user_id=row.id_hash)
    with copy.session_transaction() as cookie:
        cookie.update(contents)
    assert not signed_in(thief)
    assert signed_in(copy)  # the same cookie with the id itself does sign in


def admin_saves_user(admin, email: str, **fields: object):  # type: ignore[no-untyped-def]
    token = csrf(admin.get("/admin/users").data)
    data = {"email": email, "role": "agent", "queues": "help-desk", "csrf_token": token}
    data.update(fields)
    response = admin.post("/admin/users", data=data)
    assert response.status_code == 302, response.data[:500]


def test_password_change_by_an_admin_ends_the_users_sessions(app, make_user) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    make_user(ADMIN, "admin")
    laptop, phone, admin = app.test_client(), app.test_client(), app.test_client()
    for client, who in ((laptop, AGENT), (phone, AGENT), (admin, ADMIN)):
        assert post_login(client, who, PASSWORD).status_code == 302
    admin_saves_user(admin, AGENT, name="Agent Smith")  # no credential change
    assert signed_in(laptop) and signed_in(phone)
    admin_saves_user(admin, AGENT, password="a-new-password")
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(admin)
    assert post_login(laptop, AGENT, "a-new-password").status_code == 302


def test_role_change_ends_the_users_sessions(app, make_user) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    make_user(ADMIN, "admin")
    agent, admin = app.test_client(), app.test_client()
    assert post_login(agent, AGENT, PASSWORD).status_code == 302
    assert post_login(admin, ADMIN, PASSWORD).status_code == 302
    admin_saves_user(admin, AGENT, role="manager")
    assert not signed_in(agent)
    assert signed_in(admin)


def test_own_password_change_keeps_this_session_and_ends_the_others(app, make_user) -> None:
    make_user(ADMIN, "admin")
    here, elsewhere = app.test_client(), app.test_client()
    assert post_login(here, ADMIN, PASSWORD).status_code == 302
    assert post_login(elsewhere, ADMIN, PASSWORD).status_code == 302
    admin_saves_user(here, ADMIN, role="admin", queues=[], password="another-password")
    assert signed_in(here)
    assert not signed_in(elsewhere)


def test_password_set_from_the_cli_service_ends_every_session(app, engine, make_user) -> None:
    """``helpdesk user add EMAIL --password-stdin`` calls ``users.add_or_update``."""
    make_user(AGENT, "agent", ["help-desk"])
    client = app.test_client()
    assert post_login(client, AGENT, PASSWORD).status_code == 302
    with db.session_factory(engine, write=True)() as write, write.begin():
        users.add_or_update(write, AGENT, role="agent", password="reset-by-cli", now=utcnow())
    assert not signed_in(client)


# --- cookies -------------------------------------------------------------------------


def cookie_header(app, name: str, base_url: str) -> str:  # type: ignore[no-untyped-def]
    response = app.test_client().get("/login", base_url=base_url)
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, response.headers
    return headers[0]


def flags(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


@pytest.mark.parametrize(
    "https", [{"base_url": "https://help.example.com"}, {"secure_cookies": True}]
)
def test_cookie_over_https_is_host_prefixed_and_secure(settings, engine, https) -> None:
    app = create_app(replace(settings, **https), engine)
    header = cookie_header(app, "__Host-helpdesk_session", "https://help.example.com")
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= flags(header)
    assert not any(flag.startswith("domain=") for flag in flags(header)), header


def test_cookie_over_plain_http_has_no_prefix(settings, engine) -> None:
    app = create_app(replace(settings, base_url="http://127.0.0.1:8080"), engine)
    header = cookie_header(app, "helpdesk_session", "http://127.0.0.1:8080")
    assert "secure" not in flags(header)


# --- keys -------------------------------------------------------------------------------


def test_sessions_csrf_and_message_ids_use_separate_derived_keys(app) -> None:
    session_key = keys.derive(SECRET, keys.SESSION)
    csrf_key = keys.derive(SECRET, keys.CSRF)
    message_key = keys.derive(SECRET, keys.MESSAGE_ID)
    assert len({session_key, csrf_key, message_key, SECRET.encode()}) == 4
    assert app.secret_key == session_key
    assert app.config["WTF_CSRF_SECRET_KEY"] == csrf_key


def test_a_cookie_signed_with_the_secret_itself_is_refused(app, make_user) -> None:
    make_user(AGENT, "agent", ["help-desk"])
    client = app.test_client()
    assert post_login(client, AGENT, PASSWORD).status_code == 302
    with client.session_transaction() as cookie:
        contents = dict(cookie)  # a live session: its id, its user, its CSRF secret
    interface = SecureCookieSessionInterface()
    forger = app.test_client()
    app.secret_key = SECRET  # sign as an app that used the secret directly would
    try:
        value = interface.get_signing_serializer(app).dumps(contents)  # type: ignore[union-attr]
    finally:
        app.secret_key = keys.derive(SECRET, keys.SESSION)
    forger.set_cookie("helpdesk_session", value)
    assert not signed_in(forger)
    # The same contents signed with the session key are accepted (the test is sound).
    genuine = app.test_client()
    genuine.set_cookie(
        "helpdesk_session",
        interface.get_signing_serializer(app).dumps(contents),  # type: ignore[union-attr]
    )
    assert signed_in(genuine)


def test_message_ids_signed_with_the_old_key_still_verify() -> None:
    new = make_message_id(SECRET, 42, "example.com")
    assert verify_message_id(SECRET, new) == 42
    nonce = "0123456789abcdef"
    old = f"<hd.42.{nonce}.{_signature(SECRET.encode(), 42, nonce)}@example.com>"
    assert verify_message_id(SECRET, old) == 42
    # Neither another purpose's key nor another secret makes one of ours.
    for key in (keys.derive(SECRET, keys.SESSION), keys.derive(SECRET, keys.CSRF), b"other"):
        forged = f"<hd.42.{nonce}.{_signature(key, 42, nonce)}@example.com>"
        assert verify_message_id(SECRET, forged) is None
    # New ones are not signed with the old key.
    nonce_new, sig_new = new.strip("<>").split("@")[0].split(".")[2:]
    assert sig_new != _signature(SECRET.encode(), 42, nonce_new)


# --- the migration --------------------------------------------------------------------


def test_migration_invalidates_sessions_stored_in_clear(engine) -> None:
    from alembic import command

    command.downgrade(db.alembic_config(engine), "0004")
    now = {"now": utcnow()}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (email, name, role, password_hash, active, created_at, "
                "notify_new_ticket, notify_assigned, notify_customer_reply) VALUES "
                "('old@example.com', '', 'agent', '', true, :now, true, true, true)"
            ),
            now,
        )
        conn.execute(
            text(
                "INSERT INTO web_sessions (id, user_id, created_at, last_seen_at) SELECT "
                "'a-session-id-in-clear', id, :now, :now FROM users WHERE email = 'old@example.com'"
            ),
            now,
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM web_sessions")) == 0
        columns = {column["name"] for column in inspect(conn).get_columns("web_sessions")}
    assert "id_hash" in columns and "id" not in columns

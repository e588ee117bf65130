"""Scoped API tokens: created by the CLI and at /me, stored hashed, listed, named and
revoked by their owner and by admins; a read token cannot write, a revoked token
and a deactivated user's token stop at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from sqlalchemy import select

from helpdesk import db
from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.models import ApiToken, User
from tests.api_support import bearer
from tests.test_web_smoke import csrf, sign_in


def _cli(settings, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    env = {
        "HELPDESK_DATABASE_URL": settings.database_url,
        "HELPDESK_SECRET_KEY": settings.secret_key,
        "HELPDESK_INSTANCE_PATH": str(settings.instance_path),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "helpdesk", *args], env=env, capture_output=True, text=True,
        timeout=120, cwd=settings.instance_path,
    )  # fmt: skip


def test_token_create_scope_and_name_from_the_cli(settings, engine, make_user, session) -> None:
    make_user("anna@example.com", "agent", ["help-desk"])
    default = _cli(settings, "token", "create", "anna@example.com")
    assert default.returncode == 0, default.stderr
    write = _cli(
        settings, "token", "create", "anna@example.com", "--scope", "write", "--name", "ci-bot"
    )
    assert write.returncode == 0, write.stderr
    bad = _cli(settings, "token", "create", "anna@example.com", "--scope", "admin")
    assert bad.returncode != 0 and "admin" in bad.stderr
    rows = {
        row.token_hash: row
        for row in session.scalars(
            select(ApiToken).join(User).where(User.email == "anna@example.com")
        )
    }
    for output, scope in ((default.stdout, "read"), (write.stdout, "write")):
        secret = output.strip()
        assert secret.startswith("hd_")
        row = rows[hashlib.sha256(secret.encode()).hexdigest()]  # stored hashed, never plain
        assert row.scope == scope
        assert secret not in (row.name, row.token_hash)
    assert {row.name for row in rows.values()} >= {"ci-bot"}


def test_owner_creates_lists_and_revokes_at_me(app, client, make_user, engine) -> None:
    make_user("anna@example.com", "agent", ["help-desk"])
    sign_in(client, "anna@example.com")
    page = client.get("/me/tokens")
    created = client.post(
        "/me/tokens",
        data={"name": "nightly export", "scope": "write", "csrf_token": csrf(page.data)},
    )
    assert created.status_code == 200
    html = created.get_data(as_text=True)
    secret = html.split('<code id="new-token">')[1].split("</code>")[0]
    api = app.test_client(use_cookies=False)
    assert api.get("/api/v1/tickets", headers=bearer(secret)).status_code == 200
    listing = client.get("/me/tokens").get_data(as_text=True)
    assert "nightly export" in listing and secret not in listing  # shown once only

    with db.session_factory(engine)() as s:
        token_id = s.scalars(select(ApiToken.id).where(ApiToken.name == "nightly export")).one()
    revoked = client.post(
        f"/me/tokens/{token_id}/revoke", data={"csrf_token": csrf(client.get("/me/tokens").data)}
    )
    assert revoked.status_code == 302
    assert api.get("/api/v1/tickets", headers=bearer(secret)).status_code == 401
    assert "revoked" in client.get("/me/tokens").get_data(as_text=True)


def test_admins_revoke_anyones_token_and_others_cannot(app, make_user, engine) -> None:
    secret = make_user("anna@example.com", "agent", ["help-desk"])
    make_user("bob@example.com", "agent", ["help-desk"])
    make_user("admin@example.com", "admin")
    with db.session_factory(engine)() as s:
        anna = s.scalars(select(User).where(User.email == "anna@example.com")).one()
        token_id = s.scalars(select(ApiToken.id).where(ApiToken.user_id == anna.id)).one()
    bob = app.test_client()
    sign_in(bob, "bob@example.com")
    form = {"csrf_token": csrf(bob.get("/me/tokens").data)}
    assert bob.post(f"/me/tokens/{token_id}/revoke", data=form).status_code == 404
    assert bob.post(f"/admin/tokens/{token_id}/revoke", data=form).status_code == 404
    api = app.test_client(use_cookies=False)
    assert api.get("/api/v1/tickets", headers=bearer(secret)).status_code == 200

    admin = app.test_client()
    sign_in(admin, "admin@example.com")
    assert "anna@example.com" in admin.get("/admin/tokens").get_data(as_text=True)
    form = {"csrf_token": csrf(admin.get("/admin/tokens").data)}
    assert admin.post(f"/admin/tokens/{token_id}/revoke", data=form).status_code == 302
    assert api.get("/api/v1/tickets", headers=bearer(secret)).status_code == 401


def test_last_use_is_recorded_in_the_background(app, make_user, engine) -> None:
    secret = make_user("anna@example.com", "agent", ["help-desk"])
    api = app.test_client(use_cookies=False)
    assert api.get("/api/v1/tickets", headers=bearer(secret)).status_code == 200
    app.extensions["helpdesk"]["seen"].flush()
    with db.session_factory(engine)() as s:
        row = s.scalars(select(ApiToken)).one()
        assert row.last_used_at is not None


def test_scopes_and_names_are_checked(engine) -> None:
    with db.session_factory(engine, write=True)() as s, s.begin():
        user = users.add_or_update(s, "anna@example.com", role="agent", now=utcnow())
        for scope, name in (("admin", ""), ("read", "x" * 101), ("read", "bad\x00name")):
            try:
                users.issue_token(s, user, now=utcnow(), scope=scope, name=name)
            except users.UserError:
                continue
            raise AssertionError(f"accepted scope {scope!r} name {name!r}")
        row, _ = users.issue_token(s, user, now=utcnow())
        assert row.scope == "read" and row.name == f"token {row.id}"

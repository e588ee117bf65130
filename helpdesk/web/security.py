"""Response headers that keep mail content inert: a strict Content-Security-Policy
(no inline scripts, no remote loads unless an agent asks to see images), no
sniffing, no framing."""

from __future__ import annotations

from flask import Flask, Response, abort, g
from flask_wtf import FlaskForm

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{extra}; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def allow_remote_images() -> None:
    """For this response only: the agent chose to load a mail's remote images."""
    g.remote_images = True


def _headers(response: Response) -> Response:
    extra = " https: http:" if g.get("remote_images") else ""
    response.headers.setdefault("Content-Security-Policy", CSP.format(extra=extra))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_headers)


def require_valid(form: FlaskForm) -> None:
    """A 400 for a form whose CSRF token (or content) does not validate."""
    if not form.validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")

"""The ticket page: the thread (sanitised), and every action an agent takes on a
ticket. Each view fetches the ticket through the user's rights (404 otherwise),
validates its form (CSRF included), calls one lifecycle function and redirects.
A refused change is not committed: the request's session is dropped at its end."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from sqlalchemy import select
from werkzeug.http import dump_options_header
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from helpdesk.accounts.users import by_email
from helpdesk.clock import utcnow
from helpdesk.mail.compose import HeaderInjection
from helpdesk.mail.display import fold_quotes, prepare_html, present_html
from helpdesk.models import (
    PRIORITIES,
    STATUSES,
    Attachment,
    CannedResponse,
    Message,
    Queue,
    RawMail,
    Ticket,
    TicketEvent,
)
from helpdesk.outbound.outbox import delivery_states
from helpdesk.tickets import conversation, history, lifecycle, presence
from helpdesk.tickets.bulk import assignable_agents
from helpdesk.tickets.listing import parse_id, visible_queues, visible_ticket
from helpdesk.web import uploads
from helpdesk.web.db import commit, get_session, get_settings, recorder
from helpdesk.web.login import user
from helpdesk.web.security import allow_remote_images

bp = Blueprint("tickets", __name__, url_prefix="/tickets")

MAX_BODY = 100_000
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}


class ReplyForm(FlaskForm):
    body = TextAreaField("Reply", validators=[DataRequired(), Length(max=MAX_BODY)])
    attachments = MultipleFileField("Attachments")
    seen = HiddenField()
    confirm = BooleanField("Send anyway")


class NoteForm(FlaskForm):
    body = TextAreaField("Internal note", validators=[DataRequired(), Length(max=MAX_BODY)])


class FieldForm(FlaskForm):
    value = StringField(validators=[Length(max=2000)])


class PropertiesForm(FlaskForm):
    status = SelectField(choices=list(STATUSES))
    priority = SelectField(choices=list(PRIORITIES))


def _ticket(number: int) -> Ticket:
    ticket = visible_ticket(get_session(), user(), number)
    if ticket is None:
        abort(404)
    return ticket


def _back(ticket: Ticket):
    return redirect(url_for("tickets.show", number=ticket.number))


def _invalid(form: FlaskForm) -> None:
    if form.errors:
        for field, errors in form.errors.items():
            label = "Form" if field == "csrf_token" else field.capitalize()
            for error in errors:
                flash(f"{label}: {error}", "error")
    abort(400, description="The form was incomplete or expired; reload the page and try again.")


def _render_message(
    message: Message, ticket: Ticket, show_images: bool, limit: int
) -> dict[str, Any]:
    """What the page shows of a message: at most ``limit`` characters of its text and of
    its HTML (sanitised when stored; ``present_html`` is one cheap pass), else a link to
    the original. Linear in what is shown."""

    def cid_url(content_id: str) -> str | None:
        for attachment in message.attachments:
            if attachment.content_id.strip("<>") == content_id:
                return url_for(
                    "tickets.attachment", number=ticket.number, attachment_id=attachment.id
                )
        return None

    html, cut = None, len(message.text_body) > limit
    if message.html_body:
        safe = message.html_safe
        if safe is None:  # stored before HTML was kept sanitised
            safe = prepare_html(message.html_body)
        if len(safe) > limit:
            cut = True
        else:
            html = present_html(safe, cid_url=cid_url, show_remote_images=show_images)
    text = fold_quotes(message.text_body[:limit])
    return {"message": message, "html": html, "text": text, "cut": cut}


@bp.get("/<int:number>")
@login_required
def show(number: int):
    session = get_session()
    ticket = _ticket(number)
    now = utcnow()
    show_images = request.args.get("images") == "1"
    if show_images:
        allow_remote_images()
    presence.touch(recorder(), ticket, user(), now=now)
    viewers = presence.other_viewers(session, ticket, user(), now=now, recorder=recorder())
    events = history.of(session, ticket)
    canned = list(
        session.scalars(
            select(CannedResponse)
            .where(
                (CannedResponse.queue_id.is_(None)) | (CannedResponse.queue_id == ticket.queue_id)
            )
            .order_by(CannedResponse.title)
        )
    )
    deliveries = delivery_states(session, [m.id for m in ticket.messages])
    limit = get_settings().max_display_body
    messages = [_render_message(m, ticket, show_images, limit) for m in ticket.messages]
    last_id = ticket.messages[-1].id if ticket.messages else 0
    reply_form = ReplyForm(seen=str(last_id))
    properties = PropertiesForm(status=ticket.status, priority=ticket.priority)
    commit()
    return render_template(
        "ticket.html",
        ticket=ticket,
        messages=messages,
        deliveries=deliveries,
        events=events,
        viewers=viewers,
        canned=canned,
        reply_form=reply_form,
        note_form=NoteForm(formdata=None),  # a held-back reply's text is not a note
        field_form=FieldForm(),
        properties=properties,
        queues=visible_queues(session, user()),
        agents=assignable_agents(session, user()),
        show_images=show_images,
        blocked_images=sum(m["html"].blocked_images for m in messages if m["html"]),
        last_id=last_id,
    )


@bp.post("/<int:number>/reply")
@login_required
def reply(number: int):
    session = get_session()
    ticket = _ticket(number)
    form = ReplyForm()
    if not form.validate_on_submit():
        _invalid(form)
    seen = parse_id(form.seen.data) or 0
    newer = presence.newer_messages(session, ticket, user(), seen)
    if newer and not form.confirm.data:
        flash(
            f"{len(newer)} new message(s) arrived since you opened this ticket. "
            "Read them, then tick “Send anyway” to send your reply.",
            "warning",
        )
        return show(number), 409
    try:
        files = uploads.attachments(form.attachments.data or [])
    except uploads.UploadRefused as exc:
        abort(400, description=str(exc))
    try:
        conversation.reply(
            session, ticket, actor=user(), text=form.body.data or "",
            settings=get_settings(), now=utcnow(), attachments=files,
        )  # fmt: skip
    except (lifecycle.TicketError, HeaderInjection) as exc:
        abort(400, description=str(exc))
    commit()
    flash("Reply queued for delivery.", "info")
    return _back(ticket)


@bp.post("/<int:number>/note")
@login_required
def note(number: int):
    ticket = _ticket(number)
    form = NoteForm()
    if not form.validate_on_submit():
        _invalid(form)
    try:
        conversation.add_note(
            get_session(), ticket, actor=user(), text=form.body.data or "", now=utcnow()
        )
    except lifecycle.TicketError as exc:
        abort(400, description=str(exc))
    commit()
    return _back(ticket)


@bp.post("/<int:number>/properties")
@login_required
def properties(number: int):
    ticket = _ticket(number)
    form = PropertiesForm()
    if not form.validate_on_submit():
        _invalid(form)
    try:
        lifecycle.update(
            get_session(), ticket, actor=user(), now=utcnow(),
            status=form.status.data or "", priority=form.priority.data or "",
        )  # fmt: skip
    except lifecycle.TicketError as exc:
        abort(400, description=str(exc))
    commit()
    return _back(ticket)


def _field_action(number: int, apply) -> Response:
    ticket = _ticket(number)
    form = FieldForm()
    if not form.validate_on_submit():
        _invalid(form)
    try:
        apply(get_session(), ticket, (form.value.data or "").strip())
    except lifecycle.TicketError as exc:
        flash(str(exc), "error")
        return _back(ticket)
    commit()
    return _back(ticket)


@bp.post("/<int:number>/assignee")
@login_required
def assignee(number: int):
    def apply(session, ticket, value):
        agent = None if value in ("", "none") else by_email(session, value)
        if value not in ("", "none") and agent is None:
            raise lifecycle.TicketError("no such user")
        lifecycle.assign(session, ticket, agent, actor=user(), now=utcnow())

    return _field_action(number, apply)


@bp.post("/<int:number>/queue")
@login_required
def move(number: int):
    def apply(session, ticket, value):
        queue = session.scalars(select(Queue).where(Queue.slug == value)).one_or_none()
        if queue is None:
            raise lifecycle.TicketError("no such queue")
        lifecycle.move(session, ticket, queue, actor=user(), now=utcnow())

    return _field_action(number, apply)


@bp.post("/<int:number>/tags")
@login_required
def tags(number: int):
    def apply(session, ticket, value):
        lifecycle.set_tags(session, ticket, lifecycle.parse_tags(value), actor=user(), now=utcnow())

    return _field_action(number, apply)


@bp.post("/<int:number>/merge")
@login_required
def merge(number: int):
    def apply(session, ticket, value):
        into = parse_id(value)
        target = visible_ticket(session, user(), into) if into is not None else None
        if target is None:
            raise lifecycle.TicketError("no such ticket")
        lifecycle.merge(session, ticket, target, actor=user(), now=utcnow())

    return _field_action(number, apply)


@bp.get("/<int:number>/presence")
@login_required
def presence_state(number: int):
    """Polled by the ticket page: who else is here, and what arrived since."""
    session = get_session()
    ticket = _ticket(number)
    now = utcnow()
    after = request.args.get("after", "0")
    presence.touch(recorder(), ticket, user(), now=now)
    others = presence.other_viewers(session, ticket, user(), now=now, recorder=recorder())
    viewers = [u.name or u.email for u in others]
    newer = presence.newer_messages(session, ticket, user(), parse_id(after) or 0)
    commit()
    return jsonify(viewers=viewers, new_messages=len(newer))


@bp.app_template_filter("actor")
def actor_filter(row: TicketEvent) -> str:
    """Who made a history entry: "by anna@…", "by rule Invoices", "by customer"."""
    return history.actor_text(row)


def _disposition(kind: str, filename: str) -> str:
    """Content-Disposition for any filename: HTTP headers are Latin-1, so a
    non-ASCII name goes in ``filename*`` (RFC 6266) with an ASCII fallback."""
    if filename.isascii():
        return dump_options_header(kind, {"filename": filename})
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", fallback).strip(" ._")
    return dump_options_header(
        kind, {"filename": fallback or "attachment", "filename*": "UTF-8''" + quote(filename)}
    )


@bp.get("/<int:number>/messages/<int:message_id>/original")
@login_required
def original(number: int, message_id: int) -> Response:
    """A message as received (the raw mail), or its text when there is none; a download."""
    ticket = _ticket(number)
    message = get_session().get(Message, message_id)
    if message is None or message.ticket_id != ticket.id or message.kind == "note":
        abort(404)
    raw = get_session().get(RawMail, message.raw_mail_id) if message.raw_mail_id else None
    if raw is not None:
        data, name = raw.content, f"message-{message.id}.eml"
    else:
        data, name = message.text_body.encode(), f"message-{message.id}.txt"
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = _disposition("attachment", name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.get("/<int:number>/attachments/<int:attachment_id>")
@login_required
def attachment(number: int, attachment_id: int):
    ticket = _ticket(number)
    row = get_session().get(Attachment, attachment_id)
    if row is None or row.message.ticket_id != ticket.id:
        abort(404)
    inline = row.content_type in INLINE_IMAGE_TYPES and request.args.get("download") != "1"
    return download_response(row.data, row.filename, row.content_type, inline=inline)


def download_response(data: bytes, filename: str, content_type: str, *, inline: bool) -> Response:
    """A stored file as the web app and the API serve it: a download (or an inline
    image), never sniffed, sandboxed if a browser renders it anyway."""
    response = Response(data, mimetype=content_type if inline else "application/octet-stream")
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = _disposition(disposition, filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response

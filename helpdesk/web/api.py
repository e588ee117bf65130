"""The JSON API under /api/v1, served from its declarations (``helpdesk.api``).

Each declared operation becomes a route that, in this order: authenticates
the bearer token (401), checks the token's scope (403) and the user's role
(404, as the web app does), counts the request against the token's rate
limit (429 with Retry-After), validates the path, query and body with the
operation's models (400 for a body that does not parse, 415 for another
media type, 422 naming each bad field), applies the Idempotency-Key of a
POST, runs the handler in the request's session, commits a write, and
answers JSON. Every refusal is ``application/problem+json`` (RFC 9457), also
for paths no route matches under /api/. The OpenAPI document is
/api/v1/openapi.json; /api/docs shows it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, get_args, get_origin

from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from helpdesk.accounts.users import token_row
from helpdesk.api import idempotency, operations
from helpdesk.api.problems import PROBLEM_TYPES, FieldError, from_validation
from helpdesk.api.ratelimit import RateLimit
from helpdesk.api.registry import PROBLEM_JSON, WRITE, ApiError, Call, Download, Operation, Reply
from helpdesk.clock import utcnow
from helpdesk.tickets.lifecycle import TicketError
from helpdesk.web import uploads
from helpdesk.web.db import commit, get_session, get_settings, recorder
from helpdesk.web.tickets import download_response

PREFIX = "/api/v1"
log = logging.getLogger(__name__)


def problem_response(error: ApiError) -> Response:
    body = error.problem(request.path).model_dump_json(exclude_none=True)
    response = Response(body, status=error.status, mimetype=PROBLEM_JSON)
    response.headers.update(error.headers)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="helpdesk"'
    return response


def wants_problem() -> bool:
    """Requests under /api/v1 get problem documents, whatever failed."""
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def http_problem(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 405 and not _routable():
        status = 404  # e.g. PATCH /tickets/<a number too large>: no route, whatever the method
    kinds = {405: "method-not-allowed"}
    detail = {404: "no such resource", 405: "this path does not take that method"}.get(
        status, error.description or ""
    )
    problem = problem_response(ApiError(status, detail, kind=kinds.get(status, "")))
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        problem.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    return problem


def _routable() -> bool:
    """Does any route match this path for GET? (Werkzeug answers 405 when another
    method's rule has the same path, even if the path's numbers fit no rule.)"""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(method="GET")
    except HTTPException as exc:
        return exc.code != 404
    return True


def blueprint() -> Blueprint:
    """A fresh blueprint with a route per declared operation (one per app)."""
    registry = operations()
    bp = Blueprint("api", __name__, url_prefix=PREFIX)
    document: dict[str, Any] = {}

    @bp.get("/openapi.json")
    def openapi():
        """The OpenAPI 3.1 document (public: it holds no data)."""
        if not document:
            document.update(registry.openapi(title="helpdesk API", version="1", server_url=PREFIX))
        return current_app.response_class(
            json.dumps(document, indent=1), mimetype="application/json"
        )

    for op in registry.operations:
        bp.add_url_rule(
            _flask_path(op.path), endpoint=op.id, view_func=_view(op), methods=[op.method]
        )

    @bp.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return problem_response(error)

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return http_problem(error)

    @bp.errorhandler(TicketError)
    def _refused(error: TicketError):
        """A change the lifecycle refuses: its message is safe to show."""
        return problem_response(ApiError(422, str(error)))

    return bp


def docs_blueprint() -> Blueprint:
    """/api/docs: the document, rendered by our own page and script (no CDN)."""
    bp = Blueprint("api_docs", __name__)

    @bp.get("/api/docs")
    def docs():
        return render_template("api_docs.html", problems=PROBLEM_TYPES)

    return bp


def init_app(app: Flask, rate_limit: str) -> None:
    """The API's routes, its page, the rate limiter, and problem documents for
    errors under /api/v1 that no route handled (no match, wrong method, a bug)."""
    app.extensions["helpdesk"]["rate_limit"] = RateLimit(rate_limit)
    app.register_blueprint(blueprint())
    app.register_blueprint(docs_blueprint())

    @app.errorhandler(405)
    def _method(error: HTTPException):
        if wants_problem():
            return http_problem(error)
        return error

    @app.errorhandler(500)
    def _internal(error: HTTPException):
        if wants_problem():
            return problem_response(ApiError(500, "something went wrong; nothing was changed"))
        return error


def _flask_path(path: str) -> str:
    return path.replace("{", "<int:").replace("}", ">")


def _view(op: Operation) -> Callable[..., Response]:
    def view(**path: int) -> Response:
        call = _call(op, path)
        claim = _claim(op, call) if op.idempotent else None
        if claim is not None and claim.replay:
            return _replay(claim)
        response = _render(op.handler(call))
        if claim is not None:
            body = response.get_data(as_text=True)
            idempotency.record(
                claim, response.status_code, body, response.headers.get("Location", "")
            )
        if op.method != "GET":
            commit()
        return response

    view.__name__ = op.id
    view.__doc__ = op.description
    return view


def _call(op: Operation, path: dict[str, int]) -> Call:
    session = get_session()
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    token = token_row(session, secret.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise ApiError(401, "a valid bearer token is required")
    g.api_token = token
    recorder().api_token(token.id, utcnow())
    if op.scope == WRITE and token.scope != WRITE:
        raise ApiError(403, "this token's scope is read; changes need a token of scope write")
    if op.roles and token.user.role not in op.roles:
        raise ApiError(404, "no such resource")
    wait = current_app.extensions["helpdesk"]["rate_limit"].hit(f"token:{token.id}")
    if wait is not None:
        raise ApiError(
            429, f"too many requests for this token; wait {wait} s",
            headers={"Retry-After": str(wait)},
        )  # fmt: skip
    call = Call(
        session=session,
        user=token.user,
        token=token,
        settings=get_settings(),
        now=utcnow(),
        base_url=request.url_root.rstrip("/") + PREFIX,
        path=path,
        raw_query=list(request.args.items(multi=True)),
    )
    errors: list[FieldError] = []
    if op.query is not None:
        try:
            call.query = op.query.model_validate(_args(op.query, request.args))
        except ValidationError as exc:
            errors += from_validation(exc, "query")
    if op.body is not None:
        try:
            call.body, call.files = _body(op)
        except ValidationError as exc:
            errors += from_validation(exc, "body")
    if errors:
        raise ApiError(422, "the request has invalid fields; see errors", errors=errors)
    return call


def _claim(op: Operation, call: Call) -> idempotency.Claim | None:
    """The request's Idempotency-Key, claimed (or found answered before)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not idempotency.KEY_RE.match(key):
        detail = "Idempotency-Key must be 1 to 255 printable ASCII characters"
        raise ApiError(
            422, detail,
            errors=[FieldError(field="Idempotency-Key", location="header", detail=detail)],
        )  # fmt: skip
    body = call.body.model_dump(mode="json") if call.body is not None else None
    print_ = idempotency.fingerprint(op.id, call.path, body, call.files)
    try:
        return idempotency.claim(call.session, call.token.id, key, print_, now=call.now)
    except idempotency.KeyReused as exc:
        raise ApiError(422, str(exc), kind="idempotency-mismatch") from exc


def _replay(claim: idempotency.Claim) -> Response:
    row = claim.row
    response = Response(row.body, status=row.status, mimetype="application/json")
    if row.location:
        response.headers["Location"] = row.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(get_origin(arg) is list for arg in get_args(annotation))


def _args(model: type[BaseModel], args: Any) -> dict[str, Any]:
    """Form or query arguments as the model's input: lists for list fields."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in args:
            continue
        data[key] = args.getlist(key) if _is_list(info.annotation) else args.get(key)
    return data


def _body(op: Operation) -> tuple[BaseModel, list[tuple[str, str, bytes]]]:
    assert op.body is not None
    mimetype = request.mimetype
    if mimetype == "multipart/form-data" and op.multipart:
        try:
            files = uploads.attachments(request.files.getlist("files"))
        except uploads.UploadRefused as exc:
            raise ApiError(
                422, str(exc), errors=[FieldError(field="files", location="body", detail=str(exc))]
            ) from exc
        return op.body.model_validate(_args(op.body, request.form)), files
    if mimetype != "application/json":
        accepted = "application/json" + (" or multipart/form-data" if op.multipart else "")
        raise ApiError(415, f"send the body as {accepted}")
    data = request.get_data(cache=True)
    try:
        return op.body.model_validate_json(data), []
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "the body is not valid JSON") from exc
        raise


def _render(result: Reply | Download) -> Response:
    if isinstance(result, Download):
        return download_response(result.data, result.filename, result.content_type, inline=False)
    body = "" if result.body is None else result.body.model_dump_json(by_alias=True)
    response = Response(body, status=result.status, mimetype="application/json")
    response.headers.update(result.headers)
    return response

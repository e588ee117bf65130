"""Declared operations: what each API operation accepts, answers and needs, in one place.

An operation is a plain function ``handler(call) -> Reply | Download`` and its
declaration: method, path (OpenAPI style, ``/tickets/{number}``), the
pydantic models of its query and body, its responses, the token scope it
needs (``read`` or ``write``) and the roles it is for. The web binding
(``helpdesk.web.api``) turns each into a route that authenticates, limits,
validates with these same models and answers problems as
``application/problem+json``; ``Registry.openapi()`` turns the same
declarations into the OpenAPI 3.1 document. So the document cannot drift from
what the server checks. Nothing here imports Flask.

Why our own registry over pydantic instead of flask-openapi3 or spectree:
pydantic does the work that matters (validation, and JSON Schema 2020-12,
which OpenAPI 3.1 uses as it is); what is left is a list of declarations and a
loop that writes the document (this module). The libraries would take over the
app object or the error format, and neither knows scopes, Idempotency-Key or
our problem documents, which every operation here declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sqlalchemy.orm import Session

from helpdesk.api.problems import PROBLEM_TYPES, FieldError, Problem
from helpdesk.models import ApiToken, User
from helpdesk.settings import Settings
from helpdesk.tickets.actors import Actor
from helpdesk.tickets.listing import MAX_ID

READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """A refusal the client can act on, answered as a problem document.

    ``kind`` names the problem type (``PROBLEM_TYPES``); ``errors`` name the
    bad fields. The detail is shown to the client: never put internals in it.
    """

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        kind: str = "",
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or {
            400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
            409: "conflict", 413: "too-large", 415: "unsupported-media-type",
            422: "validation", 429: "rate-limited", 503: "unavailable",
        }.get(status, "error")  # fmt: skip
        self.errors = errors or []
        self.headers = headers or {}

    def problem(self, instance: str = "") -> Problem:
        title, _ = PROBLEM_TYPES.get(self.kind, ("Error", ""))
        return Problem(
            type=f"/api/docs#problem-{self.kind}",
            title=title,
            status=self.status,
            detail=self.detail or title,
            instance=instance or None,
            errors=self.errors or None,
        )


def not_found(what: str = "not found") -> ApiError:
    return ApiError(404, what)


def invalid(field_name: str, detail: str, *, where: str = "body") -> ApiError:
    """A 422 naming one bad field (``where``: body, query, path or header)."""
    pointer = "#/" + field_name.replace(".", "/") if where == "body" else None
    error = FieldError(field=field_name, location=where, detail=detail, pointer=pointer)
    return ApiError(422, detail, errors=[error])


@dataclass
class Call:
    """One request, validated: who calls, with what, and the session to work in."""

    session: Session
    user: User
    token: ApiToken
    settings: Settings
    now: datetime
    base_url: str  # the API's root as the client reached it, e.g. http://host/api/v1
    path: dict[str, Any] = field(default_factory=dict)
    query: Any = None
    body: Any = None
    files: list[tuple[str, str, bytes]] = field(default_factory=list)
    raw_query: list[tuple[str, str]] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        """The token, acting for its user: history says "by API token NAME (user)"."""
        return Actor.api_token(self.user, self.token.id, self.token.name)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


@dataclass
class Reply:
    body: BaseModel | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Download:
    """A file to send as it is (an attachment), with the web app's safe headers."""

    data: bytes
    filename: str
    content_type: str


@dataclass(frozen=True)
class Response:
    status: int
    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()  # names from HEADERS
    media_type: str = "application/json"


HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "The URL of what was created.", "schema": {"type": "string"}},
    "Link": {
        "description": 'RFC 8288 links to other pages: `<…?page=2>; rel="next"` (and prev).',
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request "
        "with the same Idempotency-Key and body.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Content-Disposition": {"description": "The file's name.", "schema": {"type": "string"}},
}


@dataclass
class Operation:
    id: str
    method: str
    path: str
    summary: str
    tag: str
    handler: Callable[[Call], Reply | Download]
    responses: tuple[Response, ...]
    scope: str = READ
    roles: tuple[str, ...] | None = None  # None: every role
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    multipart: bool = False  # the body may also come as multipart/form-data with files
    path_params: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return (self.handler.__doc__ or "").strip()

    @property
    def idempotent(self) -> bool:
        """POSTs take an Idempotency-Key."""
        return self.method == "POST"

    @property
    def error_statuses(self) -> list[int]:
        found = [401, 429, 503]
        if self.scope == WRITE:
            found.append(403)
        if self.path_params or self.roles:
            found.append(404)
        if self.query or self.body or self.path_params or self.method != "GET":
            found.append(422)
        if self.body:
            found += [400, 413, 415]
        return sorted(found)


class Registry:
    """The API's operations, in declaration order, and the OpenAPI document of them."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        responses: tuple[Response, ...],
        scope: str = READ,
        roles: tuple[str, ...] | None = None,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        multipart: bool = False,
        name: str = "",
    ) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
        """Declare the decorated function as the handler of ``method path``."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        params = tuple(part[1:-1] for part in path.split("/") if part.startswith("{"))

        def register(handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
            self.operations.append(
                Operation(
                    id=name or handler.__name__, method=method, path=path, summary=summary, tag=tag,
                    handler=handler, responses=responses, scope=scope, roles=roles,
                    query=query, body=body, multipart=multipart, path_params=params,
                )
            )  # fmt: skip
            return handler

        return register

    def openapi(self, *, title: str, version: str, server_url: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every operation (schemas from the pydantic models)."""
        models: list[tuple[type[BaseModel], str]] = [(Problem, "serialization")]
        for op in self.operations:
            if op.body is not None:
                models.append((op.body, "validation"))
            models += [(r.model, "serialization") for r in op.responses if r.model]
        keys, defs = models_json_schema(
            list(dict.fromkeys(models)),  # type: ignore[arg-type]  # plain str modes are fine
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = self._operation(op, keys)
        return {
            "openapi": "3.1.0",
            "info": {
                "title": title,
                "version": version,
                "description": DESCRIPTION,
            },
            "servers": [{"url": server_url}],
            "paths": paths,
            "components": {
                "schemas": defs.get("$defs", {}),
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A token from `helpdesk token create EMAIL "
                        "[--scope read|write]` or from your page /me.",
                    }
                },
                "headers": {name: spec for name, spec in HEADERS.items()},
            },
            "security": [{"bearer": []}],
            "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in self.operations)],
        }

    def _operation(self, op: Operation, keys: dict[Any, Any]) -> dict[str, Any]:
        def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
            return keys[(model, mode)]  # type: ignore[no-any-return]  # pydantic's JSON schema is a dict

        spec: dict[str, Any] = {
            "operationId": op.id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": [_path_param(name) for name in op.path_params],
        }
        if op.description:
            spec["description"] = op.description
        needs = [f"scope `{op.scope}`"]
        if op.roles:
            needs.append("role " + " or ".join(op.roles))
        needed = f"Needs {', '.join(needs)}."
        spec["description"] = (spec.get("description", "") + "\n\n" + needed).strip()
        if op.query is not None:
            spec["parameters"] += _query_params(op.query)
        if op.idempotent:
            spec["parameters"].append(IDEMPOTENCY_KEY)
        if op.body is not None:
            content: dict[str, Any] = {"application/json": {"schema": ref(op.body, "validation")}}
            if op.multipart:
                content["multipart/form-data"] = {"schema": _multipart_schema(op.body)}
            spec["requestBody"] = {"required": True, "content": content}
        responses: dict[str, Any] = {}
        for response in op.responses:
            entry: dict[str, Any] = {"description": response.description}
            if response.headers:
                entry["headers"] = {
                    h: {"$ref": f"#/components/headers/{h}"} for h in response.headers
                }
            if response.model is not None:
                entry["content"] = {
                    response.media_type: {"schema": ref(response.model, "serialization")}
                }
            elif response.media_type != "application/json":
                entry["content"] = {response.media_type: {"schema": {}}}
            responses[str(response.status)] = entry
        if op.idempotent:
            for response in op.responses:
                if response.status < 300:
                    headers = responses[str(response.status)].setdefault("headers", {})
                    headers["Idempotent-Replayed"] = {
                        "$ref": "#/components/headers/Idempotent-Replayed"
                    }
        for status in op.error_statuses:
            kind = ApiError(status).kind
            entry = {
                "description": PROBLEM_TYPES.get(kind, ("Error", ""))[0],
                "content": {PROBLEM_JSON: {"schema": ref(Problem, "serialization")}},
            }
            if status in (429, 503):
                entry["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
            responses.setdefault(str(status), entry)
        spec["responses"] = responses
        return spec


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any string of 1 to 255 printable characters. The same key with the same "
    "body within 24 hours returns the first answer and changes nothing again; with another "
    "body it is a 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}


def _path_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        prop = dict(schema["properties"][key])
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": key,
            "in": "query",
            "required": info.is_required(),
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _multipart_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The body's fields as form fields (lists repeat), plus ``files``."""
    schema = model.model_json_schema()
    properties = {}
    for key, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        # A form field is absent or a string: no nulls.
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop.update(options[0] if len(options) == 1 else {"anyOf": options})
        if prop.get("default", 0) is None:
            del prop["default"]
        properties[key] = prop
    properties["files"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Files to attach.",
    }
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


DESCRIPTION = """\
Everything an agent does in the web app, by script. Send `Authorization: Bearer <token>`;
a token acts for its user with that user's rights (a ticket in a queue the user cannot
see is a 404), and changes need a token of scope `write`.

Errors are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`, and
`errors[]` naming each bad field (`field`, `location`, `detail`, and a JSON `pointer` into
the body). Lists take `page` and answer with `total` and a `Link` header (`rel="next"`).
Every POST takes an `Idempotency-Key`. Too many requests for one token answer `429` with
`Retry-After`.
"""

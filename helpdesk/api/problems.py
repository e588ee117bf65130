"""Problem documents (RFC 9457): how the API says no, and which fields were wrong.

Every error the API gives is ``application/problem+json`` with ``type`` (a
link to its explanation on /api/docs), ``title``, ``status``, ``detail`` and,
for bad input, ``errors[]``: one entry per bad field with its dotted name,
where it was (body, query, path, header), what is wrong, and a JSON pointer
into the body. ``from_validation`` turns pydantic's errors into those.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# kind -> (title, what it means), shown on /api/docs#problem-<kind>.
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "bad-request": ("Bad request", "The body is not well-formed JSON or form data."),
    "unauthorized": (
        "Unauthorized",
        "No bearer token, or one that is unknown, revoked or whose user is deactivated.",
    ),
    "forbidden": ("Forbidden", "The token's scope does not allow this (writes need `write`)."),
    "not-found": (
        "Not found",
        "Nothing is there, or it is outside the rights of the token's user.",
    ),
    "method-not-allowed": ("Method not allowed", "This path does not take that method."),
    "conflict": ("Conflict", "The request conflicts with the current state."),
    "too-large": ("Content too large", "The body is larger than the server accepts."),
    "unsupported-media-type": (
        "Unsupported media type",
        "Send `application/json` (or `multipart/form-data` where the operation says so).",
    ),
    "validation": ("Invalid request", "Some fields are not valid; `errors[]` names each."),
    "idempotency-mismatch": (
        "Idempotency-Key reused",
        "This Idempotency-Key was used in the last 24 hours with another request body.",
    ),
    "rate-limited": ("Too many requests", "Wait `Retry-After` seconds and try again."),
    "unavailable": ("Service unavailable", "The database is busy; try again shortly."),
    "error": ("Error", "Something went wrong on our side; nothing was changed."),
}


class FieldError(BaseModel):
    """One bad field."""

    field: str = Field(description="Dotted name of the field, e.g. `requester.email`.")
    location: str = Field(description="Where it was: `body`, `query`, `path` or `header`.")
    detail: str
    pointer: str | None = Field(
        default=None, description="JSON pointer into the body (RFC 6901), for body fields."
    )


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(description="A URI reference to the explanation of this kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


def from_validation(exc: ValidationError, location: str) -> list[FieldError]:
    """pydantic's errors as field errors (at most 50: enough to fix a request)."""
    found = []
    for error in exc.errors(include_url=False, include_input=False)[:50]:
        parts = [str(p) for p in error["loc"] if not _union_member(p)]
        name = ".".join(parts) or "(root)"
        pointer = "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
        found.append(
            FieldError(
                field=name,
                location=location,
                detail=error["msg"],
                pointer=pointer if location == "body" else None,
            )
        )
    return found


_TYPE_NAMES = {"str", "int", "float", "bool", "none", "list", "dict", "bytes"}


def _union_member(part: object) -> bool:
    """pydantic names the member of a union that failed (``literal[...]``,
    ``function-after[...]``, ``str``) in the location: not a field."""
    return isinstance(part, str) and ("[" in part or part in _TYPE_NAMES)

"""Field types the API's request models share.

Text the database stores must hold no NUL (PostgreSQL refuses it) and no
lone surrogate (not encodable); the pattern says so in the OpenAPI document
too, so clients and generators know before they send.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from helpdesk.mail.addresses import normalise_address
from helpdesk.tickets.lifecycle import TAG_RE

_NO_NUL = r"^[^\x00]*$"


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return value


# A person's or a token's name; a subject or a search; a message's text (the web
# form's limit); HTML as sent.
Name = Annotated[
    str, StringConstraints(pattern=_NO_NUL, max_length=200), AfterValidator(_encodable)
]
Line = Annotated[
    str, StringConstraints(pattern=_NO_NUL, max_length=998), AfterValidator(_encodable)
]
Body = Annotated[
    str,
    StringConstraints(pattern=_NO_NUL, min_length=1, max_length=100_000),
    AfterValidator(_encodable),
]
Html = Annotated[
    str, StringConstraints(pattern=_NO_NUL, max_length=1_000_000), AfterValidator(_encodable)
]


def _address(value: str) -> str:
    address = normalise_address(value)
    local, _, domain = address.partition("@")
    if not local or "." not in domain or any(c in address for c in " <>,;\r\n\t"):
        raise ValueError("not an email address")
    return address


Address = Annotated[
    str,
    StringConstraints(pattern=r"^[^\x00\r\n]*@[^\x00\r\n]*$", min_length=3, max_length=320),
    AfterValidator(_address),
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


def _tag(value: str) -> str:
    name = value.strip().lower()
    if not TAG_RE.match(name):
        raise ValueError("a tag is a letter or digit, then up to 63 of those, space or .:/+-")
    return name


Tag = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_tag)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(description: str = "", **constraints: Any) -> Any:
    """A field that may be left out but not sent as null (``X | SkipJsonSchema[None]``):
    the document shows no ``default: null`` its own type would refuse."""
    return Field(
        None, description=description or None, json_schema_extra=_no_default, **constraints
    )

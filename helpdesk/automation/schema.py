"""The shape of a rule and a macro: trigger, conditions and actions, validated (pydantic).

A rule is stored as JSON (``helpdesk.models.Rule``) and comes in as JSON from
the API and the admin form; everything goes through ``RuleSpec`` first, so the
engine only ever reads rules that validated. The shape, with every field and
operator, is in ``README.md`` ("Automation"); in short::

    {"name": "Invoices to service desk", "enabled": true, "trigger": "ticket.created",
     "conditions": {"all": [{"field": "subject", "op": "contains", "value": "invoice"},
                            {"any": [{"field": "queue", "op": "is", "value": "help-desk"},
                                     {"field": "tags", "op": "has", "value": "billing"}]}]},
     "actions": [{"set": "queue", "value": "service-desk"}, {"add_tags": ["billing"]}]}

What depends on the database (a queue's slug, a user's address, a mail
template) is checked by ``helpdesk.automation.service`` when a rule is saved,
and again when it acts (a queue deleted since makes the action fail, logged).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from helpdesk.automation.patterns import PatternError, compile_pattern
from helpdesk.mail.classify import AUTOMATED_FLAGS
from helpdesk.models import PRIORITIES, STATUSES
from helpdesk.tickets.events import CHANNELS
from helpdesk.tickets.lifecycle import TAG_RE

TRIGGERS = (
    "ticket.created",
    "message.received",
    "reply.sent",
    "ticket.updated",
    "sla.warning",
    "sla.breached",
    "time",
)
CHOICE_OPS = ("is", "is_not", "in", "not_in")
TEXT_OPS = ("contains", "not_contains", "regex", "not_regex")
SET_OPS = ("has", "has_not")
BOOL_OPS = ("is",)
NUMBER_OPS = ("gte", "lte")
# field -> the operators it takes
FIELDS: dict[str, tuple[str, ...]] = {
    "queue": CHOICE_OPS,
    "status": CHOICE_OPS,
    "priority": CHOICE_OPS,
    "assignee": CHOICE_OPS,
    "tags": SET_OPS,
    "requester": (*CHOICE_OPS, "contains"),
    "requester_domain": CHOICE_OPS,
    "subject": TEXT_OPS,
    "body": TEXT_OPS,
    "channel": CHOICE_OPS,
    "automated": BOOL_OPS,
    "flags": SET_OPS,
    "business_hours": BOOL_OPS,
    "changed": SET_OPS,
    "sla_clock": CHOICE_OPS,
    "hours_since_created": NUMBER_OPS,
    "hours_since_customer_message": NUMBER_OPS,
    "hours_since_agent_reply": NUMBER_OPS,
    "hours_in_status": NUMBER_OPS,
}
TIME_FIELDS = (
    "hours_since_created",
    "hours_since_customer_message",
    "hours_since_agent_reply",
    "hours_in_status",
)
# Fields whose values are one of a known set (checked here; queue and assignee by the service).
KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "status": STATUSES,
    "priority": PRIORITIES,
    "channel": CHANNELS,
    "flags": tuple(sorted(AUTOMATED_FLAGS)),
    "changed": ("status", "priority", "assignee", "queue", "tags"),
    "sla_clock": ("first_response", "next_response", "resolution"),
}
SET_FIELDS = ("status", "priority", "queue", "assignee")
# Assignee values that are not a person: "none" unassigns.
ASSIGN_STRATEGIES = ("none", "round_robin", "fewest_open")
NOTIFY_WHOM = ("assignee", "queue_agents", "managers")
MAX_TEXT = 20_000


class SpecError(ValueError):
    """A rule or macro that does not validate; the message is safe to show."""


class Leaf(BaseModel):
    """One test of one field: ``{"field": "queue", "op": "is", "value": "help-desk"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Literal[tuple(FIELDS)]  # type: ignore[valid-type]
    op: str
    value: str | bool | float | list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Leaf:
        ops = FIELDS[self.field]
        if self.op not in ops:
            raise ValueError(f"{self.field} takes the operators {', '.join(ops)}, not {self.op!r}")
        value = self.value
        if self.op in ("in", "not_in") or (self.op in SET_OPS and isinstance(value, list)):
            if not isinstance(value, list) or not value:
                raise ValueError(f"{self.field} {self.op} needs a list of values")
            values = [str(v) for v in value]
        elif ops is BOOL_OPS:
            if not isinstance(value, bool):
                raise ValueError(f"{self.field} is true or false")
            return self
        elif ops is NUMBER_OPS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{self.field} needs a number of business hours (0 or more)")
            return self
        else:
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{self.field} {self.op} needs a value")
            values = [value]
        known = KNOWN_VALUES.get(self.field)
        for item in values:
            if known is not None and item not in known:
                raise ValueError(f"{self.field} is one of {', '.join(known)}, not {item!r}")
            if self.op in ("regex", "not_regex"):
                try:
                    compile_pattern(item)
                except PatternError as exc:
                    raise ValueError(str(exc)) from exc
        return self

    @property
    def values(self) -> tuple[str, ...]:
        """The value(s) as lower-case strings (for choices, sets and text)."""
        value = self.value
        items = value if isinstance(value, list) else [value]
        return tuple(str(item).strip().lower() for item in items)


def _node_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "all" if "all" in value else "any" if "any" in value else "leaf"
    return "all" if isinstance(value, All) else "any" if isinstance(value, AnyOf) else "leaf"


class All(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Node] = Field(max_length=100)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    any_: list[Node] = Field(alias="any", max_length=100)


Node = Annotated[
    Annotated[All, Tag("all")] | Annotated[AnyOf, Tag("any")] | Annotated[Leaf, Tag("leaf")],
    Discriminator(_node_kind),
]
All.model_rebuild()
AnyOf.model_rebuild()


def children(node: All | AnyOf) -> list[Node]:
    return node.all if isinstance(node, All) else node.any_


def leaves(node: Node | None) -> list[Leaf]:
    """Every leaf of a condition tree, in order."""
    if node is None:
        return []
    if isinstance(node, Leaf):
        return [node]
    return [leaf for child in children(node) for leaf in leaves(child)]


# --- actions ------------------------------------------------------------------------


class SetField(BaseModel):
    """``{"set": "priority", "value": "high"}``; an assignee is an address, ``none``,
    ``round_robin`` or ``fewest_open`` (among the queue's agents)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    set: Literal["status", "priority", "queue", "assignee"]
    value: str = Field(min_length=1, max_length=320)

    @model_validator(mode="after")
    def _check(self) -> SetField:
        if self.set == "status" and self.value not in STATUSES:
            raise ValueError(f"status is one of {', '.join(STATUSES)}")
        if self.set == "priority" and self.value not in PRIORITIES:
            raise ValueError(f"priority is one of {', '.join(PRIORITIES)}")
        return self


def _tag_list(names: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(name.strip().lower() for name in names if name.strip()))
    if not cleaned:
        raise ValueError("give at least one tag")
    for name in cleaned:
        if not TAG_RE.match(name):
            raise ValueError(f"not a valid tag: {name[:70]!r}")
    return cleaned


class AddTags(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    add_tags: list[str] = Field(max_length=50)

    _clean = field_validator("add_tags")(_tag_list)


class RemoveTags(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_tags: list[str] = Field(max_length=50)

    _clean = field_validator("remove_tags")(_tag_list)


class Note(BaseModel):
    """An internal note on the ticket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = Field(min_length=1, max_length=MAX_TEXT)


class MailBody(BaseModel):
    """A shipped template (``templates/email/rules/<template>.txt``) or a text of
    your own; both may use ``{{ ticket.number }}``, ``{{ ticket.requester.name }}``..."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,64}$")
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _one(self) -> MailBody:
        if (self.template is None) == (self.text is None):
            raise ValueError("mail_requester takes a template or a text (one of them)")
        return self


class MailRequester(BaseModel):
    """Mail the requester (threaded, through the outbox, never to a bouncing address)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mail_requester: MailBody


class Notify(BaseModel):
    """Mail agents: the assignee (or the queue's agents if none), the queue's agents,
    or the managers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notify: Literal["assignee", "queue_agents", "managers"]
    text: str = Field(default="", max_length=MAX_TEXT)


def _action_kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("set", "add_tags", "remove_tags", "note", "mail_requester", "notify"):
            if key in value:
                return key
        return "unknown"
    return {
        SetField: "set", AddTags: "add_tags", RemoveTags: "remove_tags", Note: "note",
        MailRequester: "mail_requester", Notify: "notify",
    }.get(type(value), "unknown")  # fmt: skip


Action = Annotated[
    Annotated[SetField, Tag("set")]
    | Annotated[AddTags, Tag("add_tags")]
    | Annotated[RemoveTags, Tag("remove_tags")]
    | Annotated[Note, Tag("note")]
    | Annotated[MailRequester, Tag("mail_requester")]
    | Annotated[Notify, Tag("notify")],
    Discriminator(
        _action_kind,
        custom_error_type="unknown_action",
        custom_error_message=(
            "an action is one of set, add_tags, remove_tags, note, mail_requester, notify"
        ),
    ),
]


# --- rules and macros ----------------------------------------------------------------


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    enabled: bool = False
    position: int = Field(default=100, ge=0, le=1_000_000)
    trigger: Literal[TRIGGERS]  # type: ignore[valid-type]
    conditions: Node | None = None
    actions: list[Action] = Field(min_length=1, max_length=30)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("a rule needs a name")
        return value

    @field_validator("conditions", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value in ({}, None) else value

    @model_validator(mode="after")
    def _check(self) -> RuleSpec:
        fields = {leaf.field for leaf in leaves(self.conditions)}
        if self.trigger == "time":
            if not fields & set(TIME_FIELDS):
                raise ValueError(
                    "a time rule needs a condition on business hours since something "
                    f"({', '.join(TIME_FIELDS)})"
                )
            event_only = fields & {"changed", "sla_clock", "automated", "flags"}
            if event_only:
                raise ValueError(f"a time rule cannot test {', '.join(sorted(event_only))}")
        if "changed" in fields and self.trigger != "ticket.updated":
            raise ValueError("only ticket.updated rules can test what changed")
        if "sla_clock" in fields and not self.trigger.startswith("sla."):
            raise ValueError("only sla.warning and sla.breached rules can test the SLA clock")
        return self

    def conditions_json(self) -> dict[str, Any]:
        if self.conditions is None:
            return {}
        return self.conditions.model_dump(mode="json", by_alias=True, exclude_none=True)

    def actions_json(self) -> list[dict[str, Any]]:
        return [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in self.actions]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "position": self.position,
            "trigger": self.trigger,
            "conditions": self.conditions_json(),
            "actions": self.actions_json(),
        }


class MacroSpec(BaseModel):
    """A macro: actions (an assignee may also be ``me``) and an optional reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    queue: str | None = None
    position: int = Field(default=100, ge=0, le=1_000_000)
    actions: list[Action] = Field(default_factory=list, max_length=30)
    reply: str = Field(default="", max_length=100_000)

    @model_validator(mode="after")
    def _check(self) -> MacroSpec:
        if not self.actions and not self.reply.strip():
            raise ValueError("a macro needs an action or a reply")
        if any(isinstance(a, MailRequester) for a in self.actions):
            raise ValueError("a macro replies with its reply text, not with mail_requester")
        return self

    def actions_json(self) -> list[dict[str, Any]]:
        return [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in self.actions]


def problems(error: ValidationError) -> str:
    """A validation error as one line per problem, for people."""
    lines = []
    for item in error.errors():
        parts: list[str] = []
        for part in map(str, item["loc"]):
            # Drop the union's tags from the path: conditions.all.all.0.leaf.field
            # reads conditions.all.0.field.
            if part == "leaf" or part[:1].isupper() or (parts and parts[-1] == part):
                continue
            parts.append(part)
        where = ".".join(parts)
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(lines))


def parse_rule(data: Any) -> RuleSpec:
    try:
        return RuleSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems(exc)) from None


def parse_macro(data: Any) -> MacroSpec:
    try:
        return MacroSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems(exc)) from None


def parse_actions(data: Any) -> list[Any]:
    """Stored actions back into their models (a rule's or a macro's)."""
    if not data:
        return []
    try:
        return RuleSpec.model_validate(
            {"name": "-", "trigger": "ticket.created", "actions": data}
        ).actions
    except ValidationError as exc:
        raise SpecError(problems(exc)) from None

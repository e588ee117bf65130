"""A rule as rows of a form, and back: what the admin page edits.

The page shows conditions as "match all/any of" rows (field, operator, value)
and an optional second group, "and also any/all of", which is a nested group;
actions as rows (what, value). ``to_shape`` turns stored JSON into that form
shape (None when the conditions nest deeper than the form can show: such a
rule is edited through the API); ``from_shape`` turns the rows back into JSON
for ``schema.parse_rule``. Values are text: a list is comma-separated, a yes/no
is ``yes`` or ``no``, hours are a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpdesk.automation.schema import BOOL_OPS, FIELDS, NUMBER_OPS

# action row kind -> (label, how it becomes JSON)
ACTION_KINDS: dict[str, str] = {
    "status": "set status to",
    "priority": "set priority to",
    "queue": "move to queue",
    "assignee": "assign to (address, none, round_robin, fewest_open)",
    "add_tags": "add tags",
    "remove_tags": "remove tags",
    "note": "add internal note",
    "mail_template": "mail the requester, template",
    "mail_text": "mail the requester, text",
    "notify_assignee": "notify the assignee (or the queue's agents)",
    "notify_queue_agents": "notify the queue's agents",
    "notify_managers": "notify the managers",
}
OPERATORS = ("is", "is_not", "in", "not_in", "has", "has_not", "contains", "not_contains",
             "regex", "not_regex", "gte", "lte")  # fmt: skip


@dataclass
class Row:
    field: str = ""
    op: str = ""
    value: str = ""


@dataclass
class ActionRow:
    kind: str = ""
    value: str = ""


@dataclass
class Shape:
    match: str = "all"
    rows: list[Row] = field(default_factory=list)
    also_match: str = "any"
    also_rows: list[Row] = field(default_factory=list)
    actions: list[ActionRow] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _row(leaf: dict[str, Any]) -> Row:
    return Row(str(leaf.get("field", "")), str(leaf.get("op", "")), _text(leaf.get("value")))


def _mode(node: dict[str, Any]) -> str | None:
    if set(node) == {"all"}:
        return "all"
    if set(node) == {"any"}:
        return "any"
    return None


def to_shape(conditions: dict[str, Any] | None, actions: list[dict[str, Any]]) -> Shape | None:
    """The form's rows for a stored rule; None if its conditions nest too deep."""
    shape = Shape(actions=[_action_row(a) for a in actions])
    if not conditions:
        return shape
    mode = _mode(conditions)
    if mode is None:
        return None
    shape.match = mode
    groups = 0
    for child in conditions[mode]:
        inner = _mode(child) if isinstance(child, dict) else None
        if inner is None:
            shape.rows.append(_row(child))
            continue
        groups += 1
        if groups > 1 or any(_mode(c) for c in child[inner] if isinstance(c, dict)):
            return None
        shape.also_match = inner
        shape.also_rows = [_row(c) for c in child[inner]]
    return shape


def _action_row(action: dict[str, Any]) -> ActionRow:
    if "set" in action:
        return ActionRow(str(action["set"]), str(action.get("value", "")))
    for key in ("add_tags", "remove_tags"):
        if key in action:
            return ActionRow(key, ", ".join(action[key]))
    if "note" in action:
        return ActionRow("note", action["note"])
    if "mail_requester" in action:
        body = action["mail_requester"]
        if body.get("template"):
            return ActionRow("mail_template", body["template"])
        return ActionRow("mail_text", body.get("text", ""))
    if "notify" in action:
        return ActionRow(f"notify_{action['notify']}", action.get("text", ""))
    return ActionRow("", "")


def _value(field_name: str, op: str, text: str) -> Any:
    text = text.strip()
    ops = FIELDS.get(field_name, ())
    if ops is BOOL_OPS:
        return {"yes": True, "true": True, "no": False, "false": False}.get(text.lower(), text)
    if ops is NUMBER_OPS:
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if op in ("in", "not_in") or (op in ("has", "has_not") and "," in text):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _leaves(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {"field": row.field, "op": row.op, "value": _value(row.field, row.op, row.value)}
        for row in rows
        if row.field
    ]


def _action(row: ActionRow) -> dict[str, Any] | None:
    kind, value = row.kind, row.value.strip()
    if not kind:
        return None
    if kind in ("status", "priority", "queue", "assignee"):
        return {"set": kind, "value": value}
    if kind in ("add_tags", "remove_tags"):
        return {kind: [part.strip() for part in value.split(",") if part.strip()]}
    if kind == "note":
        return {"note": value}
    if kind == "mail_template":
        return {"mail_requester": {"template": value}}
    if kind == "mail_text":
        return {"mail_requester": {"text": value}}
    if kind.startswith("notify_"):
        return {"notify": kind.removeprefix("notify_"), "text": value}
    return {kind: value}  # unknown: the schema names it


def from_shape(shape: Shape) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The conditions and actions JSON of the form's rows (empty rows left out)."""
    children: list[dict[str, Any]] = _leaves(shape.rows)
    also = _leaves(shape.also_rows)
    if also:
        children.append({shape.also_match: also})
    conditions = {shape.match: children} if children else {}
    actions = [a for a in (_action(row) for row in shape.actions) if a is not None]
    return conditions, actions

"""Nothing but the ticket lifecycle changes a ticket's lifecycle fields or writes history.

Two proofs. At run time, ``conftest`` installs the lifecycle's ORM guard for
the whole test suite: every other test that sets ``ticket.status`` (or the
priority, assignee, queue, tags, merge, resolved/closed times) or creates a
``TicketEvent`` outside the lifecycle fails with ``DirectWrite``. Statically,
this test walks the product's code (``helpdesk/``, ``mailgate/``) and finds
every place that could do so without the ORM noticing or that a test might
not reach: an assignment to one of those attribute names, a ``TicketEvent(...)``,
a bulk ``update(Ticket)`` or ``insert(TicketEvent)``, and the guard's escape
hatch ``direct_writes``. Each must be in a lifecycle module or on the short
list below of assignments to other objects that share a field's name.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpdesk.tickets.operation import OWNED_FIELDS, install_guard

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE = {
    "helpdesk/tickets/lifecycle.py",
    "helpdesk/tickets/conversation.py",
    "helpdesk/tickets/operation.py",
}
# Assignments to fields of the same name on objects that are not tickets:
# (file, the assigned expression).
NOT_TICKETS = {
    ("helpdesk/sla/service.py", "row.resolved_at"),  # TicketSla
    ("helpdesk/sla/clocks.py", "result.resolved_at"),  # SlaResult
    ("helpdesk/sla/setup.py", "policy.queue"),  # SlaPolicy
    ("helpdesk/sla/setup.py", "policy.priority"),  # SlaPolicy
    ("helpdesk/api/idempotency.py", "claim_.row.status"),  # IdempotencyKey
    ("helpdesk/api/registry.py", "self.status"),  # ApiError
    ("helpdesk/automation/macros.py", "macro.queue"),  # Macro
}


def _product_files() -> list[Path]:
    return sorted(
        [*ROOT.joinpath("helpdesk").rglob("*.py"), *ROOT.joinpath("mailgate").rglob("*.py")]
    )


def _findings(path: Path, relative: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=relative)
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        while targets:
            target = targets.pop()
            if isinstance(target, ast.Tuple | ast.List):
                targets += target.elts
            elif isinstance(target, ast.Attribute) and target.attr in OWNED_FIELDS:
                found.append((relative, ast.unparse(target), target.lineno))
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            args = [ast.unparse(a) for a in node.args]
            if name.endswith("TicketEvent"):
                found.append((relative, "TicketEvent(...)", node.lineno))
            if name.split(".")[-1] in ("update", "sql_update", "insert") and (
                "Ticket" in args or "TicketEvent" in args
            ):
                found.append((relative, f"{name}({args[0]})", node.lineno))
            if name.endswith("direct_writes"):
                found.append((relative, f"{name}(...)", node.lineno))
            if name == "setattr" and len(node.args) > 1:
                field = node.args[1]
                if isinstance(field, ast.Constant) and field.value in OWNED_FIELDS:
                    found.append((relative, f"setattr(..., {field.value!r})", node.lineno))
    return [
        f"{file}:{line}: {what}"
        for file, what, line in found
        if file not in LIFECYCLE and (file, what) not in NOT_TICKETS
    ]


def test_no_product_code_writes_lifecycle_fields_or_history_past_the_lifecycle():
    findings = [
        finding
        for path in _product_files()
        for finding in _findings(path, path.relative_to(ROOT).as_posix())
    ]
    assert findings == []


def test_the_walk_finds_what_it_looks_for(tmp_path):
    """The test above can fail: a module writing a status and history is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def close(ticket, session, now):\n"
        "    ticket.status = 'closed'\n"
        "    session.add(TicketEvent(ticket_id=ticket.id, kind='status', created_at=now))\n"
        "    session.execute(update(Ticket).values(priority='low'))\n"
        "    setattr(ticket, 'assignee', None)\n"
        "    ticket.queue, other = None, 1\n"
        "    form.queue.choices = []\n"
    )
    assert sorted(f.split(": ", 1)[1] for f in _findings(bad, "helpdesk/bad.py")) == sorted(
        [
            "ticket.status",
            "TicketEvent(...)",
            "update(Ticket)",
            "setattr(..., 'assignee')",
            "ticket.queue",
        ]
    )


def test_the_guard_is_installed_for_the_whole_run():
    """``install_guard`` is idempotent, and conftest has called it already."""
    from helpdesk.tickets import operation

    assert operation._installed
    install_guard()

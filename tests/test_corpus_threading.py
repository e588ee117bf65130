"""The threading and automated-mail corpus, run through the real SMTP gateway.

Every folder under ``tests/corpus/threading/`` (except ``_shared``) is one
scenario: a ``case.json`` listing steps (send an .eml, change the database,
send an agent reply, check) and the expected outcome after each. The format is
described in ``tests/corpus/threading/README.md``. Each scenario runs on SQLite
and on PostgreSQL; every expectation compares a value read back from the
database, and a key the runner does not know is an error, not a silent pass.
"""

from __future__ import annotations

import contextlib
import email
import json
import re
import shutil
from dataclasses import dataclass, field
from email import policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from helpdesk import db
from helpdesk.accounts import users
from helpdesk.clock import utcnow
from helpdesk.mail.messageid import make_message_id, verify_message_id
from helpdesk.models import (
    Contact,
    Message,
    OutboxMail,
    Queue,
    RawMail,
    Ticket,
    TicketEvent,
    User,
)
from helpdesk.subscribers import writing_sessions
from helpdesk.tickets import conversation
from helpdesk.tickets.operation import direct_writes
from tests.conftest import SECRET, RunningGateway, outbox_bytes

CORPUS = Path(__file__).parent / "corpus" / "threading"
DOMAIN = "example.com"
DEFAULT_RCPT = "help-desk@example.com"

# What each step may say; anything else is a mistake in the scenario.
MAIL_KEYS = {"outcome", "ticket", "rule", "reason", "flags", "author", "also_addressed"}
TICKET_KEYS = {
    "status", "queue", "requester", "ccs", "follow_up_of", "inbound", "outbound", "not_sent",
}  # fmt: skip
# History rows that say what was not mailed (``not_sent``: "kind: value", oldest first).
NOT_SENT_KINDS = ("acknowledgement_withheld", "ccs_not_added")
GLOBAL_KEYS = {"tickets", "acks", "bouncing", "raw_mails"}
REPLY_KEYS = {"flags", "queued", "to", "in_reply_to", "references"}
STEP_KEYS = {
    "send": {"send", "mail_from", "to", "repeat", "expect", "note"},
    "set": {"set", "note"},
    "reply": {"reply", "expect", "note"},
    "check": {"check", "note"},
}
PLACEHOLDER_RE = re.compile(rb"\{\{([a-z_]+)(?::([^}]*))?\}\}")


def cases() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith("_"))


class ScenarioError(Exception):
    """The scenario file itself is wrong (unknown key, missing value)."""


def _require_known(keys: set[str], allowed: set[str], where: str) -> None:
    unknown = keys - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")


def validate(spec: dict[str, Any], where: str) -> None:
    """Reject anything the runner would otherwise ignore."""
    _require_known(set(spec), {"description", "steps"}, where)
    if not spec.get("description") or not spec.get("steps"):
        raise ScenarioError(f"{where}: needs a description and steps")
    for index, step in enumerate(spec["steps"], start=1):
        kinds = [k for k in STEP_KEYS if k in step]
        if len(kinds) != 1:
            raise ScenarioError(f"{where} step {index}: needs exactly one of {sorted(STEP_KEYS)}")
        _require_known(set(step), STEP_KEYS[kinds[0]], f"{where} step {index}")
        expect = step.get("expect") or step.get("check") or {}
        if kinds[0] == "send":
            _require_known(set(expect), MAIL_KEYS | TICKET_KEYS | GLOBAL_KEYS, f"step {index}")
        elif kinds[0] == "check":
            _require_known(set(expect), {"ticket"} | TICKET_KEYS | GLOBAL_KEYS, f"step {index}")
        elif kinds[0] == "reply":
            _require_known(set(expect), REPLY_KEYS | GLOBAL_KEYS, f"step {index}")


def forged_message_id(number: int) -> str:
    """A Message-ID shaped like ours for ``number``, with a signature that does not verify."""
    genuine = make_message_id(SECRET, number, DOMAIN)
    head, sig_at = genuine.rsplit(".", 1)
    sig, _, rest = sig_at.partition("@")
    forged = f"{head}.{'0' * 16 if sig != '0' * 16 else '1' * 16}@{rest}"
    assert verify_message_id(SECRET, forged) is None
    return forged


@dataclass
class Sent:
    """What one send step left behind: the raw mail rows it created."""

    rows: list[RawMail] = field(default_factory=list)


class Scenario:
    def __init__(
        self, folder: Path, gateway: RunningGateway, session: Session, engine: Engine
    ) -> None:
        self.folder = folder
        self.gateway = gateway
        self.session = session
        self.engine = engine
        self.spec = json.loads((folder / "case.json").read_text())
        validate(self.spec, folder.name)

    # --- running ----------------------------------------------------------

    def run(self) -> None:
        for index, step in enumerate(self.spec["steps"], start=1):
            where = f"{self.folder.name} step {index}"
            if "send" in step:
                sent = self.send(step)
                self.expect_mail(sent, step.get("expect", {}), where)
            elif "set" in step:
                self.apply_set(step["set"], where)
            elif "reply" in step:
                message_id = self.agent_reply(step["reply"])
                self.expect_reply(message_id, step.get("expect", {}), where)
            else:
                self.expect_state(step["check"], where)

    def fresh(self) -> None:
        """See what other connections committed: end the read transaction."""
        self.session.rollback()
        self.session.expire_all()

    def send(self, step: dict[str, Any]) -> Sent:
        template = (self.folder / step["send"]).read_bytes()
        repeat = int(step.get("repeat", 1))
        before = self._last_raw_id()
        for i in range(repeat):
            # Files are kept with LF endings; SMTP carries CRLF.
            raw = self.substitute(template, i).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            mail_from = step.get("mail_from")
            if mail_from is None:
                mail_from = self._from_header(raw)
            to = [self.substitute(t.encode(), i).decode() for t in step.get("to", [DEFAULT_RCPT])]
            refused = self.gateway.send(raw, mail_from=mail_from, to=to)
            assert refused == {}, refused
        self.fresh()
        rows = self.session.scalars(
            select(RawMail).where(RawMail.id > before).order_by(RawMail.id)
        ).all()
        return Sent(list(rows))

    def _last_raw_id(self) -> int:
        self.fresh()
        return self.session.scalar(select(func.max(RawMail.id))) or 0

    @staticmethod
    def _from_header(raw: bytes) -> str:
        msg = email.message_from_bytes(raw, policy=policy.compat32)
        return parseaddr(str(msg.get("From", "")))[1]

    def substitute(self, raw: bytes, index: int) -> bytes:
        def value(match: re.Match[bytes]) -> bytes:
            name = match.group(1).decode()
            arg = (match.group(2) or b"").decode()
            if name == "i":
                return str(index).encode()
            if name == "signed":
                return make_message_id(SECRET, int(arg), DOMAIN).encode()
            if name == "forged":
                return forged_message_id(int(arg)).encode()
            if name == "outbound":
                return self._outbound_id(int(arg)).encode()
            if name == "notification":
                return self._notification_id(int(arg)).encode()
            if name == "reply_to":
                return self._notification_header(int(arg), "Reply-To").encode()
            raise ScenarioError(f"unknown placeholder {match.group(0)!r}")

        return PLACEHOLDER_RE.sub(value, raw)

    def _ticket(self, number: int) -> Ticket:
        ticket = self.session.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()
        if ticket is None:
            raise ScenarioError(f"no ticket {number}")
        return ticket

    def _outbound_id(self, number: int) -> str:
        self.fresh()
        ticket = self._ticket(number)
        message_id = self.session.scalar(
            select(Message.message_id)
            .where(Message.ticket_id == ticket.id, Message.kind == "outbound")
            .order_by(Message.id.desc())
            .limit(1)
        )
        if not message_id:
            raise ScenarioError(f"ticket {number} has no outbound message")
        return message_id

    def _notification_id(self, number: int) -> str:
        return self._notification_header(number, "Message-ID")

    def _notification_header(self, number: int, name: str) -> str:
        self.fresh()
        ticket = self._ticket(number)
        row = self.session.scalars(
            select(OutboxMail)
            .where(OutboxMail.ticket_id == ticket.id, OutboxMail.purpose.like("notification:%"))
            .order_by(OutboxMail.id.desc())
            .limit(1)
        ).one_or_none()
        if row is None:
            raise ScenarioError(f"ticket {number} has no notification")
        sent = outbox_bytes(row)
        return str(email.message_from_bytes(sent, policy=policy.compat32)[name])

    def apply_set(self, change: dict[str, Any], where: str) -> None:
        now = utcnow()
        with (
            db.session_factory(self.engine, write=True)() as session,
            session.begin(),
            contextlib.ExitStack() as stack,
        ):
            if "user" in change:
                _require_known(set(change), {"user", "role", "queues", "name"}, where)
                users.add_or_update(
                    session, change["user"], role=change.get("role", "agent"),
                    queue_slugs=change.get("queues"), name=change.get("name"), now=now,
                )  # fmt: skip
            elif "queue" in change:
                _require_known(set(change), {"queue", "closed_reply_policy"}, where)
                queue = session.scalars(select(Queue).where(Queue.slug == change["queue"])).one()
                queue.closed_reply_policy = change["closed_reply_policy"]
            elif "ticket" in change:
                # The scenario's state, set as it is (no history, no events): a test fixture.
                stack.enter_context(direct_writes())
                _require_known(set(change), {"ticket", "status", "merged_into"}, where)
                ticket = session.scalars(
                    select(Ticket).where(Ticket.number == change["ticket"])
                ).one()
                if "status" in change:
                    ticket.status = change["status"]
                    if ticket.status == "resolved":
                        ticket.resolved_at = now
                    if ticket.status == "closed":
                        ticket.resolved_at = ticket.resolved_at or now
                        ticket.closed_at = now
                if "merged_into" in change:
                    target = session.scalars(
                        select(Ticket).where(Ticket.number == change["merged_into"])
                    ).one()
                    ticket.merged_into_id = target.id
            else:
                raise ScenarioError(f"{where}: set needs user, queue or ticket")

    def agent_reply(self, spec: dict[str, Any]) -> str:
        _require_known(set(spec), {"ticket", "agent", "text"}, "reply")
        settings = self.gateway.gateway.settings
        with writing_sessions(self.engine, settings)() as session, session.begin():
            ticket = session.scalars(select(Ticket).where(Ticket.number == spec["ticket"])).one()
            author = session.scalars(select(User).where(User.email == spec["agent"])).one()
            message, _row = conversation.reply(
                session, ticket, actor=author, text=spec["text"], settings=settings, now=utcnow()
            )
            session.flush()
            return message.message_id

    # --- expectations -----------------------------------------------------

    def expect_mail(self, sent: Sent, expect: dict[str, Any], where: str) -> None:
        actual: dict[str, Any] = {}
        ticket: Ticket | None = None
        if expect.get("outcome") == "duplicate":
            # The same bytes again are no new row; other bytes (another relay's trace
            # headers) are a row of their own, applied as a duplicate.
            new = [row for row in sent.rows if row.state != "duplicate"]
            actual["outcome"] = "duplicate" if not new else f"{len(new)} new raw mails"
        else:
            assert sent.rows, f"{where}: the gateway stored nothing"
            row = sent.rows[-1]
            message = self.session.scalars(
                select(Message).where(Message.raw_mail_id == row.id, Message.kind == "inbound")
            ).one_or_none()
            ticket = self.session.get(Ticket, row.ticket_id) if row.ticket_id else None
            actual["outcome"] = self._outcome(row, ticket)
            actual["ticket"] = ticket.number if ticket else None
            actual["rule"] = row.error if actual["outcome"] == "follow_up" else None
            actual["reason"] = row.error if row.state in ("dropped", "failed") else None
            actual["flags"] = sorted(message.flags) if message else None
            actual["also_addressed"] = message.also_addressed if message else None
            author = (
                self.session.get(User, message.author_id) if message and message.author_id else None
            )
            actual["author"] = author.email if author else None
        if TICKET_KEYS & set(expect) and ticket is None:
            raise ScenarioError(f"{where}: ticket expectations, but the mail made no ticket")
        actual |= self._ticket_state(ticket, expect) | self._global_state(expect)
        self._compare(expect, actual, where)

    @staticmethod
    def _outcome(row: RawMail, ticket: Ticket | None) -> str:
        if row.state != "processed":
            return row.state
        if ticket is None:
            return "no ticket"
        first = min(m.id for m in ticket.messages if m.kind == "inbound")
        first_raw = next(m.raw_mail_id for m in ticket.messages if m.id == first)
        return "new_ticket" if first_raw == row.id else "follow_up"

    def expect_state(self, expect: dict[str, Any], where: str) -> None:
        self.fresh()
        ticket = self._ticket(expect["ticket"]) if "ticket" in expect else None
        if TICKET_KEYS & set(expect) and ticket is None:
            raise ScenarioError(f"{where}: ticket expectations need 'ticket'")
        actual = {"ticket": expect.get("ticket")}
        actual |= self._ticket_state(ticket, expect) | self._global_state(expect)
        self._compare(expect, actual, where)

    def expect_reply(self, message_id: str, expect: dict[str, Any], where: str) -> None:
        self.fresh()
        message = self.session.scalars(
            select(Message).where(Message.message_id == message_id)
        ).one()
        row = self.session.scalars(
            select(OutboxMail).where(OutboxMail.message_id == message.id)
        ).one_or_none()
        actual = {
            "flags": sorted(message.flags),
            "queued": row is not None,
            "to": message.to_addresses,
            "in_reply_to": message.in_reply_to,
            "references": message.references_header.split(),
        } | self._global_state(expect)
        self._compare(expect, actual, where)

    def _ticket_state(self, ticket: Ticket | None, expect: dict[str, Any]) -> dict[str, Any]:
        if ticket is None or not TICKET_KEYS & set(expect):
            return {}
        kinds = [m.kind for m in ticket.messages]
        not_sent = self.session.execute(
            select(TicketEvent.kind, TicketEvent.new_value)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind.in_(NOT_SENT_KINDS))
            .order_by(TicketEvent.id)
        ).all()
        return {
            "not_sent": [f"{kind}: {value}" for kind, value in not_sent],
            "status": ticket.status,
            "queue": ticket.queue.slug,
            "requester": ticket.requester.email,
            "ccs": sorted(c.email for c in ticket.ccs),
            "follow_up_of": ticket.follow_up_of.number if ticket.follow_up_of else None,
            "inbound": kinds.count("inbound"),
            "outbound": kinds.count("outbound"),
        }

    def _global_state(self, expect: dict[str, Any]) -> dict[str, Any]:
        if not GLOBAL_KEYS & set(expect):
            return {}
        count = self.session.scalar
        return {
            "tickets": count(select(func.count()).select_from(Ticket)),
            "raw_mails": count(select(func.count()).select_from(RawMail)),
            "acks": count(
                select(func.count())
                .select_from(OutboxMail)
                .where(OutboxMail.purpose == "acknowledgement")
            ),
            "bouncing": sorted(
                self.session.scalars(
                    select(Contact.email).where(Contact.bouncing_since.is_not(None))
                )
            ),
        }

    @staticmethod
    def _compare(expect: dict[str, Any], actual: dict[str, Any], where: str) -> None:
        wrong = {
            key: {"expected": value, "actual": actual.get(key, "<not observed>")}
            for key, value in expect.items()
            if actual.get(key, "<not observed>") != value
        }
        assert not wrong, f"{where}: {json.dumps(wrong, indent=1, default=str)}"


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_scenario(case: Path, gateway, session, engine) -> None:  # type: ignore[no-untyped-def]
    Scenario(case, gateway, session, engine).run()


def test_corpus_is_large_and_every_case_is_valid() -> None:
    folders = cases()
    emls = list(CORPUS.rglob("*.eml"))
    assert len(folders) >= 60
    assert len(emls) >= 60
    for folder in folders:
        validate(json.loads((folder / "case.json").read_text()), folder.name)
        for step in json.loads((folder / "case.json").read_text())["steps"]:
            if "send" in step:
                assert (folder / step["send"]).is_file(), (folder.name, step["send"])


def test_unknown_keys_are_rejected() -> None:
    base = {"description": "x", "steps": [{"send": "a.eml", "expect": {"outcome": "new_ticket"}}]}
    validate(base, "ok")
    for broken in (
        {"description": "x", "steps": [{"send": "a.eml", "expect": {"outcom": "new_ticket"}}]},
        {"description": "x", "steps": [{"send": "a.eml", "set": {}}]},
        {"description": "x", "steps": [{"check": {"flags": []}}]},
        {"description": "x", "steps": [{"sned": "a.eml"}]},
    ):
        with pytest.raises(ScenarioError):
            validate(broken, "broken")


def test_a_wrong_expectation_fails(gateway, session, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The runner is not vacuous: one wrong value in a passing scenario makes it fail."""
    folder = tmp_path / "wrong"
    shutil.copytree(CORPUS / "gmail-reply-to-acknowledgement", folder)
    shutil.copytree(CORPUS / "_shared", tmp_path / "_shared")
    spec = json.loads((folder / "case.json").read_text())
    spec["steps"][-1]["expect"]["rule"] = "subject_tag"
    (folder / "case.json").write_text(json.dumps(spec))
    with pytest.raises(AssertionError, match="subject_tag"):
        Scenario(folder, gateway, session, engine).run()


@pytest.mark.parametrize(
    "case,number,ccs,flags",
    [
        (
            "reply-all-from-cc",
            1,
            ["carol.jones@customer.example", "dave.kim@customer.example"],
            [[], ["acknowledgement"], []],
        ),
        (
            "exchange-ooo-reply-to-acknowledgement",
            1,
            [],
            [[], ["acknowledgement"], ["auto_reply", "out_of_office"]],
        ),
    ],
)
def test_api_exposes_ccs_and_message_flags(  # type: ignore[no-untyped-def]
    case, number, ccs, flags, gateway, session, engine, client, make_user
) -> None:
    """Issue 3, item 9, read back through the JSON API after the scenario ran."""
    Scenario(CORPUS / case, gateway, session, engine).run()
    token = make_user("manager@example.com", "manager")
    detail = client.get(
        f"/api/v1/tickets/{number}", headers={"Authorization": f"Bearer {token}"}
    ).get_json()
    assert sorted(detail["ccs"]) == ccs
    assert [sorted(m["flags"]) for m in detail["messages"]] == flags

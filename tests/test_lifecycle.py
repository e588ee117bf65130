"""The ticket lifecycle, on SQLite and PostgreSQL: every change writes its history
with the right actor and emits the right typed event (with before and after),
to subscribers that run in the same transaction, may call the lifecycle again
(a chain with a depth, bounded), and roll the change back when they fail.

Each test wires a dispatcher as the product does (``subscribers.standard``)
plus a recorder that keeps every event it is given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.accounts import users
from helpdesk.db import session_factory
from helpdesk.models import OutboxMail, Tag, Ticket, TicketEvent, User
from helpdesk.subscribers import standard
from helpdesk.tickets import contacts, conversation, history, lifecycle, queues
from helpdesk.tickets.actors import Actor
from helpdesk.tickets.conversation import NewMessage, Opening
from helpdesk.tickets.dispatch import ChainTooDeep, Dispatcher, NoDispatcher, attach
from helpdesk.tickets.events import (
    Change,
    Event,
    MessageFailed,
    MessageReceived,
    MessageSent,
    NoteAdded,
    ReplyQueued,
    SlaBreached,
    SlaWarning,
    TicketCreated,
    TicketMerged,
    TicketUpdated,
)
from helpdesk.tickets.operation import DirectWrite
from tests.test_web_smoke import sign_in

NOW = datetime(2026, 5, 18, 9, 0, tzinfo=UTC)  # a Monday, office hours
ANNA = "anna@example.com"
BEN = "ben@example.com"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, session: Session, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def desk(engine, settings):  # type: ignore[no-untyped-def]
    """Two agents of help-desk (Anna also in service-desk); a recorder subscribed
    after the standard subscribers."""
    dispatcher = standard(settings)
    recorder = Recorder()
    dispatcher.subscribe(recorder)
    sessions = attach(session_factory(engine, write=True), dispatcher)
    with sessions() as session, session.begin():
        users.add_or_update(
            session, ANNA, role="agent", queue_slugs=["help-desk", "service-desk"], now=NOW
        )
        users.add_or_update(session, BEN, role="agent", queue_slugs=["help-desk"], now=NOW)
    return sessions, dispatcher, recorder


def user(session: Session, email: str) -> User:
    return session.scalars(select(User).where(User.email == email)).one()


def open_one(session: Session, subject: str = "Printer broken", sender: str = "c@x.example"):  # type: ignore[no-untyped-def]
    contact = contacts.get_or_create(session, sender, "Carol", now=NOW)
    return conversation.open_ticket(
        session, queue=queues.by_slug(session, "help-desk"), requester=contact, subject=subject,
        actor=Actor.customer(contact), now=NOW,
        opening=Opening(channel="mail", message=NewMessage(
            from_address=sender, subject=subject, text="It smokes.", message_id=f"<{subject}@x>",
        )),
    )  # fmt: skip


def rows(session: Session, ticket: Ticket) -> list[tuple[str, str, str, str, str]]:
    return [
        (e.kind, e.old_value, e.new_value, e.actor_kind, e.actor_label)
        for e in session.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
        )
    ]


def test_opening_a_ticket_records_its_channel_and_actor_and_emits_ticket_created(desk):
    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        session.flush()
        [created] = recorder.of(TicketCreated)
        assert created.ticket is ticket and created.channel == "mail"
        assert created.actor.kind == "customer" and created.cause.depth == 0
        assert created.acknowledge and not created.automated
        assert created.message.text_body == "It smokes."
        assert rows(session, ticket) == [("created", "", "mail", "customer", "c@x.example")]
        # The standard subscribers ran in the same transaction.
        purposes = sorted(session.scalars(select(OutboxMail.purpose)))
        assert purposes == ["acknowledgement", "notification:new_ticket", "notification:new_ticket"]
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.sla is not None and ticket.sla.first_response_due is not None


def test_each_field_change_writes_history_and_one_update_with_before_and_after(desk):
    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        anna = user(session, ANNA)
        changed = lifecycle.update(
            session, ticket, actor=anna, now=NOW + timedelta(minutes=5),
            status="pending", priority="high", assignee=user(session, BEN), tags=["vpn", "net"],
        )  # fmt: skip
        assert changed
        [update] = recorder.of(TicketUpdated)
        assert dict(update.changes) == {
            "status": Change("new", "pending"),
            "priority": Change("normal", "high"),
            "assignee": Change(None, BEN),
            "tags": Change((), ("net", "vpn")),
        }
        assert update.actor == Actor.agent(anna)
        session.flush()
        assert [r[:3] for r in rows(session, ticket)][1:] == [
            ("assignee", "", BEN),
            ("status", "new", "pending"),
            ("priority", "normal", "high"),
            ("tags", "", "vpn, net"),
        ]
        assert {r[3:] for r in rows(session, ticket)[1:]} == {("agent", ANNA)}
        # Ben hears of the assignment; Anna, who made it, is not told of her own change.
        assigned = session.scalars(
            select(OutboxMail).where(OutboxMail.purpose == "notification:assigned")
        ).all()
        assert [r.rcpt_tos for r in assigned] == [[BEN]]

        # The same values again: nothing changes, nothing is emitted.
        before = len(recorder.events)
        assert not lifecycle.update(session, ticket, actor=anna, now=NOW, status="pending")
        assert len(recorder.events) == before


def test_a_bad_value_changes_nothing(desk):
    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        count = len(recorder.events)
        with pytest.raises(lifecycle.TicketError, match="priority"):
            lifecycle.update(
                session, ticket, actor=user(session, ANNA), now=NOW, status="open", priority="meh"
            )
        assert ticket.status == "new" and len(recorder.events) == count
        outsider = users.add_or_update(
            session, "o@example.com", role="agent", queue_slugs=[], now=NOW
        )
        with pytest.raises(lifecycle.TicketError, match="cannot work in help-desk"):
            lifecycle.assign(session, ticket, outsider, actor=user(session, ANNA), now=NOW)
        with pytest.raises(lifecycle.TicketError, match="cannot move tickets into tech-support"):
            lifecycle.move(
                session, ticket, queues.by_slug(session, "tech-support"),
                actor=user(session, BEN), now=NOW,
            )  # fmt: skip
        assert ticket.assignee is None and ticket.queue.slug == "help-desk"


def test_a_move_unassigns_who_cannot_follow_and_says_so_in_one_update(desk):
    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        lifecycle.assign(session, ticket, user(session, BEN), actor=user(session, BEN), now=NOW)
        lifecycle.move(
            session, ticket, queues.by_slug(session, "service-desk"), actor=user(session, ANNA),
            now=NOW,
        )  # fmt: skip
        move = recorder.of(TicketUpdated)[-1]
        assert dict(move.changes) == {
            "queue": Change("help-desk", "service-desk"),
            "assignee": Change(BEN, None),
        }


def test_actors_of_every_kind_are_named_in_the_history(desk, settings, client, make_user):
    sessions, _, _ = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        anna = user(session, ANNA)
        lifecycle.update(session, ticket, priority="high", actor=Actor.rule(7, "Invoices"), now=NOW)
        lifecycle.set_tags(
            session, ticket, ["billing"], actor=Actor.api_token(anna, 3, "ci-bot"), now=NOW
        )
        lifecycle.update(session, ticket, status="pending", actor=anna, now=NOW)
        conversation.receive_message(
            session, ticket, NewMessage(from_address="c@x.example", text="Any news?"),
            actor=Actor.customer(ticket.requester), now=NOW + timedelta(minutes=1),
        )  # fmt: skip
        lifecycle.record_sla(
            session, ticket, clock="first_response", label="First response", level="warning",
            due=NOW, target_minutes=240, elapsed_minutes=200, running=True, now=NOW,
        )  # fmt: skip
        session.flush()
        texts = [history.actor_text(row) for row in history.of(session, ticket)]
    assert texts == [
        "by customer c@x.example",
        "by rule Invoices",
        f"by API token ci-bot ({ANNA})",
        f"by {ANNA}",
        "by customer c@x.example",  # the customer's message reopened it
        "by system (SLA)",
    ]
    make_user("boss@example.com", "manager")
    sign_in(client, "boss@example.com")
    page = client.get("/tickets/1").data.decode()
    assert "by rule Invoices" in page
    assert f"by API token ci-bot ({ANNA})" in page
    assert "created via mail" in page and "by customer" in page


def test_messages_replies_notes_and_merges_emit_their_events(desk, settings):
    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        first = open_one(session, "First")
        second = open_one(session, "Second", sender="d@x.example")
        anna = user(session, ANNA)
        message, row = conversation.reply(
            session, first, actor=anna, text="Try this.", settings=settings, now=NOW
        )
        [queued] = recorder.of(ReplyQueued)
        assert (queued.message, queued.outbox) == (message, row)
        assert dict(recorder.of(TicketUpdated)[-1].changes) == {"status": Change("new", "open")}
        note = conversation.add_note(session, first, actor=anna, text="Known issue", now=NOW)
        assert recorder.of(NoteAdded)[0].message is note
        lifecycle.update(session, first, status="resolved", actor=anna, now=NOW)
        conversation.receive_message(
            session, first, NewMessage(from_address="c@x.example", text="Still broken"),
            actor=Actor.customer(first.requester), now=NOW,
        )  # fmt: skip
        [received] = recorder.of(MessageReceived)
        assert received.actor.kind == "customer" and not received.automated
        reopened = recorder.of(TicketUpdated)[-1]
        assert reopened.cause.operation == received.cause.operation  # one call, two events
        assert dict(reopened.changes) == {"status": Change("resolved", "open")}
        # An auto-reply changes no status.
        conversation.receive_message(
            session, first, NewMessage(from_address="c@x.example", flags=["auto_reply"]),
            actor=Actor.customer(first.requester), now=NOW,
        )  # fmt: skip
        assert recorder.of(MessageReceived)[-1].automated
        assert recorder.events[-1] is recorder.of(MessageReceived)[-1]

        lifecycle.merge(session, second, first, actor=anna, now=NOW)
        [merged] = recorder.of(TicketMerged)
        assert (merged.ticket, merged.into) == (second, first)
        assert dict(recorder.of(TicketUpdated)[-1].changes) == {"status": Change("new", "closed")}
        session.flush()
        assert [r[:3] for r in rows(session, second)][1:] == [
            ("merge", "", f"#{first.number}"),
            ("status", "new", "closed"),
        ]
        assert ("merge", f"#{second.number}", "") in [r[:3] for r in rows(session, first)]
        assert ("reply", "", "") in [r[:3] for r in rows(session, first)]
        assert ("note", "", "") in [r[:3] for r in rows(session, first)]


def test_sla_events_and_delivery_events(desk, settings, relay, relay_settings):
    from helpdesk.sla.escalation import escalate
    from mailgate.outbox_sender import OutboxWorker

    sessions, _, recorder = desk
    with sessions() as session, session.begin():
        open_one(session)
    with sessions() as session, session.begin():
        escalate(session, now=NOW + timedelta(hours=3, minutes=30))  # past 80% of 4 hours
    [warning] = recorder.of(SlaWarning)
    assert (warning.clock, warning.running, warning.target_minutes) == ("first_response", True, 240)
    with sessions() as session, session.begin():
        escalate(session, now=NOW + timedelta(hours=4, minutes=1))
    assert [e.clock for e in recorder.of(SlaBreached)] == ["first_response"]

    relay.handler.replies.append("550 5.1.1 no such user")  # the acknowledgement fails for good
    worker = OutboxWorker(sessions, relay_settings)
    for _ in range(10):
        if not worker.run_once():
            break
    [failed] = recorder.of(MessageFailed)
    assert failed.outbox.purpose == "acknowledgement" and "550" in failed.error
    assert failed.message.kind == "outbound"
    # Notifications went out, but they are not messages of the thread: no MessageSent.
    assert recorder.of(MessageSent) == []
    assert len(relay.messages) >= 2

    with sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        conversation.reply(
            session, ticket, actor=user(session, ANNA), text="Hi", settings=settings, now=NOW
        )
    worker.run_once()
    [sent] = recorder.of(MessageSent)
    assert sent.outbox.purpose == "reply" and sent.message.text_body.startswith("Hi")


# --- Subscribers: re-entrant, bounded, failing ---------------------------------


def test_a_subscriber_may_change_the_ticket_again_and_the_chain_says_so(desk):
    sessions, dispatcher, recorder = desk
    rule = Actor.rule(1, "Printers are urgent")

    def printers_are_urgent(session: Session, event: Event) -> None:
        printer = isinstance(event, TicketCreated) and "Printer" in event.ticket.subject
        if printer and rule not in event.cause.chain and event.cause.depth < 3:
            lifecycle.update(session, event.ticket, priority="urgent", actor=rule, now=event.at)

    dispatcher.subscribe(printers_are_urgent, TicketCreated)
    with sessions() as session, session.begin():
        ticket = open_one(session)
        session.flush()
        assert ticket.priority == "urgent"
        [created] = recorder.of(TicketCreated)
        [raised] = recorder.of(TicketUpdated)
        assert raised.cause.parent is created
        assert raised.cause.depth == 1
        assert raised.cause.chain == (Actor.customer(ticket.requester), rule)
        assert rows(session, ticket)[-1] == ("priority", "normal", "urgent", "rule", rule.label)
        # The SLA clocks follow the rule's change (the policy may depend on the priority).
        assert ticket.priority == "urgent"


def test_a_loop_of_reactions_is_stopped(desk):
    sessions, dispatcher, _ = desk

    def ping_pong(session: Session, event: Event) -> None:
        if isinstance(event, TicketUpdated):
            flip = "low" if event.ticket.priority == "high" else "high"
            lifecycle.update(
                session, event.ticket, priority=flip, actor=Actor.rule(2, "Flip"), now=event.at
            )

    dispatcher.subscribe(ping_pong, TicketUpdated)
    with sessions() as session, session.begin():
        ticket = open_one(session)
        with pytest.raises(ChainTooDeep):
            lifecycle.update(session, ticket, priority="high", actor=user(session, ANNA), now=NOW)


def test_a_failing_subscriber_rolls_the_change_back(desk, engine):
    sessions, dispatcher, _ = desk
    with sessions() as session, session.begin():
        open_one(session)

    def refuse(session: Session, event: Event) -> None:
        raise RuntimeError("webhook table is full")

    dispatcher.subscribe(refuse, TicketUpdated)
    with pytest.raises(RuntimeError, match="webhook"), sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        lifecycle.update(session, ticket, status="pending", actor=user(session, ANNA), now=NOW)
    with session_factory(engine)() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.status == "new"
        assert [r[0] for r in rows(session, ticket)] == ["created"]


def test_a_session_without_a_dispatcher_cannot_change_a_ticket(desk, engine):
    sessions, _, _ = desk
    with sessions() as session, session.begin():
        open_one(session)
    with session_factory(engine, write=True)() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        with pytest.raises(NoDispatcher):
            lifecycle.update(session, ticket, status="open", actor=user(session, ANNA), now=NOW)
        assert ticket.status == "new"
    plain = Dispatcher()
    with attach(session_factory(engine, write=True)(), plain) as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        assert lifecycle.update(session, ticket, status="open", actor=user(session, ANNA), now=NOW)


def test_nothing_outside_the_lifecycle_may_set_a_ticket_field_or_write_history(desk):
    """The guard the test suite runs under (``install_guard`` in conftest)."""
    sessions, _, _ = desk
    with sessions() as session, session.begin():
        ticket = open_one(session)
        session.flush()
        with pytest.raises(DirectWrite, match=r"Ticket\.status"):
            ticket.status = "closed"
        with pytest.raises(DirectWrite, match=r"Ticket\.assignee"):
            ticket.assignee = user(session, ANNA)
        with pytest.raises(DirectWrite, match=r"Ticket\.tags"):
            ticket.tags.append(Tag(name="x"))
        with pytest.raises(DirectWrite, match="TicketEvent"):
            TicketEvent(ticket_id=ticket.id, kind="status", created_at=NOW)


def test_a_new_tickets_clocks_from_the_event_equal_a_full_recomputation(
    gateway, engine, settings, make_user
):
    """The SLA subscriber computes a new ticket's clocks from its first message alone
    (and the batch's preloaded policies); recomputing from the database agrees."""
    from helpdesk.sla import service as sla_service
    from helpdesk.subscribers import writing_sessions
    from tests.test_outbound import customer_mail

    make_user(ANNA, "agent", ["help-desk"])
    gateway.send(customer_mail("<p1@customer.example>"), mail_from="p@customer.example")
    gateway.send(
        customer_mail("<p2@customer.example>", subject="Newsletter", headers="Precedence: bulk"),
        mail_from="p@customer.example",
    )
    columns = [c.key for c in sla_service.TicketSla.__table__.columns if c.key != "computed_at"]

    def stored() -> list[tuple]:
        with session_factory(engine)() as session:
            rows = session.scalars(
                select(sla_service.TicketSla).order_by(sla_service.TicketSla.ticket_id)
            )
            return [tuple(getattr(row, c) for c in columns) for row in rows]

    fast = stored()
    assert len(fast) == 2 and fast[0] != fast[1]  # the automated one has no customer message
    with writing_sessions(engine, settings)() as session, session.begin():
        for ticket in session.scalars(select(Ticket)):
            sla_service.refresh(session, ticket, now=ticket.created_at)
    assert stored() == fast

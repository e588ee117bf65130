"""The rules and macros pages through the Flask test client: an admin builds a
rule from form rows (no JSON), previews it on past events, saves it and it acts
on the next mail; the list enables, disables and reorders; macros are kept by
admins and applied by agents to a ticket and to a selection."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.models import Macro, Rule, Ticket
from tests.rules_support import by_rule, mail, make_desk, ticket
from tests.test_web_smoke import csrf, sign_in

ADMIN, AGENT = "admin@example.com", "agent@example.com"


def rule_form(token: str, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "name": "Invoices to service desk",
        "trigger": "ticket.created",
        "position": "10",
        "enabled": "y",
        "match": "all",
        "conditions-0-field": "subject",
        "conditions-0-op": "contains",
        "conditions-0-value": "invoice",
        "conditions-1-field": "queue",
        "conditions-1-op": "is",
        "conditions-1-value": "help-desk",
        "also_match": "any",
        "also-0-field": "",
        "actions-0-kind": "queue",
        "actions-0-value": "service-desk",
        "actions-1-kind": "add_tags",
        "actions-1-value": "billing, money",
        **extra,
    }


def test_admin_builds_previews_and_saves_a_rule_that_acts_on_the_next_mail(
    engine, settings, app, make_user, session
):  # type: ignore[no-untyped-def]
    desk = make_desk(engine, settings)
    make_user(ADMIN, "admin")
    make_user(AGENT, "agent", ["help-desk"])
    before = desk.receive(mail("Invoice for March"))
    desk.receive(mail("Printer on fire"))

    agent = app.test_client()
    sign_in(agent, AGENT)
    assert agent.get("/admin/rules").status_code == 404
    client = app.test_client()
    sign_in(client, ADMIN)
    page = client.get("/admin/rules/new")
    assert page.status_code == 200 and b"Conditions: match" in page.data
    token = csrf(page.data)

    more = client.post("/admin/rules/new", data=rule_form(token, do="add_condition"))
    assert more.status_code == 200 and b'name="conditions-2-field"' in more.data
    shown = client.post("/admin/rules/new", data=rule_form(token, do="preview"))
    assert shown.status_code == 200
    assert b"Preview: 1 of the last 2 ticket.created events" in shown.data
    assert b"no: subject does not contain &#39;invoice&#39;" in shown.data
    checked = client.post("/admin/rules/new", data=rule_form(token, do="check", ticket=str(before)))
    assert b"the conditions hold" in checked.data
    assert session.scalars(select(Rule)).all() == []  # nothing saved by trying

    bad = client.post("/admin/rules/new", data=rule_form(token, **{"conditions-0-op": "gte"}))
    assert b"subject takes the operators" in bad.data
    saved = client.post("/admin/rules/new", data=rule_form(token, do="save"))
    assert saved.status_code == 302
    rule = session.scalars(select(Rule)).one()
    assert rule.enabled and rule.conditions == {"all": [
        {"field": "subject", "op": "contains", "value": "invoice"},
        {"field": "queue", "op": "is", "value": "help-desk"},
    ]}  # fmt: skip
    assert rule.actions == [{"set": "queue", "value": "service-desk"},
                            {"add_tags": ["billing", "money"]}]  # fmt: skip
    # The page shows the rule back as rows, and saving it unchanged keeps it.
    edit = client.get(f"/admin/rules/{rule.id}")
    assert b'value="invoice"' in edit.data and b"billing, money" in edit.data

    number = desk.receive(mail("Invoice for April"))
    assert ticket(session, number).queue.slug == "service-desk"
    assert ("queue", "help-desk", "service-desk") in by_rule(session, number, rule.name)
    log = client.get(f"/admin/rules/{rule.id}")
    assert b"queue help-desk \xe2\x86\x92 service-desk" in log.data

    # The list: disable, enable, reorder.
    other = client.post("/admin/rules/new", data=rule_form(
        token, name="Second", position="20", **{"actions-1-kind": ""}))  # fmt: skip
    assert other.status_code == 302
    second = session.scalars(select(Rule).where(Rule.name == "Second")).one()
    disabled = client.post(f"/admin/rules/{rule.id}/disable", data={"csrf_token": token})
    assert disabled.status_code == 302
    session.expire_all()
    assert not session.get(Rule, rule.id).enabled
    client.post(f"/admin/rules/{second.id}/up", data={"csrf_token": token})
    session.expire_all()
    assert [r.name for r in session.scalars(select(Rule).order_by(Rule.position))] == [
        "Second", "Invoices to service desk",
    ]  # fmt: skip
    listing = client.get("/admin/rules")
    assert listing.data.index(b"Second") < listing.data.index(b"Invoices to service desk")


def test_macros_kept_by_admins_applied_by_agents(engine, settings, app, make_user, session):  # type: ignore[no-untyped-def]
    desk = make_desk(engine, settings)
    make_user(ADMIN, "admin")
    make_user(AGENT, "agent", ["help-desk"])
    numbers = [desk.receive(mail(f"Printer {i}")) for i in range(3)]
    elsewhere = desk.receive(mail("Server down"), queue="tech-support")
    admin = app.test_client()
    sign_in(admin, ADMIN)
    token = csrf(admin.get("/admin/macros/new").data)
    response = admin.post("/admin/macros/new", data={
        "csrf_token": token, "name": "Waiting for logs", "queue": "help-desk", "position": "1",
        "reply": "Please send us the printer's log.",
        "actions-0-kind": "status", "actions-0-value": "pending",
        "actions-1-kind": "assignee", "actions-1-value": "me",
        "actions-2-kind": "add_tags", "actions-2-value": "logs",
    })  # fmt: skip
    assert response.status_code == 302
    macro = session.scalars(select(Macro)).one()

    agent = app.test_client()
    sign_in(agent, AGENT)
    page = agent.get(f"/tickets/{numbers[0]}")
    assert b"Waiting for logs" in page.data
    token = csrf(page.data)
    done = agent.post(f"/tickets/{numbers[0]}/macro", data={"csrf_token": token, "macro": macro.id})
    assert done.status_code == 302
    first = ticket(session, numbers[0])
    assert (first.status, first.assignee.email) == ("pending", AGENT)
    assert [m.kind for m in first.messages] == ["inbound", "outbound", "outbound"]  # ack, reply
    # A selection in a list; the other queue's ticket is left out (not the agent's).
    response = agent.post("/tickets/macro", data={
        "csrf_token": token, "macro": macro.id, "back": "/views/all",
        "ticket": [str(numbers[1]), str(numbers[2]), str(elsewhere)],
    })  # fmt: skip
    assert response.status_code == 302
    for number in numbers[1:]:
        assert ticket(session, number).status == "pending"
    assert ticket(session, elsewhere).status == "new"
    refused = agent.post(
        f"/tickets/{elsewhere}/macro", data={"csrf_token": token, "macro": macro.id}
    )
    assert refused.status_code == 404
    assert session.scalars(select(Ticket).where(Ticket.number == elsewhere)).one().status == "new"

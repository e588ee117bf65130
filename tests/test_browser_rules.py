"""Rules and macros in a real browser (Debian's chromium via Playwright), on
SQLite and PostgreSQL: an admin builds a rule in the form (adding a row),
previews it on past mail, saves it, and it acts on the next mail with its
name in the ticket's history; an admin makes a macro and an agent applies it
from the ticket page. No CSP violation, script error or dialog on the way."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.models import Rule
from tests.rules_support import by_rule, mail, make_desk, ticket

pytest_plugins = ["tests.browser_support"]


def test_admin_builds_a_rule_and_an_agent_applies_a_macro(  # type: ignore[no-untyped-def]
    engine, settings, session, make_user, open_agent
):
    desk = make_desk(engine, settings)
    make_user("admin@example.com", "admin")
    make_user("agent@example.com", "agent", ["help-desk"])
    desk.receive(mail("Invoice 17 is wrong"))
    desk.receive(mail("Printer on fire"))

    admin = open_agent("admin")
    admin.sign_in("admin@example.com")
    admin.open("/admin/rules")
    admin.click_and_load(admin.page.get_by_role("link", name="New rule"))
    page = admin.page
    page.get_by_label("Name").fill("Invoices to service desk")
    page.get_by_label("When").select_option("ticket.created")
    page.get_by_label("Enabled").check()
    page.get_by_label("Condition 1 field").select_option("subject")
    page.get_by_label("Condition 1 operator").select_option("contains")
    page.get_by_label("Condition 1 value").fill("invoice")
    admin.click_and_load(page.get_by_role("button", name="Add condition"))
    assert page.get_by_label("Name").input_value() == "Invoices to service desk"  # kept
    page.get_by_label("Condition 2 field").select_option("queue")
    page.get_by_label("Condition 2 operator").select_option("is")
    page.get_by_label("Condition 2 value").fill("help-desk")
    page.get_by_label("Action 1", exact=True).select_option("queue")
    page.get_by_label("Action 1 value").fill("service-desk")
    admin.click_and_load(page.get_by_role("button", name="Add action"))
    page.get_by_label("Action 2", exact=True).select_option("add_tags")
    page.get_by_label("Action 2 value").fill("billing")
    admin.click_and_load(page.get_by_role("button", name="Preview"))
    preview = page.locator("#preview").inner_text()
    assert "Preview: 1 of the last 2 ticket.created events" in preview
    assert "Invoice 17 is wrong" in preview
    assert session.scalars(select(Rule)).all() == []
    admin.screenshot("rule-preview")
    admin.click_and_load(page.get_by_role("button", name="Save rule"))
    assert "Saved rule Invoices to service desk." in page.locator(".flash").first.inner_text()
    rule = session.scalars(select(Rule)).one()
    assert rule.enabled and rule.actions == [
        {"set": "queue", "value": "service-desk"},
        {"add_tags": ["billing"]},
    ]

    number = desk.receive(mail("Invoice 18 too"))
    assert ticket(session, number).queue.slug == "service-desk"
    admin.open(f"/tickets/{number}")
    assert "by rule Invoices to service desk" in page.locator(".history").inner_text()
    assert by_rule(session, number, "Invoices to service desk")

    # A macro, and an agent applying it from the ticket page.
    admin.open("/admin/macros/new")
    page.get_by_label("Name").fill("Ask for the log")
    page.get_by_label("Reply (optional)").fill("Please send us the printer's log.")
    page.get_by_label("Action 1", exact=True).select_option("status")
    page.get_by_label("Action 1 value").fill("pending")
    admin.click_and_load(page.get_by_role("button", name="Save macro"))
    printer = desk.receive(mail("Printer still on fire", sender="carl@customer.example"))

    agent = open_agent("agent")
    agent.sign_in("agent@example.com")
    agent.open(f"/tickets/{printer}")
    agent.page.get_by_label("Macro").select_option(label="Ask for the log")
    agent.click_and_load(agent.page.get_by_role("button", name="Apply", exact=True))
    assert "Applied Ask for the log" in agent.page.locator(".flash").first.inner_text()
    found = ticket(session, printer)
    assert found.status == "pending"
    assert any(m.kind == "outbound" and "printer's log" in m.text_body for m in found.messages)
    agent.screenshot("macro-applied")
    for person in (admin, agent):
        assert person.guard.problems() == {}, person.guard.problems()

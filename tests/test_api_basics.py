"""The API's frame: its OpenAPI document, problem documents, paging, the rate limit
and the docs page. (Every response here is also checked against the document by
the ``app`` fixture.)"""

from __future__ import annotations

from dataclasses import replace

import pytest
from openapi_spec_validator import validate

from helpdesk.web import create_app
from tests.api_support import bearer, document, open_tickets

PROBLEM = "application/problem+json"


def test_the_document_is_valid_openapi_3_1_and_lists_every_route(app, client) -> None:
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200
    doc = served.get_json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # openapi-spec-validator: raises on any error
    assert doc == document()
    declared = {
        (f"/api/v1{path}".replace("{", "<").replace("}", ">"), method.upper())
        for path, item in doc["paths"].items()
        for method in item
    }
    routed = {
        (rule.rule.replace("<int:", "<"), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.openapi"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert declared == routed


def test_errors_are_problem_documents(client, make_user) -> None:
    token = make_user("agent@example.com", "agent", ["help-desk"])

    anonymous = client.get("/api/v1/tickets")
    assert anonymous.status_code == 401 and anonymous.mimetype == PROBLEM
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.get_json()["status"] == 401
    assert client.get("/api/v1/tickets", headers=bearer("hd_forged")).status_code == 401

    bad = client.get("/api/v1/tickets?status=bogus&page=0", headers=bearer(token))
    assert bad.status_code == 422 and bad.mimetype == PROBLEM
    problem = bad.get_json()
    assert problem["type"] == "/api/docs#problem-validation"
    assert {(e["field"], e["location"]) for e in problem["errors"]} == {
        ("status", "query"),
        ("page", "query"),
    }

    nowhere = client.get("/api/v1/no-such-thing", headers=bearer(token))
    assert nowhere.status_code == 404 and nowhere.mimetype == PROBLEM
    missing = client.get("/api/v1/tickets/999999", headers=bearer(token))
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    wrong_method = client.delete("/api/v1/tickets", headers=bearer(token))
    assert wrong_method.status_code == 405 and wrong_method.mimetype == PROBLEM
    assert "GET" in wrong_method.headers["Allow"]
    # The web app's own pages keep their HTML 404.
    assert client.get("/no-such-page").mimetype == "text/html"


def test_an_agent_is_not_shown_reports(client, make_user) -> None:
    token = make_user("agent@example.com", "agent", ["help-desk"])
    assert client.get("/api/v1/reports/sla", headers=bearer(token)).status_code == 404


def test_pages_link_to_the_next_one(client, make_user, sessions) -> None:
    token = make_user("agent@example.com", "agent", ["help-desk"])
    open_tickets(sessions, 51)
    first = client.get("/api/v1/tickets?status=any&q=customer", headers=bearer(token))
    assert first.status_code == 200
    assert first.get_json()["total"] == 51 and len(first.get_json()["tickets"]) == 50
    link = first.headers["Link"]
    assert link == ('<http://localhost/api/v1/tickets?status=any&q=customer&page=2>; rel="next"'), (
        link
    )
    second = client.get("/api/v1/tickets?status=any&q=customer&page=2", headers=bearer(token))
    assert len(second.get_json()["tickets"]) == 1
    assert 'rel="next"' not in second.headers["Link"]
    assert 'page=1>; rel="prev"' in second.headers["Link"]


def test_each_token_is_rate_limited_with_retry_after(settings, engine, make_user) -> None:
    app = create_app(replace(settings, api_rate_limit="3/minute"), engine)
    client = app.test_client()
    first = make_user("one@example.com", "agent", ["help-desk"])
    second = make_user("two@example.com", "agent", ["help-desk"])
    for _ in range(3):
        assert client.get("/api/v1/tickets", headers=bearer(first)).status_code == 200
    limited = client.get("/api/v1/tickets", headers=bearer(first))
    assert limited.status_code == 429 and limited.mimetype == PROBLEM
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/tickets", headers=bearer(second)).status_code == 200


def test_a_bad_rate_limit_setting_is_refused(settings) -> None:
    from helpdesk.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="API_RATE_LIMIT"):
        Settings.load(environ={"HELPDESK_API_RATE_LIMIT": "lots"}, dotenv_path=None)


def test_the_docs_page_is_ours_and_loads_nothing_from_elsewhere(client) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'src="/static/api-docs.js"' in html
    assert "https://" not in html and "//cdn" not in html
    assert 'id="problem-validation"' in html  # where a problem's type points
    script = client.get("/static/api-docs.js").get_data(as_text=True)
    assert "innerHTML" not in script and "http" not in script.replace("HTTP ", "")

"""Names vulture (.ci/run) would report as unused that are used where it does not look.

Vulture reads only helpdesk/ and mailgate/. Each name here is used by a framework
that calls it by name, by a Jinja template, by SQL or a person reading the
database, or by the tests and benchmarks; the comment says which. Anything else
it reports is dead: delete it rather than adding it here.
"""
# ruff: noqa: B018, F821 - a list of names for vulture to see, never run

# SQLAlchemy, Alembic and sqlite3 call these by name.
_.isolation_level  # sqlite3 connection: autocommit mode, so BEGIN IMMEDIATE is ours (db.py)
include_name  # Alembic's autogenerate filter (db.py)
parent_names  # its signature
type_  # its signature
impl  # TypeDecorator (models/base.py)
cache_ok
_.process_bind_param
_.process_result_value
type_annotation_map  # DeclarativeBase
_.autocommit  # psycopg connection: an advisory lock and LISTEN outside transactions
tokens  # User.tokens: the relationship that deletes a user's API tokens with the user

# Columns: written here, read by SQL (reports, migrations), templates or people.
old_value  # TicketEvent: the history shows it (templates/ticket.html)
acquired_at  # Lease
_.acquired_at
processed_at  # RawMail
_.processed_at
computed_at  # TicketSla
_.computed_at
closed_at  # Ticket
_.closed_at
last_used_at  # ApiToken

# Read by Jinja templates, or as dataclass fields by asdict() (JSON and CSV).
quoted  # FoldedText: the folded quote on the ticket page
first_response_median  # Figures: reports page, CSV, JSON API
first_response_p90
resolution_within
next_response_within
_.pages  # Page: pagination in templates/list.html
series  # Bar, Chart: the SVG chart template
line_name
_.remote_images  # flask.g: the Content-Security-Policy reads it with g.get()

# Flask, Flask-Login, Flask-WTF and Werkzeug read these.
_.choices  # WTForms select fields
_.status_code  # responses
is_active  # Flask-Login's user protocol (web/login.py)
is_anonymous
_.get_id
_.login_view  # LoginManager settings
_.session_protection
_._session_identifier_generator

# aiosmtpd calls these (mailgate/handler.py, mailgate/server.py).
_.handle_EHLO
_.handle_RCPT
_.handle_DATA
_.handle_exception
line_length_limit  # SMTP class attribute
_.smtp_DATA
_.factory  # Controller

# Used by the tests and benchmarks.
is_sqlite  # db.py
pending  # intake/spool.py: how many messages wait; tests wait for the applier with it
batches  # applier and committer statistics: how many group commits a test saw
_.batches
message_id_derived  # InboundEmail: whether parse made the Message-ID up (tests/test_parse.py)
_.api_token  # Actor.api_token: an API token's changes (tests; the API)
direct_writes  # the guard that only the lifecycle writes tickets (tests/conftest.py)
install_guard

# Pydantic and SQLAlchemy read these class attributes by name.
model_config  # pydantic models (helpdesk/api, helpdesk/automation/schema.py)
inherit_cache  # SQLAlchemy's compiler cache (automation/sqlfilter.py)
# Rules: the kinds a form offers (templates), and a column people read in the database.
SET_FIELDS  # automation/schema.py: the fields a "set" action may name (rule form)
NOTIFY_WHOM  # automation/schema.py: whom a "notify" action may name (rule form)
acted_at  # RuleMark: when a time rule last acted (read by people and the rule's log)
_.acted_at
# Used by the tests.
count_events  # automation/preview.py (tests/test_rules_*.py)
count_runs  # automation/record.py (tests/test_rules_*.py)
sanitise_html  # mail/display.py (tests/test_render.py, tests/test_browser_findings.py)
# API response fields: pydantic serialises them by name into the JSON and the OpenAPI document.
from_  # api/schemas.py
requester_name  # api/schemas.py
merged_into  # api/schemas.py

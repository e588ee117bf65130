"""Answers for a database that is locked or unreachable: ``503`` with
``Retry-After``, never a 500.

The page is a constant: rendering a template would run the context
processors, which ask the database who is signed in and would fail again.
The log line names the view and the driver's error class and first line,
never the request's path, cookies or query parameters (the engines also hide
SQL parameters).
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

RETRY_AFTER_SECONDS = 5
PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Busy · helpdesk</title>"
    "<main><h1>The help desk is busy</h1><p>The database did not answer in time. "
    "Nothing was changed; try again in a few seconds.</p></main></html>"
)


def _unavailable(error: Exception) -> Response:
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).splitlines() or [""])[0][:200]
    current_app.logger.warning(
        "database unavailable in %s (%s: %s); answered 503",
        request.endpoint, type(cause).__name__, first_line,
    )  # fmt: skip
    if request.blueprint == "api":
        from helpdesk.api.registry import ApiError
        from helpdesk.web.api import problem_response

        return problem_response(
            ApiError(503, "the database is busy; try again shortly",
                     headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        )  # fmt: skip
    else:
        response = Response(PAGE, mimetype="text/html")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(OperationalError, _unavailable)
    app.register_error_handler(PoolTimeout, _unavailable)

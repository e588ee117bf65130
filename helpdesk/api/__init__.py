"""The JSON API's operations, declared without a web framework.

Each module declares its operations on a ``Registry`` (``registry.py`` says
how); ``operations()`` gathers them in a fixed order. The web binding
(``helpdesk.web.api``) serves them under /api/v1 and the same declarations
make the OpenAPI document.
"""

from __future__ import annotations

from helpdesk.api.registry import Registry


def operations() -> Registry:
    """Every operation of the API, in the order the document lists them."""
    from helpdesk.api import conversation, directory, reports, tickets

    merged = Registry()
    for module in (tickets, conversation, directory, reports):
        merged.operations += module.api.operations
    return merged

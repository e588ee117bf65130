"""Idempotency-Key: the same POST sent again within 24 hours changes nothing again.

A POST with a key first claims (token, key) by inserting a row, in the same
transaction as the change it is about to make; the answer is written to that
row before the commit. So the row exists exactly when the change does:

- sent again later, the row is found: same fingerprint (operation, path and
  body), the stored answer is returned; another fingerprint is a 422;
- sent twice at once: on PostgreSQL the second insert waits on the unique
  index until the first transaction ends, then fails (found: as above) or,
  if the first rolled back, goes through; on SQLite write transactions run
  one at a time (BEGIN IMMEDIATE), so the second finds the first's row;
- a request that fails leaves no row (its transaction rolls back), so it may
  simply be tried again.

Rows older than 24 hours no longer count; ``prune`` deletes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from helpdesk.models import IdempotentRequest

WINDOW = timedelta(hours=24)
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


class KeyReused(ValueError):
    """The key was used within the window for another request."""


def fingerprint(operation: str, path: dict[str, Any], body: Any, files: list) -> str:  # type: ignore[type-arg]
    """What makes two requests "the same": operation, path, parsed body, files' hashes."""
    data = {
        "operation": operation,
        "path": path,
        "body": body,
        "files": [
            [name, ctype, hashlib.sha256(content).hexdigest()] for name, ctype, content in files
        ],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Claim:
    row: IdempotentRequest
    replay: bool  # True: answer with the stored response, change nothing


def claim(session: Session, token_id: int, key: str, print_: str, *, now: datetime) -> Claim:
    """Claim the key for this request, or find the earlier request's answer."""
    row = _find(session, token_id, key)
    if row is not None and row.created_at < now - WINDOW:
        session.delete(row)
        session.flush()
        row = None
    if row is None:
        row = IdempotentRequest(token_id=token_id, key=key, fingerprint=print_, created_at=now)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            # A request with the same key committed meanwhile: its answer is there now.
            row = _find(session, token_id, key)
            if row is None:  # pragma: no cover - deleted by prune in between
                raise
        else:
            return Claim(row, replay=False)
    if row.fingerprint != print_:
        raise KeyReused("this Idempotency-Key was used with another request in the last 24 hours")
    return Claim(row, replay=True)


def record(claim_: Claim, status: int, body: str, location: str = "") -> None:
    """The answer, written with the change (the caller commits both)."""
    claim_.row.status = status
    claim_.row.body = body
    claim_.row.location = location


def prune(session: Session, *, now: datetime) -> int:
    """Delete the rows that no longer count."""
    result = session.execute(
        delete(IdempotentRequest).where(IdempotentRequest.created_at < now - WINDOW)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def _find(session: Session, token_id: int, key: str) -> IdempotentRequest | None:
    stmt = select(IdempotentRequest).where(
        IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
    )
    return session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()

"""Canned responses: reusable reply texts, for every queue or one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import CannedResponse, Queue


class CannedError(ValueError):
    """The canned response is not valid; the message is safe to show."""


def all_responses(session: Session) -> list[CannedResponse]:
    return list(session.scalars(select(CannedResponse).order_by(CannedResponse.title)))


def create(
    session: Session, *, title: str, body: str, queue: Queue | None, now: datetime
) -> CannedResponse:
    if not title.strip() or not body.strip():
        raise CannedError("a canned response needs a title and a text")
    response = CannedResponse(title=title.strip()[:200], body=body, queue=queue, created_at=now)
    session.add(response)
    return response


def delete(session: Session, response: CannedResponse) -> None:
    session.delete(response)

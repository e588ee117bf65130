"""Contacts: finding or creating the person behind an address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.mail.addresses import normalise_address
from helpdesk.models import Contact


def get_or_create(session: Session, address: str, name: str, *, now: datetime) -> Contact:
    """The contact for ``address``; a better display name fills an empty one."""
    address = normalise_address(address)
    contact = session.scalars(select(Contact).where(Contact.email == address)).one_or_none()
    if contact is None:
        contact = Contact(email=address, name=name[:200], created_at=now)
        session.add(contact)
        session.flush()
    elif name and not contact.name:
        contact.name = name[:200]
    return contact

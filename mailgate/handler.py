"""The aiosmtpd handler: validates recipients, hands DATA to the committer, and
maps outcomes to SMTP replies. No database work runs on the event loop.

Replies: 250 only after the raw bytes and envelope are committed (the ticket
comes right after, from the applier); any failure is ``451 4.3.0`` without
internal text, and nothing is kept after it; an address of ours that is no
queue is ``550 5.1.1``; any other domain is ``550 5.7.1`` (never an open
relay); past the recipient cap, ``452 4.5.3``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.db import session_factory
from helpdesk.intake.spool import Envelope
from helpdesk.mail.addresses import QueueDirectory, Route
from helpdesk.settings import Settings
from helpdesk.tickets import queues
from mailgate.committer import IntakeCommitter, SpoolTimeout

log = logging.getLogger(__name__)

TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
NO_SUCH_USER = "550 5.1.1 No such mailbox here"
RELAY_DENIED = "550 5.7.1 Relaying denied"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"


class DirectoryCache:
    """The queue address directory, reloaded off the event loop every few seconds."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, ttl: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._ttl = ttl
        self._value: QueueDirectory | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def _load(self) -> QueueDirectory:
        with self._sessions() as session:
            return queues.directory(session, mail_domain=self._settings.mail_domain)

    async def get(self) -> QueueDirectory:
        if self._value is not None and time.monotonic() - self._loaded_at < self._ttl:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at >= self._ttl:
                timeout = self._settings.database_timeout + 1
                self._value = await asyncio.wait_for(asyncio.to_thread(self._load), timeout)
                self._loaded_at = time.monotonic()
        return self._value


class IntakeHandler:
    def __init__(self, committer: IntakeCommitter, directory: DirectoryCache, settings: Settings):
        self.committer = committer
        self.directory = directory
        self.settings = settings

    async def handle_EHLO(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """No AUTH line: nobody signs in to the gateway (``mailgate.server``)."""
        session.host_name = hostname
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return TOO_MANY_RECIPIENTS
        try:
            directory = await self.directory.get()
        except Exception:
            log.exception("cannot load the queue directory")
            return TEMPFAIL
        kind, _slug = directory.route(address)
        if kind is Route.FOREIGN:
            return RELAY_DENIED
        if kind is Route.UNKNOWN:
            return NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        peer = session.peer
        meta = Envelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or ""),
            helo=session.host_name or "",
        )
        try:
            await self.committer.submit(raw, meta, self.settings.intake_timeout)
        except SpoolTimeout:
            log.warning("the spool writer was too slow; nothing stored, the sender will retry")
            return TEMPFAIL
        except Exception:
            log.exception("spooling failed; the sender will retry")
            return TEMPFAIL
        return "250 2.0.0 Message accepted"

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %r", error)
        return TEMPFAIL


def build_handler(engine: Engine, settings: Settings, **committer_options: Any) -> IntakeHandler:
    """``committer_options``: e.g. ``on_commit``, called on the writer thread after each commit."""
    committer = IntakeCommitter(session_factory(engine, write=True), settings, **committer_options)
    committer.start()
    directory = DirectoryCache(session_factory(engine), settings)
    return IntakeHandler(committer, directory, settings)

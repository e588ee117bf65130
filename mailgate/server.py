"""The SMTP server: aiosmtpd's protocol with our limits, TLS and a connection cap.

``Gateway`` runs the server on its own event loop in a thread (as aiosmtpd's
Controller does), so ``helpdesk serve``, ``helpdesk mailgate`` and the tests
all start it the same way.
"""

from __future__ import annotations

import logging
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine

from helpdesk.db import make_engine
from helpdesk.settings import Settings
from helpdesk.tickets.dispatch import Dispatcher
from mailgate.handler import IntakeHandler, build_handler

log = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections, try again later"


class ConnectionLimiter:
    """Counts open SMTP sessions; only touched from the event loop thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with a cap on concurrent sessions and room for long lines."""

    # aiosmtpd refuses a DATA line over 1000 octets with a permanent 500, so the
    # sender bounces mail we could store (one-line HTML from web forms does this).
    # RFC 5321 (4.5.3.1) asks for no such limits where possible; SIZE still applies.
    line_length_limit = 1024 * 1024

    def __init__(self, handler, *, limiter: ConnectionLimiter, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(handler, **kwargs)
        self._limiter = limiter

    async def _handle_client(self) -> None:
        if not self._limiter.acquire():
            await self.push(TOO_MANY_CONNECTIONS)
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            self._limiter.release()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class Gateway(Controller):
    """The gateway on host:port, serving from a background thread."""

    def __init__(self, handler: IntakeHandler, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.limiter = ConnectionLimiter(settings.max_connections)
        self._tls = tls_context(settings)
        super().__init__(handler, hostname=host, port=port, ready_timeout=10.0)

    def factory(self) -> SMTP:
        return GatewaySMTP(
            self.handler,
            limiter=self.limiter,
            data_size_limit=self.settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.settings.smtp_hostname or self.settings.mail_domain,
            ident="helpdesk mailgate",
            tls_context=self._tls,
            require_starttls=self.settings.require_tls,
            timeout=self.settings.smtp_timeout,
        )

    def _trigger_server(self) -> None:
        # Controller's readiness probe opens a connection; with the cap at zero
        # (tests) that would fail, and it proves nothing our own ping doesn't.
        try:
            super()._trigger_server()
        except Exception:
            log.debug("readiness probe failed", exc_info=True)

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert=no_assert)
        self.handler.committer.stop()


def start_gateway(
    settings: Settings,
    host: str,
    port: int,
    engine: Engine | None = None,
    dispatcher: Dispatcher | None = None,
) -> Gateway:
    """Build the handler on ``engine`` (or a new one) and start serving; intake's
    sessions carry ``dispatcher`` (default: the standard subscribers)."""
    engine = engine or make_engine(settings)
    handler = build_handler(engine, settings, dispatcher)
    gateway = Gateway(handler, settings, host, port)
    gateway.start()
    log.info("mailgate listening on %s:%s", host, port)
    return gateway

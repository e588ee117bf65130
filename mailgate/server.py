"""The SMTP server: aiosmtpd's protocol with our limits, TLS, a connection cap and a
memory budget for DATA.

aiosmtpd buffers a message's DATA in memory; ``GatewaySMTP.smtp_DATA`` is its
loop with one change: every line is charged to a ``MemoryBudget`` shared by
all sessions as it arrives (``max_spool_memory``), and a message that would
pass the budget is drained and answered ``451 4.3.1``, as is a DATA command
while the budget is spent. The bytes are given back once the message is
answered (they stay held while it is being committed).

Limits per client (sessions per address, commands per session, a session's
lifetime) are in ``mailgate.limits``. No AUTH is offered or understood: nobody
signs in to the gateway (aiosmtpd would otherwise advertise it after
STARTTLS and fail every attempt). A bare LF in DATA (a line ending other
than CRLF) is refused with ``554 5.5.2`` once the message has been read, as
Postfix does since 3.9 (``smtpd_forbid_bare_newline``): readers disagree on
where such a line ends, which is how headers are smuggled past filters.
``HELPDESK_SMTP_ALLOW_BARE_LF`` accepts it; the bytes are stored as received
and the parser normalises them (``helpdesk.mail.headers.normalise_line_endings``).

``Gateway`` runs the server on its own event loop in a thread (as aiosmtpd's
Controller does), so ``helpdesk serve``, ``helpdesk mailgate`` and the tests
all start it the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP
from sqlalchemy import Engine

from helpdesk.db import make_engine
from helpdesk.settings import Settings
from mailgate.handler import IntakeHandler, build_handler
from mailgate.limits import (
    SESSION_TOO_LONG,
    TOO_MANY_COMMANDS,
    ConnectionLimiter,
    SessionRules,
    client_key,
)

log = logging.getLogger(__name__)

NO_MEMORY = "451 4.3.1 Insufficient system resources, try again later"
TOO_MUCH_DATA = "552 5.3.4 Message too big"
LINE_TOO_LONG = "500 5.5.2 Line too long"
BARE_LF = "554 5.5.2 Bare LF in message; lines must end with CRLF"


class MemoryBudget:
    """Bytes of DATA held in memory by all sessions; only touched from the event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        self.peak = max(self.peak, self.used)
        return True

    def give(self, size: int) -> None:
        self.used -= size


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with our limits (``mailgate.limits``), room for long lines, no AUTH."""

    # aiosmtpd refuses a DATA line over 1000 octets with a permanent 500, so the
    # sender bounces mail we could store (one-line HTML from web forms does this).
    # RFC 5321 (4.5.3.1) asks for no such limits where possible; SIZE still applies.
    line_length_limit = 1024 * 1024

    def __init__(
        self,
        handler: IntakeHandler,
        *,
        limiter: ConnectionLimiter,
        budget: MemoryBudget,
        rules: SessionRules,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, auth_exclude_mechanism=["LOGIN", "PLAIN"], **kwargs)
        self._limiter = limiter
        self._budget = budget
        self._rules = rules
        self._commands = 0
        self._committing = False
        self._expired = False
        self._smtp_methods.pop("AUTH", None)
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._counted(method)

    def _counted(
        self, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(method)
        async def counted(arg: str) -> None:
            self._commands += 1
            if self._commands > self._rules.max_commands:
                await self._end(TOO_MANY_COMMANDS)
                return
            await method(arg)

        return counted

    async def _end(self, reply: str) -> None:
        await self.push(reply)
        if self.transport is not None:
            self.transport.close()

    def _lifetime_over(self) -> None:
        """The session's time is up: 421 now, or right after a commit in progress."""
        self._expired = True
        if self._committing or self.transport is None:
            return
        self._writer.write(SESSION_TOO_LONG.encode() + b"\r\n")
        self.transport.close()

    async def _handle_client(self) -> None:
        client = client_key(self.session.peer if self.session else None)
        refusal = self._limiter.acquire(client)
        if refusal:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        timer = self.loop.call_later(self._rules.lifetime, self._lifetime_over)
        try:
            await super()._handle_client()
        finally:
            timer.cancel()
            self._limiter.release(client)

    def _declared_size(self) -> int:
        for option in (self.envelope.mail_options if self.envelope else None) or []:
            name, _, value = option.partition("=")
            if name.upper() == "SIZE" and value.isdigit():
                return int(value)
        return 0

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading into one buffer charged to the memory budget."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        budget, rules = self._budget, self._rules
        if budget.used + self._declared_size() >= budget.limit:
            await self.push(NO_MEMORY)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = bytearray()
        charged = 0
        refusal = ""
        limit = self.data_size_limit
        fragments: list[bytes] = []
        try:
            while self.transport is not None:
                try:
                    line = await self._reader.readuntil(b"\r\n")
                except asyncio.CancelledError:
                    self._writer.close()  # the connection was reset during DATA
                    raise
                except asyncio.LimitOverrunError as exc:
                    refusal = refusal or LINE_TOO_LONG
                    line = await self._reader.read(exc.consumed)
                if not fragments and line == b".\r\n":
                    break
                if not refusal:
                    if not rules.allow_bare_lf and b"\n" in line[:-1]:
                        refusal = BARE_LF
                    elif limit and len(data) + len(line) > limit:
                        refusal = TOO_MUCH_DATA
                    elif not budget.take(len(line)):
                        refusal = NO_MEMORY
                    else:
                        charged += len(line)
                    if refusal:  # drain the rest, keep nothing
                        data = bytearray()
                        budget.give(charged)
                        charged = 0
                fragments.append(line)
                if line.endswith(b"\r\n"):
                    if not refusal:
                        whole = b"".join(fragments) if len(fragments) > 1 else line
                        # RFC 5321 4.5.2: a leading dot was doubled by the sender.
                        data += memoryview(whole)[1:] if whole[:1] == b"." else whole
                    fragments.clear()
            if refusal:
                self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's, unannotated
                await self.push(refusal)
                return
            content = bytes(data)
            del data
            self.envelope.content = self.envelope.original_content = content
            self._committing = True
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self._committing = False
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's, unannotated
            await self.push("250 OK" if status is MISSING else status)
            if self._expired:
                await self._end(SESSION_TOO_LONG)
        finally:
            budget.give(charged)


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
        self.limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip)
        self.rules = SessionRules.from_settings(settings)
        self.budget = MemoryBudget(settings.max_spool_memory)
        self._tls = tls_context(settings)
        super().__init__(handler, hostname=host, port=port, ready_timeout=10.0)

    def factory(self) -> SMTP:
        return GatewaySMTP(
            self.handler,
            limiter=self.limiter,
            budget=self.budget,
            rules=self.rules,
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
            super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd's, unannotated
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
    on_commit: Callable[[], None] | None = None,
) -> Gateway:
    """Build the handler on ``engine`` (or a new one) and start serving; ``on_commit`` is
    called after each spool commit (``helpdesk serve`` wakes its applier with it)."""
    engine = engine or make_engine(settings)
    handler = build_handler(engine, settings, on_commit=on_commit)
    gateway = Gateway(handler, settings, host, port)
    gateway.start()
    log.info("mailgate listening on %s:%s", host, port)
    return gateway

"""SMTP out: the worker that delivers outbox rows through the relay.

Each round claims due rows in one short transaction (the attempt is recorded
before sending), builds each message from its row (``ticket_mail.mime_bytes``:
rows keep a description of the mail, not its bytes) outside that transaction,
delivers them over one relay connection, and records each outcome in its own
transaction. A 5xx reply is permanent; a 4xx reply or a connection error is
retried with exponential backoff. A row that cannot be built (a template
removed since) fails at once, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.clock import utcnow
from helpdesk.models import OutboxMail
from helpdesk.outbound import outbox, ticket_mail
from helpdesk.settings import Settings
from helpdesk.tickets.dispatch import Dispatcher
from mailgate.dkim_signing import DkimSigner

log = logging.getLogger(__name__)


@dataclass
class DeliveryResult:
    ok: bool
    permanent: bool = False
    error: str = ""


class Relay:
    """One SMTP connection to the smarthost, opened lazily and reused for a round."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        host, port = self.settings.relay_address
        hostname = self.settings.smtp_hostname or self.settings.mail_domain
        if self.settings.smtp_relay_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, local_hostname=hostname, timeout=self.timeout,
                context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=hostname, timeout=self.timeout)
            if self.settings.smtp_relay_starttls:
                smtp.starttls(context=ssl.create_default_context())
        if self.settings.smtp_relay_user:
            smtp.login(self.settings.smtp_relay_user, self.settings.smtp_relay_password)
        return smtp

    def send(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> DeliveryResult:
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            refused = self._smtp.sendmail(mail_from, rcpt_tos, content)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return DeliveryResult(False, all(c >= 500 for c in codes), _describe(exc.recipients))
        except smtplib.SMTPResponseException as exc:
            self.close()
            text = _text(exc.smtp_error)
            return DeliveryResult(False, exc.smtp_code >= 500, f"{exc.smtp_code} {text}")
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return DeliveryResult(
                False, False, f"relay unreachable: {exc.__class__.__name__}: {exc}"
            )
        if refused:
            # Some recipients were refused, the rest accepted: the mail went out.
            return DeliveryResult(True, error="refused: " + _describe(refused))
        return DeliveryResult(True)

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                with contextlib.suppress(OSError):
                    self._smtp.close()
            self._smtp = None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _describe(recipients: Mapping[str, tuple[int, bytes | str]]) -> str:
    parts = []
    for address, (code, text) in recipients.items():
        parts.append(f"{address}: {code} {_text(text)}")
    return "; ".join(parts)


class OutboxWorker:
    """Delivers due outbox rows; ``run_once`` is one round, ``run`` loops until stopped."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        batch: int = 20,
        idle_seconds: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.signer = DkimSigner.from_settings(settings)
        self._stop = threading.Event()

    def run_once(self) -> int:
        """Deliver what is due now; returns how many rows were attempted."""
        claimed_at = self.clock()
        with self.sessions() as session, session.begin():
            rows = outbox.claim_due(session, now=claimed_at, limit=self.batch)
        if not rows:
            return 0
        # Built after the claim's commit: no lock is held while templates render.
        claimed = [(row.id, row.mail_from, list(row.rcpt_tos), self._build(row)) for row in rows]
        # Once the lease ends another worker may claim these rows and send them;
        # a slow relay must not make this round send them too. Past half the
        # lease, the rows not yet begun are left to whoever claims them next.
        deadline = claimed_at + outbox.LEASE / 2
        relay = Relay(self.settings)
        attempted = 0
        try:
            for row_id, mail_from, rcpt_tos, content in claimed:
                if isinstance(content, DeliveryResult):
                    self._record(row_id, content)
                    attempted += 1
                    continue
                if self.clock() >= deadline:
                    log.warning(
                        "outbox round past half its lease; %d mails left for the next claim",
                        len(claimed) - attempted,
                    )
                    break
                result = relay.send(mail_from, rcpt_tos, self.signer.sign(content))
                self._record(row_id, result)
                attempted += 1
        finally:
            relay.close()
        return attempted

    def _build(self, row: OutboxMail) -> bytes | DeliveryResult:
        try:
            return ticket_mail.mime_bytes(row)
        except Exception as exc:
            log.exception("outbox %s: the mail cannot be built", row.id)
            return DeliveryResult(False, True, f"cannot build the mail: {type(exc).__name__}")

    def _record(self, row_id: int, result: DeliveryResult) -> None:
        with self.sessions() as session, session.begin():
            row = session.get(OutboxMail, row_id)
            if row is None:
                return
            now = self.clock()
            if result.ok:
                outbox.record_sent(session, row, now=now, note=result.error)
            else:
                log.warning("outbox %s: delivery failed (%s)", row_id, result.error)
                outbox.record_failure(
                    session, row, result.error, permanent=result.permanent, now=now
                )

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("outbox round failed; retrying")
                busy = 0
            if not busy:
                self._stop.wait(self.idle_seconds)

    def stop(self) -> None:
        self._stop.set()


def start_worker(
    settings: Settings, engine: Engine, dispatcher: Dispatcher | None = None
) -> tuple[OutboxWorker, threading.Thread]:
    from helpdesk.subscribers import writing_sessions

    worker = OutboxWorker(writing_sessions(engine, settings, dispatcher), settings)
    thread = threading.Thread(target=worker.run, name="outbox-worker", daemon=True)
    thread.start()
    return worker, thread

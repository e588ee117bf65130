"""The mail gateway: SMTP in (aiosmtpd) and, later, SMTP out (the outbox sender)."""

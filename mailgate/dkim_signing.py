"""DKIM signing of outgoing mail with dkimpy, when a key and selector are configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

from helpdesk.settings import Settings

SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id",
    b"in-reply-to", b"references", b"reply-to", b"mime-version", b"content-type",
]  # fmt: skip


@dataclass(frozen=True)
class DkimSigner:
    """Signs with the configured key; a signer without a key passes mail through."""

    selector: bytes = b""
    domain: bytes = b""
    private_key: bytes = b""

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner:
        if not settings.dkim_key_file:
            return cls()
        return cls(
            selector=settings.dkim_selector.encode(),
            domain=(settings.dkim_domain or settings.mail_domain).encode(),
            private_key=Path(settings.dkim_key_file).read_bytes(),
        )

    def sign(self, content: bytes) -> bytes:
        if not self.private_key:
            return content
        signature = dkim.sign(
            content, self.selector, self.domain, self.private_key, include_headers=SIGNED_HEADERS
        )
        return signature + content

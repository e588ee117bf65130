"""DKIM signing of outgoing mail with dkimpy, when a key and selector are configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

from helpdesk.settings import PREFIX, Settings, SettingsError

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
        """The configured signer; a key that cannot sign is a SettingsError here, at start.

        Found only when signing, a bad key would fail every round while the
        claimed mail waits out its lease, again and again, never delivered.
        """
        if not settings.dkim_key_file:
            return cls()
        path = Path(settings.dkim_key_file)
        try:
            # dkimpy finds no PEM block in a key file saved with CRLF line endings.
            key = path.read_bytes().replace(b"\r\n", b"\n")
        except OSError as exc:
            raise SettingsError(f"{PREFIX}DKIM_KEY_FILE: cannot read {path}: {exc}") from exc
        signer = cls(
            selector=settings.dkim_selector.encode(),
            domain=(settings.dkim_domain or settings.mail_domain).encode(),
            private_key=key,
        )
        try:
            signer.sign(b"From: check@example.invalid\r\n\r\n")
        except Exception as exc:
            raise SettingsError(
                f"{PREFIX}DKIM_KEY_FILE: {path} holds no usable RSA private key (PEM): {exc}"
            ) from exc
        return signer

    def sign(self, content: bytes) -> bytes:
        if not self.private_key:
            return content
        signature: bytes = dkim.sign(
            content, self.selector, self.domain, self.private_key, include_headers=SIGNED_HEADERS
        )
        return signature + content

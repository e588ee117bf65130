"""Our own Message-IDs: signed with the secret key, so a forged In-Reply-To cannot
point at a ticket; and stable ones for mail that arrives without a Message-ID.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_OURS_RE = re.compile(r"^<hd\.(\d+)\.([0-9a-z]+)\.([0-9a-f]{16})@([^>]+)>$")


def _signature(secret_key: str, ticket_number: int, nonce: str) -> str:
    msg = f"{ticket_number}.{nonce}".encode()
    return hmac.new(secret_key.encode(), msg, hashlib.sha256).hexdigest()[:16]


def make_message_id(secret_key: str, ticket_number: int, domain: str) -> str:
    nonce = secrets.token_hex(8)
    sig = _signature(secret_key, ticket_number, nonce)
    return f"<hd.{ticket_number}.{nonce}.{sig}@{domain}>"


def verify_message_id(secret_key: str, message_id: str) -> int | None:
    """The ticket number a Message-ID of ours names, or None if it is not ours or forged."""
    match = _OURS_RE.match(message_id.strip().lower())
    if not match:
        return None
    number, nonce, sig, _domain = match.groups()
    expected = _signature(secret_key, int(number), nonce)
    return int(number) if hmac.compare_digest(sig, expected) else None


def is_our_domain(message_id: str, domain: str) -> bool:
    return message_id.strip().lower().rstrip(">").endswith("@" + domain.lower())

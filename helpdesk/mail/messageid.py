"""Our own Message-IDs: signed with a key derived from the secret key (its own,
see ``helpdesk.keys``), so a forged In-Reply-To cannot point at a ticket; and
stable ones for mail that arrives without a Message-ID.

Message-IDs made before the keys were separated were signed with the secret
key itself; replies to that old mail keep arriving for years, so verifying
also accepts that signature. Only verifying: nothing is signed with it now.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from helpdesk.keys import MESSAGE_ID, derive

_OURS_RE = re.compile(r"^<hd\.(\d+)\.([0-9a-z]+)\.([0-9a-f]{16})@([^>]+)>$")


def _signature(key: bytes, ticket_number: int, nonce: str) -> str:
    msg = f"{ticket_number}.{nonce}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]


def make_message_id(secret_key: str, ticket_number: int, domain: str) -> str:
    nonce = secrets.token_hex(8)
    sig = _signature(derive(secret_key, MESSAGE_ID), ticket_number, nonce)
    return f"<hd.{ticket_number}.{nonce}.{sig}@{domain}>"


def verify_message_id(secret_key: str, message_id: str) -> int | None:
    """The ticket number a Message-ID of ours names, or None if it is not ours or forged."""
    match = _OURS_RE.match(message_id.strip().lower())
    if not match:
        return None
    number, nonce, sig, _domain = match.groups()
    for key in (derive(secret_key, MESSAGE_ID), secret_key.encode()):  # the old key last
        if hmac.compare_digest(sig, _signature(key, int(number), nonce)):
            return int(number)
    return None

"""Keys derived from ``HELPDESK_SECRET_KEY``, one per purpose.

Sessions, CSRF tokens, our Message-IDs and agents' reply addresses each get
their own key (HKDF-SHA256 with a label), so a signature made for one purpose never verifies for
another, and no part of the app holds the secret itself where a derived key
will do.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION = "web-session"
CSRF = "csrf"
MESSAGE_ID = "message-id"
AGENT_REPLY_ADDRESS = "agent-reply-address"


@functools.lru_cache(maxsize=32)
def derive(secret_key: str, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` (one of the labels above)."""
    if not secret_key:
        raise ValueError("no secret key to derive from")
    info = b"helpdesk " + purpose.encode()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return hkdf.derive(secret_key.encode())

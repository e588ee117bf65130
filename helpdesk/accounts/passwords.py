"""Password hashes: making them with ``hashlib.scrypt`` and checking them.

A hash is stored as ``scrypt:N:r:p$salt$hex``, the format Werkzeug's
``generate_password_hash`` writes (which made every hash stored before this
module existed), so existing hashes keep working and a hash written here is
still one Werkzeug can check. Werkzeug's older ``pbkdf2:sha256:iterations``
hashes are checked too. A hash in any other method, or with other parameters
than ``SCRYPT_N``/``SCRYPT_R``/``SCRYPT_P``, ``needs_rehash``: sign-in then
stores a new one made from the password just checked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N = 2**15  # 32 MiB with r=8; Werkzeug's default since 2.3
SCRYPT_R = 8
SCRYPT_P = 1
_CURRENT_METHOD = f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}"
_MAX_SCRYPT_N = 2**20  # refuse to spend more memory than this on a stored hash


def _scrypt(password: str, salt: str, n: int, r: int, p: int) -> str:
    maxmem = 132 * n * r * p  # 128 * n * r, and some room
    return hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=maxmem).hex()


def hash_password(password: str) -> str:
    """A new hash of ``password`` with a random salt, in the current method."""
    salt = secrets.token_urlsafe(12)  # 16 characters, never "$"
    return f"{_CURRENT_METHOD}${salt}${_scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)}"


def _derive(method: str, salt: str, password: str) -> str | None:
    """The hex digest ``method`` makes of ``password``, or None for a method we don't know."""
    name, *args = method.split(":")
    try:
        if name == "scrypt" and len(args) == 3:
            n, r, p = (int(arg) for arg in args)
            if not 1 < n <= _MAX_SCRYPT_N or not 0 < r * p <= 64:
                return None
            return _scrypt(password, salt, n, r, p)
        if name == "pbkdf2" and len(args) == 2 and args[0] in ("sha256", "sha512"):
            iterations = int(args[1])
            if iterations < 1:
                return None
            return hashlib.pbkdf2_hmac(args[0], password.encode(), salt.encode(), iterations).hex()
    except ValueError:
        return None
    return None


def verify(stored: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from; False for an empty
    or malformed hash."""
    method, sep, rest = stored.partition("$")
    salt, sep2, digest = rest.partition("$")
    if not (sep and sep2 and digest):
        return False
    derived = _derive(method, salt, password)
    return derived is not None and hmac.compare_digest(derived, digest)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made by another method or with other parameters than
    ``hash_password`` uses now."""
    return stored.partition("$")[0] != _CURRENT_METHOD

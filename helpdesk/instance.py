"""The instance folder and the private files in it.

``instance/`` holds the secret key, the SQLite database (with its ``-wal`` and
``-shm``) and TLS keys: it is created 0700 and every file in it 0600, with
that mode from the moment it exists (``os.open`` with the mode, never a
``chmod`` afterwards that would leave a window). SQLite gives ``-wal`` and
``-shm`` the mode of the database file, so creating that file 0600 is enough.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; an existing folder is left as it is."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=DIR_MODE)
    return path


def create_private_file(path: Path, data: bytes = b"") -> bool:
    """Create ``path`` with mode 0600 holding ``data``; False if it already existed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True

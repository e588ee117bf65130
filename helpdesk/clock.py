"""The current time, read once at the edge (CLI, request, gateway batch) and passed down."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)

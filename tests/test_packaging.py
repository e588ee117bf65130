"""Packaging and schema: the wheel ships templates and migrations, and the
migrations produce exactly the schema the models declare."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from helpdesk.db import include_name
from helpdesk.models import Base

ROOT = Path(__file__).resolve().parent.parent


def test_migrations_match_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_wheel_ships_templates_and_migrations(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("helpdesk-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "helpdesk/templates/email/acknowledgement.txt" in names
    assert "helpdesk/migrations/env.py" in names
    assert any(n.startswith("helpdesk/migrations/versions/0001") for n in names)
    assert "mailgate/server.py" in names

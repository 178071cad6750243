"""Run the Alembic migrations programmatically (``refproj migrate``, tests, ``make demo``)."""

from __future__ import annotations

import argparse

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import URL

from refproj._resources import migrations_dir
from refproj.errors import RefprojError, SourceTablesIncompatible
from refproj.migration_support import incompatibility
from refproj.settings import database_url, url_text


def alembic_config(url: str | URL | None = None, x_arguments: list[str] | None = None) -> Config:
    """An Alembic config for the installed migrations and ``url`` (else ``$DATABASE_URL``);
    ``x_arguments`` are what ``alembic -x`` would pass (``["drop_source_tables=true"]``)."""
    config = Config(cmd_opts=argparse.Namespace(x=x_arguments or []))
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url_text(database_url(url))
    return config


def upgrade(url: str | URL | None = None, revision: str = "head") -> None:
    """Raises ``SourceTablesIncompatible`` when an existing source table lacks a column refproj
    reads (revision 0001 names it; nothing is installed)."""
    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as error:
        # migrations/env.py turns the check's error into a CommandError (one FAILED: line).
        message = incompatibility(error.__cause__) if error.__cause__ is not None else None
        if message is not None:
            raise SourceTablesIncompatible(message) from error
        raise _refproj_error(error) from error


def downgrade(
    url: str | URL | None = None, revision: str = "base", *, drop_source_tables: bool = False
) -> None:
    """Down to ``revision``. The source tables revision 0001 created are dropped only while empty,
    unless ``drop_source_tables`` (``alembic -x drop_source_tables=true``); tables refproj adopted
    from the application are never dropped."""
    x_arguments = [f"drop_source_tables={'true' if drop_source_tables else 'false'}"]
    try:
        command.downgrade(alembic_config(url, x_arguments), revision)
    except CommandError as error:
        raise _refproj_error(error) from error


def _refproj_error(error: CommandError) -> Exception:
    """The RefprojError migrations/env.py turned into a CommandError (a refused URL, an
    unreachable database), else the CommandError itself."""
    return error.__cause__ if isinstance(error.__cause__, RefprojError) else error

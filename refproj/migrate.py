"""Run the Alembic migrations programmatically (``refproj migrate``, tests, ``make demo``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import URL

from refproj._core import check_flag
from refproj._resources import migrations_dir
from refproj.errors import RefprojError
from refproj.settings import database_url, url_text


def alembic_config(url: str | URL | None = None, x_arguments: list[str] | None = None) -> Config:
    """An Alembic config for the installed migrations and ``url`` (else ``$DATABASE_URL``);
    ``x_arguments`` are what ``alembic -x`` would pass (``["drop_source_tables=true"]``)."""
    config = Config(cmd_opts=argparse.Namespace(x=x_arguments or []))
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url_text(database_url(url))
    return config


@contextlib.contextmanager
def _warnings_to(stream: TextIO | None) -> Iterator[None]:
    # The migrations' own warnings go to Alembic's alembic.env log (the alembic CLI prints them).
    if stream is None:
        yield
        return
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("alembic.env")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def upgrade(url: str | URL | None = None, revision: str = "head", *, warnings: TextIO | None = None) -> None:
    """Up to ``revision``. The migrations' warnings (``refproj: ...``: an ``alembic_version`` left
    alone, say) go to the ``alembic.env`` log, and also to ``warnings``, one line each.

    Raises ``SourceTablesIncompatible`` when an existing source table lacks a column refproj reads
    (revision 0001 names it), ``ForeignObjectsInSchema`` when schema refproj holds or is used by
    an object refproj did not create; either way nothing is changed."""
    try:
        with _warnings_to(warnings):
            command.upgrade(alembic_config(url), revision)
    except CommandError as error:
        # migrations/env.py turns its refusals into a CommandError (one FAILED: line).
        raise _refproj_error(error) from error


def downgrade(
    url: str | URL | None = None, revision: str = "base", *, drop_source_tables: bool = False
) -> None:
    """Down to ``revision``. The source tables revision 0001 created are dropped only while empty,
    unless ``drop_source_tables`` (``alembic -x drop_source_tables=true``); tables refproj adopted
    from the application are never dropped. Raises ``InvalidArgument`` when
    ``drop_source_tables`` is not a bool (the string "false" would be true), and
    ``ForeignObjectsInSchema`` when schema refproj holds or is used by an object refproj did not
    create; either way nothing is changed."""
    drop = check_flag("drop_source_tables", drop_source_tables)
    x_arguments = [f"drop_source_tables={'true' if drop else 'false'}"]
    try:
        command.downgrade(alembic_config(url, x_arguments), revision)
    except CommandError as error:
        raise _refproj_error(error) from error


def _refproj_error(error: CommandError) -> Exception:
    """The RefprojError migrations/env.py turned into a CommandError (a refused URL, an
    unreachable database), else the CommandError itself."""
    return error.__cause__ if isinstance(error.__cause__, RefprojError) else error

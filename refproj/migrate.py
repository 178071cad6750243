"""Run the Alembic migrations programmatically (``refproj migrate``, tests, ``make demo``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from refproj._resources import migrations_dir
from refproj.settings import database_url


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for the installed migrations and ``url`` (else ``$DATABASE_URL``)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = database_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str | URL | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)

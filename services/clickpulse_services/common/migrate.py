"""Applies the PostgreSQL schema migrations (alembic, through advanced-alchemy):
`python -m clickpulse_services.common.migrate [upgrade|revision MESSAGE]`."""

from __future__ import annotations

import sys
from pathlib import Path

from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.config import AlembicAsyncConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig

# Imported for its side effect: the ORM metadata then holds every table.
from clickpulse_services.common import models  # noqa: F401
from clickpulse_services.common.settings import ServiceSettings

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "db_migrations"


def commands(settings: ServiceSettings) -> AlembicCommands:
    config = SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        alembic_config=AlembicAsyncConfig(script_location=str(SCRIPT_LOCATION)),
    )
    return AlembicCommands(sqlalchemy_config=config)


def main() -> None:
    settings = ServiceSettings.from_env("migrations")
    args = sys.argv[1:] or ["upgrade"]
    if args[0] == "upgrade":
        commands(settings).upgrade("head")
    elif args[0] == "revision" and len(args) == 2:
        commands(settings).revision(message=args[1], autogenerate=True)
    elif args[0] == "init":
        commands(settings).init(str(SCRIPT_LOCATION))
    else:
        raise SystemExit("usage: migrate [upgrade | revision MESSAGE | init]")


if __name__ == "__main__":
    main()

"""What the command modules share: the errors that become exit codes, the table the groups
register their commands in, and the database connection most of them open.

Kept apart from ``muckwatch.cli`` itself so that group modules import it without importing
the package that imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

    from domain.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]


class UserError(Exception):
    """A mistake the user can fix; printed as one sentence, exit code 2."""


class Failure(Exception):
    """A runtime failure (something needed is down or did not start); printed as one
    sentence, exit code 1. Command modules wrap the errors of packages the CLI's root does
    not import (the development services) in it."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, example, arguments and handler."""

    name: str
    help: str
    example: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler


class CommandTable:
    """The dispatch table. Each group module's ``register(table)`` adds its commands; the root
    builds the parser from it and calls ``handlers[args.command]``."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(self, name: str, help: str, example: str,
            arguments: Callable[[argparse.ArgumentParser], None], handler: Handler) -> None:
        if name in self.commands:
            raise ValueError(f"command {name!r} registered twice")
        self.commands[name] = Command(name, help, example, arguments, handler)

    @property
    def handlers(self) -> dict[str, Handler]:
        return {name: c.handler for name, c in self.commands.items()}


def connect(settings: Settings) -> psycopg.Connection:
    """A connection to the configured database; unreachable → DatabaseError naming where."""
    import psycopg

    from store.database import DatabaseError, describe_dsn

    try:
        return psycopg.connect(settings.database.dsn,
                               connect_timeout=settings.database.connect_timeout_s)
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to PostgreSQL at "
                            f"{describe_dsn(settings.database.dsn)}: "
                            f"{str(e).strip().splitlines()[-1]}") from None


def run_until_signal(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``work(stop)`` on a new event loop; SIGTERM or SIGINT sets ``stop``."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    asyncio.run(main())

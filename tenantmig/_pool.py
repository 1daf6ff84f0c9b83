"""The engine's own connection pool: its session settings, its size, and what a DSN that
cannot work is told."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from ._exceptions import ConfigError, DatabaseUnavailable
from ._sql import redact_dsn, scrub
from .durations import format_ms
from .options import Options

_SPARE_IDLE = 2.0
"""Seconds an idle pooled connection beyond ``concurrency`` stays open."""

_CONNECT_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


_UNPARSABLE_DSN = (
    "cannot parse the DSN {}: it must be a postgresql:// URL whose user name and password "
    "have / ? # @ : percent-encoded (/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A), "
    "with a numeric port"
)


def _authority(dsn: str) -> str:
    """The user:password@host:port part of a URL DSN."""
    rest = dsn.split("://", 1)[-1]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


async def open_pool(dsn: str, options: Options) -> Any:
    """An asyncpg pool for *dsn*: ``concurrency`` connections opened up front, one spare."""
    # standard_conforming_strings: render() escapes {{schema}} inside '...' for it
    # (the server default since 9.1; PgBouncer tracks it per client).
    settings = {"application_name": "tenantmig", "standard_conforming_strings": "on"}
    if not options.pgbouncer:
        # Every query of ours is schema-qualified; migrations must be too. (Through
        # PgBouncer these are set per transaction by the apply procedure instead.)
        settings["search_path"] = ""
        settings["lock_timeout"] = format_ms(options.lock_timeout_ms)
    if _authority(dsn).count("@") > 1:
        # asyncpg would take the host to be what follows the first @ (and fail to
        # resolve "ss@db.internal"), a message that hides the real problem.
        raise ConfigError(_UNPARSABLE_DSN.format(redact_dsn(dsn)))
    try:
        return await asyncpg.create_pool(
            dsn,
            # The workers' connections are opened up front: backend start-ups
            # belong before the fan-out. One more only while something needs it
            # (the ledger, when no tenant finishes for a while), closed once idle:
            # a connected backend, even an idle one, pays for every catalog change
            # the others make (see ledger).
            min_size=options.concurrency,
            max_size=options.concurrency + 1,
            max_inactive_connection_lifetime=_SPARE_IDLE,
            server_settings=settings,
            # PgBouncer in transaction mode cannot keep named prepared statements.
            statement_cache_size=0 if options.pgbouncer else 100,
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {redact_dsn(dsn)}: "
            f"{scrub(str(exc) or type(exc).__name__, [dsn])}"
        ) from None
    except ValueError:
        # asyncpg's message quotes the piece it failed on, which may be part of
        # the password: say only what to check.
        raise ConfigError(_UNPARSABLE_DSN.format(redact_dsn(dsn))) from None

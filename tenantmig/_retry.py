"""Which errors are worth another attempt, and how long to wait between two polls.

The retry policy is sets of asyncpg's error classes, which asyncpg generates from
PostgreSQL's error codes: a class stands for its SQLSTATE, and a class whose code ends
in ``000`` for the whole SQLSTATE class (``PostgresConnectionError``, ``08000``: every
``08xxx``). Errors of ours that carry a code of their own (a lock timeout with its
blockers, a failure with a note) and codes asyncpg has no class for are judged by the
same rule from their ``sqlstate``.
"""

from __future__ import annotations

from typing import TypeAlias

import anyio
import asyncpg

ErrorClasses: TypeAlias = tuple[type[asyncpg.PostgresError], ...]

CONNECTION_LOSS: ErrorClasses = (
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03
    asyncpg.TooManyConnectionsError,  # 53300
)
"""The server went away or refused us: worth waiting for it to come back."""

TRANSIENT: ErrorClasses = (
    asyncpg.LockNotAvailableError,  # 55P03
    asyncpg.DeadlockDetectedError,  # 40P01
    asyncpg.SerializationError,  # 40001
    asyncpg.QueryCanceledError,  # 57014
    *CONNECTION_LOSS,
)
"""Server errors another attempt may get past (the tenant's version is re-read first)."""


def is_transient(exc: BaseException) -> bool:
    """Whether *exc* may succeed on another attempt (the version is re-read first)."""
    server = _server_error_of(exc, TRANSIENT)
    if server is not None:
        return server
    if isinstance(exc, asyncpg.InternalClientError):
        # A backend killed while its connection sat idle: asyncpg sees the FATAL
        # message before the socket closes, and the next query trips over it.
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg has no class of its own for a connection found closed: its message
        # ("connection is closed", ...) is all there is to tell it from a misuse.
        text = str(exc)
        return "closed" in text or "connection" in text.lower()
    return isinstance(exc, OSError)  # ConnectionError and TimeoutError among them


def is_connection_loss(exc: BaseException) -> bool:
    """The server went away or refused us: worth waiting for it to come back."""
    server = _server_error_of(exc, CONNECTION_LOSS)
    if server is not None:
        return server
    return is_transient(exc)


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether *exc* is a lock timeout (55P03), ours or the server's."""
    return _server_error_of(exc, (asyncpg.LockNotAvailableError,)) is True


def _server_error_of(exc: BaseException, classes: ErrorClasses) -> bool | None:
    """Whether *exc* is a server error of one of *classes*; None when it carries no
    SQLSTATE at all."""
    if isinstance(exc, classes):
        return True
    code = getattr(exc, "sqlstate", None)
    if not isinstance(code, str):
        return None
    return any(
        code == cls.sqlstate or (cls.sqlstate.endswith("000") and code[:2] == cls.sqlstate[:2])
        for cls in classes
    )


class Backoff:
    """Waits that grow: *first*, then each the last times *factor* plus *increment*, at
    most *maximum*.

    :func:`lock_poll` waits for a tenant another runner holds; the ledger's persistent
    writes (0.5 s, then 1, 1.5 and 2 s) are ``Backoff(0.5, 2.0, factor=1, increment=0.5)``.
    """

    __slots__ = ("_factor", "_increment", "_maximum", "_next")

    def __init__(self, first: float, maximum: float, *, factor: float = 2.0,
                 increment: float = 0.0) -> None:
        self._next = first
        self._maximum = maximum
        self._factor = factor
        self._increment = increment

    def next(self) -> float:
        """The wait to take now; the following one grows."""
        wait = self._next
        self._next = min(wait * self._factor + self._increment, self._maximum)
        return wait

    async def sleep(self) -> None:
        """Wait for :meth:`next` seconds."""
        await anyio.sleep(self.next())


# Waiting for a tenant another runner holds: poll, never block inside a statement.
LOCK_POLL_FIRST, LOCK_POLL_MAX = 0.005, 0.25


def lock_poll() -> Backoff:
    """The waits between two tries to take a tenant another runner holds."""
    return Backoff(LOCK_POLL_FIRST, LOCK_POLL_MAX)

"""The pooled connection a worker holds for tenant after tenant."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import asyncpg


async def is_closed(conn: Any) -> bool:
    """Whether a pooled connection is unusable (asyncpg detaches a dead one)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class WorkerConnection:
    """The pooled connection a worker uses for tenant after tenant, replaced when it
    breaks."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None
        self.primed = False
        """The run's session settings are set (``batch.PRIME_SQL``)."""

    @property
    def held(self) -> Any:
        """The connection, if one is held and usable."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn

    async def get(self) -> Any:
        """The held connection, or a new one from the pool if it broke or none is held."""
        if self._conn is not None and await is_closed(self._conn):
            await self.discard()
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def discard(self) -> None:
        """Let the connection go (it broke, or may have): the next :meth:`get` takes
        another."""
        await self.release()

    async def reset_session(self) -> None:
        """Every setting back to the connection's defaults; the run's are primed again
        before the next tenant."""
        if self._conn is None:
            return
        try:
            # RESET ALL leaves the role alone (role and session_authorization are not
            # reset by it): a SET ROLE in one tenant's migration must not outlive it.
            await self._conn.execute(
                "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self.discard()
        self.primed = False

    async def release(self) -> None:
        """Give the connection back to the pool (shielded from cancellation)."""
        conn, self._conn = self._conn, None
        self.primed = False
        if conn is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self._pool.release(conn)
                except Exception:
                    # Already detached from the pool (it died) or unusable: let it go.
                    with contextlib.suppress(Exception):
                        conn.terminate()

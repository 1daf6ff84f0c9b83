"""A fleet: several databases migrated as one, each with its own engine and pool.

Everything that would refuse a command is checked in every database before any of them
is touched: each one is reachable, each named (or excluded) tenant lives in one of them
(each database then gets the names it holds), and, for ``up`` and ``down``, no database
has drift. With a single database the fleet is its engine: the engine's own checks apply,
with the same messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack

import anyio

from ._exceptions import DriftError, TargetError, TenantmigError
from ._sql import redact_dsn
from .discovery import existing, listed
from .engine import Engine
from .executor import OutcomeCallback
from .ledger import LedgerRow, RunRecord
from .options import Options, Settings
from .plan import Plan
from .report import Report, Status
from .source import MigrationSet

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Share:
    """One database's part of the named and excluded tenants."""

    tenants: tuple[str, ...]
    exclude: tuple[str, ...]


class Fleet:
    """The databases of *dsns* (a DSN named twice is one database), migrated together.

    Results come back as one item per database, in the order of *dsns*. *options*,
    *settings* and the callbacks are :class:`~tenantmig.Engine`'s, the same for every
    database.
    """

    def __init__(
        self,
        dsns: Sequence[str],
        *,
        migrations: str | MigrationSet = "migrations",
        shared_migrations: str | MigrationSet | None = None,
        options: Options | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_run_start: Callable[[int], None] | None = None,
        **settings: Unpack[Settings],
    ) -> None:
        if not dsns:
            raise TypeError("a fleet needs at least one DSN")
        merged = (options or Options()).updated(settings)
        self.dsns = tuple(dict.fromkeys(dsns))
        self.engines = tuple(
            Engine(dsn, migrations=migrations, shared_migrations=shared_migrations,
                   options=merged, on_outcome=on_outcome, on_run_start=on_run_start)
            for dsn in self.dsns
        )
        self._shares: dict[int, _Share] = {}

    async def close(self, *, wait: bool = True) -> None:
        """Close every engine's pool (see :meth:`Engine.close`)."""
        for engine in self.engines:
            await engine.close(wait=wait)

    def request_stop(self) -> None:
        """Start no new tenant in any database; running ones finish."""
        for engine in self.engines:
            engine.request_stop()

    # --- targeting ------------------------------------------------------------------

    async def _share_out(self, tenants: Iterable[str] | None, exclude: Iterable[str]) -> None:
        """Check every database is reachable and give each the named tenants it holds."""
        self._shares = {}
        if len(self.engines) < 2:
            return
        named = tuple(dict.fromkeys(tenants or ()))
        excluded = tuple(dict.fromkeys(exclude))
        found: list[set[str]] = []

        async def look(engine: Engine) -> set[str]:
            pool = await engine.pool()
            async with pool.acquire() as conn:
                return await existing(conn, [*named, *excluded])

        found = await self._each(look)
        if not named and not excluded:
            return
        anywhere = set().union(*found)
        for what, wanted in (("tenant", named), ("excluded tenant", excluded)):
            missing = [n for n in wanted if n not in anywhere]
            if missing:
                raise TargetError(f"{what} schema not found in any database: {listed(missing)}")
        for i, held in enumerate(found):
            self._shares[i] = _Share(tuple(n for n in named if n in held),
                                     tuple(n for n in excluded if n in held))

    def _tenants(self, i: int, tenants: Iterable[str] | None) -> list[str] | None:
        """The named tenants to target in database *i*; None: all by prefix."""
        named = list(tenants) if tenants is not None else []
        share = self._shares.get(i)
        if share is None:
            return named or (None if tenants is None else [])
        return list(share.tenants) or (None if not named else [])

    def _exclude(self, i: int, exclude: Iterable[str]) -> list[str]:
        share = self._shares.get(i)
        return list(share.exclude) if share is not None else list(exclude)

    # --- commands -------------------------------------------------------------------

    async def plan(
        self, tenants: Iterable[str] | None = None, *, target: int | None = None,
        exclude: Iterable[str] = (),
    ) -> list[Plan]:
        """What :meth:`upgrade` would do in each database; touches nothing."""
        names = None if tenants is None else list(tenants)
        exclude = list(exclude)
        await self._share_out(names, exclude)
        return await self._each_indexed(lambda i, engine: engine.plan(
            self._tenants(i, names), target=target, exclude=self._exclude(i, exclude)))

    async def status(
        self, tenants: Iterable[str] | None = None, *, exclude: Iterable[str] = (),
    ) -> list[Status]:
        """Each database's :meth:`Engine.status`."""
        names = None if tenants is None else list(tenants)
        exclude = list(exclude)
        await self._share_out(names, exclude)
        return await self._each_indexed(lambda i, engine: engine.status(
            self._tenants(i, names), exclude=self._exclude(i, exclude)))

    async def upgrade(
        self, tenants: Iterable[str] | None = None, *, target: int | None = None,
        exclude: Iterable[str] = (), arguments: dict[str, Any] | None = None,
    ) -> list[Report]:
        """Bring the targeted tenants of every database to *target*; with several
        databases, only once none of them refuses (drift, unknown tenants)."""
        names = None if tenants is None else list(tenants)
        exclude = list(exclude)
        await self._share_out(names, exclude)
        plans: list[Plan | None] = [None] * len(self.engines)
        if len(self.engines) > 1:

            async def preflight(i: int, engine: Engine) -> None:
                plan = await engine.plan(self._tenants(i, names), target=target,
                                         exclude=self._exclude(i, exclude))
                self._refuse_drift(i, plan)
                plans[i] = plan

            await self._each_indexed(preflight)
        return await self._each_indexed(lambda i, engine: engine.upgrade(
            self._tenants(i, names), target=target, exclude=self._exclude(i, exclude),
            arguments=arguments, plan=plans[i]))

    async def downgrade(
        self, target: int, tenants: Iterable[str] | None = None, *,
        exclude: Iterable[str] = (), arguments: dict[str, Any] | None = None,
    ) -> list[Report]:
        """Apply undo migrations down to *target* in every database; with several
        databases, only once none of them has drift."""
        names = None if tenants is None else list(tenants)
        exclude = list(exclude)
        await self._share_out(names, exclude)
        if len(self.engines) > 1:

            async def preflight(i: int, engine: Engine) -> None:
                self._refuse_drift(i, await engine.plan(self._tenants(i, names),
                                                        exclude=self._exclude(i, exclude)))

            await self._each_indexed(preflight)
        return await self._each_indexed(lambda i, engine: engine.downgrade(
            target, self._tenants(i, names), exclude=self._exclude(i, exclude),
            arguments=arguments))

    async def baseline(
        self, version: int, tenants: Iterable[str] | None = None, *,
        exclude: Iterable[str] = (), arguments: dict[str, Any] | None = None,
    ) -> list[Report]:
        """Each database's :meth:`Engine.baseline`; with several databases, only once
        none of them refuses (each tenant's history is checked first everywhere)."""
        names = None if tenants is None else list(tenants)
        exclude = list(exclude)
        await self._share_out(names, exclude)
        if len(self.engines) > 1:

            async def preflight(i: int, engine: Engine) -> None:
                await engine.check_baseline(version, self._tenants(i, names),
                                            exclude=self._exclude(i, exclude))

            await self._each_indexed(preflight)
        return await self._each_indexed(lambda i, engine: engine.baseline(
            version, self._tenants(i, names), exclude=self._exclude(i, exclude),
            arguments=arguments))

    async def prune(self, older_than: str | float) -> list[int]:
        """Each database's :meth:`Engine.prune`: how many runs went from each ledger."""
        return await self._each(lambda engine: engine.prune(older_than))

    async def resume(self, run_id: str | None = None) -> list[Report]:
        """Each database's :meth:`Engine.resume`."""
        return await self._each(lambda engine: engine.resume(run_id))

    async def ledger(self, run_id: str | None = None) -> list[tuple[RunRecord, list[LedgerRow]]]:
        """Each database's :meth:`Engine.ledger`."""
        return await self._each(lambda engine: engine.ledger(run_id))

    def _refuse_drift(self, i: int, plan: Plan) -> None:
        try:
            self.engines[i].refuse_drift(plan)
        except DriftError as exc:
            raise DriftError(f"{redact_dsn(self.dsns[i])}: {exc}", exc.drifted) from None

    async def _each(self, action: Callable[[Engine], Awaitable[_T]]) -> list[_T]:
        return await self._each_indexed(lambda _i, engine: action(engine))

    async def _each_indexed(
        self, action: Callable[[int, Engine], Awaitable[_T]]
    ) -> list[_T]:
        """*action* on every database at once; results in DSN order. The first
        :class:`TenantmigError` of any database is raised as itself."""
        results: list[Any] = [None] * len(self.engines)

        async def one(i: int) -> None:
            results[i] = await action(i, self.engines[i])

        try:
            async with anyio.create_task_group() as tg:
                for i in range(len(self.engines)):
                    tg.start_soon(one, i)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return results


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group: a TenantmigError if there is one."""
    ours, _rest = group.split(TenantmigError)
    return next(_leaves(ours if ours is not None else group))


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error

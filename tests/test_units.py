"""How a tenant's pending migrations are grouped into units: a pure function of the
migrations and the run's settings, tested with no database."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import MakeMigrations

from tenantmig import Migration, load_migrations
from tenantmig.executor import Unit, UnitKind, units
from tenantmig.outcome import Direction

PLAIN = "CREATE TABLE {{schema}}.t%d (id int);"
PYTHON = "async def up(ctx):\n    await ctx.execute('SELECT 1')\n"
NO_TRANSACTION = ("-- tenantmig:no-transaction\n"
                  "CREATE INDEX CONCURRENTLY i%d ON {{schema}}.t1 (id);")
TIMED = "-- tenantmig:statement-timeout=5s\nCREATE TABLE {{schema}}.s%d (id int);"
# A session setting keeps SQL out of a batch (it would outlive the migration).
SETS_SESSION = "SET work_mem = '64MB';\nCREATE TABLE {{schema}}.w%d (id int);"


def load(make_migrations: MakeMigrations, *kinds: str) -> list[Migration]:
    """Migrations V1, V2, ... of the given bodies (``%d``: the version)."""
    files = {}
    for version, body in enumerate(kinds, start=1):
        suffix = "py" if body is PYTHON else "sql"
        files[f"V{version}__m{version}.{suffix}"] = body.replace("%d", str(version))
    return list(load_migrations(make_migrations(files)).migrations)


def shape(result: list[Unit]) -> list[tuple[UnitKind, list[int]]]:
    return [(u.kind, [m.version for m in u.migrations]) for u in result]


def up(pending: list[Migration], *, atomic: bool = False, session: bool = True) -> list[Unit]:
    return units(pending, atomic, Direction.UP, session)


def test_no_migrations_no_units() -> None:
    assert units([], False, Direction.UP, True) == []
    assert units([], True, Direction.DOWN, False) == []


def test_plain_sql_goes_in_one_batch(make_migrations: MakeMigrations) -> None:
    pending = load(make_migrations, PLAIN, PLAIN, PLAIN)
    assert shape(up(pending)) == [(UnitKind.BATCH, [1, 2, 3])]


def test_sql_a_batch_cannot_hold_goes_through_the_procedure(
    make_migrations: MakeMigrations,
) -> None:
    pending = load(make_migrations, PLAIN, SETS_SESSION, SETS_SESSION, PLAIN)
    assert shape(up(pending)) == [
        (UnitKind.BATCH, [1]), (UnitKind.EACH, [2, 3]), (UnitKind.BATCH, [4]),
    ]


def test_without_session_plain_sql_goes_through_the_procedure(
    make_migrations: MakeMigrations,
) -> None:
    pending = load(make_migrations, PLAIN, SETS_SESSION, PLAIN)
    assert shape(up(pending, session=False)) == [(UnitKind.EACH, [1, 2, 3])]


def test_python_and_statement_timeouts_go_alone(make_migrations: MakeMigrations) -> None:
    pending = load(make_migrations, PYTHON, PYTHON, TIMED, TIMED, PLAIN)
    expected = [
        (UnitKind.SINGLE, [1]), (UnitKind.SINGLE, [2]), (UnitKind.SINGLE, [3]),
        (UnitKind.SINGLE, [4]), (UnitKind.BATCH, [5]),
    ]
    assert shape(up(pending)) == expected
    assert shape(up(pending, session=False)) == [*expected[:4], (UnitKind.EACH, [5])]


def test_non_transactional_migrations_go_alone(make_migrations: MakeMigrations) -> None:
    pending = load(make_migrations, PLAIN, NO_TRANSACTION, NO_TRANSACTION, PLAIN)
    expected = [
        (UnitKind.BATCH, [1]), (UnitKind.NO_TRANSACTION, [2]),
        (UnitKind.NO_TRANSACTION, [3]), (UnitKind.BATCH, [4]),
    ]
    assert shape(up(pending)) == expected
    # Not even --atomic-tenant puts them in a transaction.
    assert shape(up(pending, atomic=True)) == [
        (UnitKind.ATOMIC_BATCH, [1]), (UnitKind.NO_TRANSACTION, [2]),
        (UnitKind.NO_TRANSACTION, [3]), (UnitKind.ATOMIC_BATCH, [4]),
    ]


def test_atomic_tenant_groups_all_transactional_migrations(
    make_migrations: MakeMigrations,
) -> None:
    pending = load(make_migrations, PLAIN, PYTHON, TIMED, SETS_SESSION, NO_TRANSACTION, PLAIN)
    assert shape(up(pending, atomic=True)) == [
        (UnitKind.ATOMIC, [1, 2, 3, 4]), (UnitKind.NO_TRANSACTION, [5]),
        (UnitKind.ATOMIC_BATCH, [6]),
    ]


def test_atomic_plain_sql_goes_as_one_batch_with_a_session_only(
    make_migrations: MakeMigrations,
) -> None:
    pending = load(make_migrations, PLAIN, PLAIN, PLAIN)
    assert shape(up(pending, atomic=True)) == [(UnitKind.ATOMIC_BATCH, [1, 2, 3])]
    assert shape(up(pending, atomic=True, session=False)) == [(UnitKind.ATOMIC, [1, 2, 3])]
    # One statement timeout, or one session setting, and the client holds the transaction.
    for other in (TIMED, SETS_SESSION):
        mixed = load(make_migrations, PLAIN, other, PLAIN)
        assert shape(up(mixed, atomic=True)) == [(UnitKind.ATOMIC, [1, 2, 3])]


def test_direction_down_groups_the_undo_steps(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__a.sql": PLAIN % 1,
        "U1__a.sql": "DROP TABLE {{schema}}.t1;",
        "V2__b.sql": NO_TRANSACTION % 2,
        "U2__b.sql": "DROP TABLE {{schema}}.t2;",
        "V3__c.sql": PLAIN % 3,
        "U3__c.sql": "-- tenantmig:no-transaction\nDROP INDEX CONCURRENTLY {{schema}}.i3;",
        "V4__d.sql": PLAIN % 4,
        "U4__d.sql": "DROP TABLE {{schema}}.t4;",
    })
    newest_first = list(reversed(load_migrations(folder).migrations))
    # The undo steps decide: V2 ran outside a transaction, its undo does not.
    assert shape(units(newest_first, False, Direction.DOWN, True)) == [
        (UnitKind.BATCH, [4]), (UnitKind.NO_TRANSACTION, [3]), (UnitKind.BATCH, [2, 1]),
    ]
    assert shape(units(newest_first, True, Direction.DOWN, True)) == [
        (UnitKind.ATOMIC_BATCH, [4]), (UnitKind.NO_TRANSACTION, [3]),
        (UnitKind.ATOMIC_BATCH, [2, 1]),
    ]
    assert shape(units(newest_first, False, Direction.UP, True)) == [
        (UnitKind.BATCH, [4, 3]), (UnitKind.NO_TRANSACTION, [2]), (UnitKind.BATCH, [1]),
    ]


def test_a_missing_undo_goes_alone_in_a_transaction(make_migrations: MakeMigrations) -> None:
    """Applying it then fails, naming the version."""
    folder = make_migrations({
        "V1__a.sql": PLAIN % 1,
        "U1__a.sql": "DROP TABLE {{schema}}.t1;",
        "V2__b.sql": PLAIN % 2,
    })
    newest_first = list(reversed(load_migrations(folder).migrations))
    assert shape(units(newest_first, False, Direction.DOWN, True)) == [
        (UnitKind.SINGLE, [2]), (UnitKind.BATCH, [1]),
    ]
    assert shape(units(newest_first, True, Direction.DOWN, True)) == [
        (UnitKind.ATOMIC, [2, 1]),
    ]


def test_units_are_frozen(make_migrations: MakeMigrations) -> None:
    (unit,) = up(load(make_migrations, PLAIN))
    assert isinstance(unit.migrations, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        unit.kind = UnitKind.EACH  # type: ignore[misc]

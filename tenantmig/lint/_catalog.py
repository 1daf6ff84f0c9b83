"""What the tenants already hold, read from the database: the linter's starting facts.

Tables made by whatever created the tenants (another tool, by hand) are unknown to a folder
that never created them, so a widening of their columns cannot be proven safe. One query for
the whole database reads, for the targeted tenant schemas, every table's columns with their
types and nullability; :meth:`Catalog.seed` puts them into the lint state as if a migration had
created them. Where tenants disagree, the worst tenant decides and is remembered, so that a
finding can name it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pglast import ast, parse_sql

from ..history import HISTORY_TABLE
from ._common import SENTINEL_NAME, strings
from ._state import ColumnType, State, column_type

S = TypeVar("S", bound=State)

_QUERY = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
  AND c.relname <> $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY n.nspname, c.relname, a.attnum
"""
"""One query for every targeted tenant: ordinary and partitioned tables' live columns. The
history table's name is a parameter: no statement naming it stays prepared on a connection
(see ``history``)."""


@dataclass(frozen=True)
class CatalogColumn:
    """One column of one table as each tenant holds it."""

    types: Mapping[str, ColumnType | None]
    """Tenant -> the column's type (None: a type the linter cannot parse)."""
    not_null: frozenset[str]
    """The tenants where the column is NOT NULL."""


@dataclass(frozen=True)
class Catalog:
    """The tenants' tables and columns: (table, column) -> :class:`CatalogColumn`."""

    tenants: tuple[str, ...]
    columns: Mapping[tuple[str, str], CatalogColumn] = field(default_factory=dict)

    def merged(self, other: Catalog) -> Catalog:
        """This catalog and *other*'s (another database's tenants) as one."""
        columns = dict(self.columns)
        for key, column in other.columns.items():
            mine = columns.get(key)
            columns[key] = column if mine is None else CatalogColumn(
                {**mine.types, **column.types}, mine.not_null | column.not_null)
        return Catalog((*self.tenants, *other.tenants), columns)

    def seed(self, state: S) -> S:
        """A copy of *state* with the columns of the tables it does not know yet.

        A column's type is the one tenant's that differs most from the others (the least
        common, then the first tenant by name), and every tenant's type is kept in
        :attr:`State.tenant_types` so the rules judge the worst; it is NOT NULL only where it
        is so in every tenant (a rule trusting NOT NULL must hold in each)."""
        seeded = state.copy()
        known = {table for table, _ in state.columns}
        for (table, name), column in self.columns.items():
            if table in known:
                continue
            typed = {t: c for t, c in sorted(column.types.items()) if c is not None}
            if len(typed) == len(column.types) and typed:
                counts = Counter(typed.values())
                seeded.columns[(table, name)] = min(
                    typed.values(), key=lambda c: counts[c])
                if len(counts) > 1:
                    seeded.tenant_types[(table, name)] = tuple(typed.items())
            if column.types and column.not_null >= set(column.types):
                seeded.not_null.add((table, name))
        return seeded


async def read_catalog(conn: Any, tenants: Sequence[str]) -> Catalog:
    """The catalog of *tenants* (schema names) in *conn*'s database, in one query."""
    rows = await conn.fetch(_QUERY, list(tenants), HISTORY_TABLE)
    return catalog_of(tenants, [tuple(r) for r in rows])


def catalog_of(
    tenants: Sequence[str], rows: Sequence[tuple[str, str, str, str, bool]]
) -> Catalog:
    """The :class:`Catalog` of rows ``(schema, table, column, format_type, not null)``."""
    types: dict[tuple[str, str], dict[str, ColumnType | None]] = defaultdict(dict)
    not_null: dict[tuple[str, str], set[str]] = defaultdict(set)
    for schema, table, column, formatted, notnull in rows:
        types[(table, column)][schema] = parse_type(formatted, schema)
        if notnull:
            not_null[(table, column)].add(schema)
    return Catalog(
        tuple(tenants),
        {key: CatalogColumn(dict(by), frozenset(not_null[key])) for key, by in types.items()},
    )


def parse_type(formatted: str, schema: str) -> ColumnType | None:
    """The :class:`ColumnType` of ``format_type()``'s text in tenant *schema*, parsed as a
    column definition in ``CREATE TABLE`` is (so ``character varying(50)`` is
    ``varchar(50)``, and the tenant's own ``tenant_a.status`` is ``{{schema}}.status``)."""
    try:
        statements = parse_sql(f"CREATE TABLE t (c {formatted})")
    except Exception:  # a type name SQL cannot write back is simply unknown
        return None
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.CreateStmt) or not stmt.tableElts:
        return None
    definition = stmt.tableElts[0]
    if not isinstance(definition, ast.ColumnDef):
        return None
    found = column_type(definition.typeName)
    if found is not None and definition.typeName is not None:
        parts = strings(definition.typeName.names)
        if len(parts) == 2 and parts[0] == schema:
            return ColumnType(f"{SENTINEL_NAME}.{parts[1]}", found.mods, found.array)
    return found

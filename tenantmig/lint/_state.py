"""Facts carried from one migration to the next, and column types with their coercions."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Self

from pglast import ast

from ._common import SENTINEL_NAME, strings


@dataclass(frozen=True)
class ColumnType:
    """A column's type as far as the linter needs it: name, integer modifiers, array or not."""

    name: str
    """``varchar``, ``numeric``, ... for built-in types; ``schema.name`` for others."""
    mods: tuple[int, ...] = ()
    array: bool = False

    def __str__(self) -> str:
        text = self.name.replace(SENTINEL_NAME, "{{schema}}")
        if self.mods:
            text += "(" + ",".join(str(m) for m in self.mods) + ")"
        return text + ("[]" if self.array else "")


_CANONICAL = {
    "serial": "int4",
    "serial4": "int4",
    "bigserial": "int8",
    "serial8": "int8",
    "smallserial": "int2",
    "serial2": "int2",
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "boolean": "bool",
    "decimal": "numeric",
    "character varying": "varchar",
}
_PRECISION_TYPES = frozenset({"timestamp", "timestamptz", "time", "timetz", "interval"})


def column_type(node: ast.TypeName | None) -> ColumnType | None:
    """The :class:`ColumnType` a type name in SQL denotes, or None if it cannot tell."""
    if node is None or node.pct_type:
        return None
    parts = strings(node.names)
    if not parts:
        return None
    if len(parts) == 1:
        name = _CANONICAL.get(parts[0].lower(), parts[0].lower())
    elif parts[0] == "pg_catalog" and len(parts) == 2:
        name = _CANONICAL.get(parts[1], parts[1])
    else:
        name = ".".join(parts[-2:])
    mods: list[int] = []
    for mod in node.typmods or ():
        value = mod.val if isinstance(mod, ast.A_Const) else None
        if isinstance(value, ast.Integer) and value.ival is not None:
            mods.append(value.ival)
        else:
            return ColumnType(name, (), bool(node.arrayBounds))
    return ColumnType(name, tuple(mods), bool(node.arrayBounds))


Coercion = Literal["same", "binary", "timezone", "rewrite"]


def coercion(old: ColumnType, new: ColumnType) -> Coercion:
    """How PostgreSQL changes a column from *old* to *new*.

    ``binary`` (no rewrite, no index rebuild): varchar(n) -> varchar(m >= n), varchar or text;
    text -> varchar; numeric(p,s) -> numeric(p2 >= p,s) or numeric; varbit likewise;
    cidr -> inet; more (or unlimited) precision of timestamp/time/interval. ``timezone``:
    timestamp -> timestamptz, no rewrite only when the session TimeZone is UTC (PG 12+).
    Everything else rewrites.
    """
    if old == new:
        return "same"
    if old.array or new.array:
        return "rewrite"
    if old.name in ("varchar", "text") and new.name in ("varchar", "text"):
        if new.name == "text" or not new.mods:
            return "binary"
        if old.name == "varchar" and old.mods and new.mods[0] >= old.mods[0]:
            return "binary"
        return "rewrite"
    if old.name == new.name and old.name in ("numeric", "varbit"):
        if not new.mods:
            return "binary"
        if (
            old.mods
            and len(old.mods) == len(new.mods)
            and new.mods[0] >= old.mods[0]
            and old.mods[1:] == new.mods[1:]
        ):
            return "binary"
        return "rewrite"
    if old.name == new.name and old.name in _PRECISION_TYPES:
        if not new.mods or (old.mods and new.mods[0] >= old.mods[0]):
            return "binary"
        return "rewrite"
    if (old.name, new.name) == ("cidr", "inet"):
        return "binary"
    if (old.name, new.name) == ("timestamp", "timestamptz") and (
        not new.mods or (old.mods and new.mods[0] >= old.mods[0])
    ):
        return "timezone"
    return "rewrite"


@dataclass(frozen=True)
class Check:
    """A CHECK constraint the migrations added: the column it proves NOT NULL, if any."""

    column: str | None
    validated: bool


@dataclass
class State:
    """Facts established by earlier migrations, which later rules depend on.

    Built as the migrations are linted in version order. This module knows nothing of the
    rules: the public :class:`tenantmig.lint.LintState` adds ``after(sql)``, which runs them.
    """

    columns: dict[tuple[str, str], ColumnType] = field(default_factory=dict)
    """(table, column) -> type, for tables created by the migrations."""
    checks: dict[tuple[str, str], Check] = field(default_factory=dict)
    """(table, constraint name) -> CHECK constraint."""
    indexes: dict[str, str] = field(default_factory=dict)
    """Index name -> its table."""
    enums: set[str] = field(default_factory=set)
    """Enum types created by the migrations."""
    not_null: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) known to be NOT NULL (declared so, a primary key, SET NOT NULL)."""
    functions: set[str] = field(default_factory=set)
    """Functions, procedures and aggregates created by the migrations (names only)."""
    types: set[str] = field(default_factory=set)
    """Types created by the migrations: enums, domains, composite, range and base types."""
    sequences: set[str] = field(default_factory=set)
    """Sequences created by the migrations (``CREATE SEQUENCE``, serial columns)."""
    stable_functions: frozenset[str] = frozenset()
    """Functions the migrations created IMMUTABLE or STABLE (a default may call them)."""
    tenant_types: dict[tuple[str, str], tuple[tuple[str, ColumnType], ...]] = field(
        default_factory=dict)
    """(table, column) -> (tenant, type) of each tenant, for columns of the tenants' catalog
    whose type differs between tenants (see ``_catalog``): a rule judges each and names the
    worst."""

    def copy(self) -> Self:
        """A copy whose collections can change without changing this one."""
        return replace(
            self,
            columns=dict(self.columns),
            checks=dict(self.checks),
            indexes=dict(self.indexes),
            enums=set(self.enums),
            not_null=set(self.not_null),
            functions=set(self.functions),
            types=set(self.types),
            sequences=set(self.sequences),
            tenant_types=dict(self.tenant_types),
        )

    def rename_table(self, old: str, new: str) -> None:
        self.columns = {
            ((new if t == old else t), c): v for (t, c), v in self.columns.items()
        }
        self.checks = {((new if t == old else t), n): v for (t, n), v in self.checks.items()}
        self.indexes = {i: (new if t == old else t) for i, t in self.indexes.items()}
        self.not_null = {((new if t == old else t), c) for t, c in self.not_null}
        self.tenant_types = {
            ((new if t == old else t), c): v for (t, c), v in self.tenant_types.items()
        }

    def drop_table(self, table: str) -> None:
        self.columns = {k: v for k, v in self.columns.items() if k[0] != table}
        self.checks = {k: v for k, v in self.checks.items() if k[0] != table}
        self.indexes = {i: t for i, t in self.indexes.items() if t != table}
        self.not_null = {k for k in self.not_null if k[0] != table}
        self.tenant_types = {k: v for k, v in self.tenant_types.items() if k[0] != table}

    def rename_column(self, table: str, old: str, new: str) -> None:
        if (table, old) in self.columns:
            self.columns[(table, new)] = self.columns.pop((table, old))
        if (table, old) in self.not_null:
            self.not_null.discard((table, old))
            self.not_null.add((table, new))
        if (table, old) in self.tenant_types:
            self.tenant_types[(table, new)] = self.tenant_types.pop((table, old))
        for key, check in list(self.checks.items()):
            if key[0] == table and check.column == old:
                self.checks[key] = replace(check, column=new)

    def drop_column(self, table: str, column: str) -> None:
        self.columns.pop((table, column), None)
        self.not_null.discard((table, column))
        self.tenant_types.pop((table, column), None)
        self.checks = {
            k: v for k, v in self.checks.items() if not (k[0] == table and v.column == column)
        }

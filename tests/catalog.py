"""A comparable description of everything in one schema (import as ``from catalog import ...``).

:func:`schema_catalog` reads the catalog of one schema into plain data: two schemas built by
the same history compare equal, whatever their names and whatever OIDs their objects got.
Every definition is read with ``search_path`` set to ``pg_catalog`` alone, so PostgreSQL
qualifies every name of the schema, and the schema's name is then replaced by
:data:`PLACEHOLDER` wherever it appears (bare, quoted, or inside a string constant such as
``nextval('tenant_a.x_seq'::regclass)``).

The engine's own ``tenantmig_history`` table (and what belongs to it) is left out.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

__all__ = ["HISTORY_TABLE", "PLACEHOLDER", "leftovers", "schema_catalog"]

PLACEHOLDER = "{{schema}}"
HISTORY_TABLE = "tenantmig_history"

# Columns whose value depends on when a row was written, not on the history: compared by
# count only. A default that calls one of these is what marks such a column.
_VOLATILE_DEFAULT = re.compile(
    r"\b(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday|random|"
    r"gen_random_uuid|uuid_generate_v[14])\(|\bCURRENT_(TIMESTAMP|DATE|TIME)\b|\bLOCALTIMESTAMP\b",
    re.IGNORECASE,
)

_RELATIONS = """
SELECT c.oid, c.relname, c.relkind::text AS relkind, c.relpersistence::text AS persistence,
       c.relispopulated, c.reloptions
FROM pg_class c
WHERE c.relnamespace = $1::oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relname <> $2
ORDER BY c.relname
"""

_COLUMNS = """
SELECT c.relname AS rel, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity::text AS identity,
       a.attgenerated::text AS generated, co.collname AS collation
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
WHERE c.relnamespace = $1::oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
  AND c.relname <> $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_INDEXES = """
SELECT i.relname AS name, t.relname AS rel, pg_get_indexdef(x.indexrelid) AS definition,
       x.indisvalid, x.indisready, x.indisprimary, x.indisunique
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
WHERE i.relnamespace = $1::oid AND t.relname <> $2
ORDER BY i.relname
"""

_CONSTRAINTS = """
SELECT coalesce(t.relname, ty.typname) AS owner, c.conname, c.contype::text AS type,
       pg_get_constraintdef(c.oid) AS definition, c.convalidated, c.condeferrable,
       c.condeferred
FROM pg_constraint c
LEFT JOIN pg_class t ON t.oid = c.conrelid
LEFT JOIN pg_type ty ON ty.oid = c.contypid
WHERE c.connamespace = $1::oid AND coalesce(t.relname, '') <> $2
ORDER BY 1, 2
"""

_SEQUENCES = """
SELECT c.relname AS name, format_type(s.seqtypid, NULL) AS type, s.seqstart, s.seqincrement,
       s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
       (SELECT t.relname || '.' || a.attname || ' (' || d.deptype::text || ')'
          FROM pg_depend d
          JOIN pg_class t ON t.oid = d.refobjid
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS owned_by
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
WHERE c.relnamespace = $1::oid
ORDER BY c.relname
"""

_VIEWS = """
SELECT c.relname AS name, c.relkind::text AS kind, pg_get_viewdef(c.oid) AS definition
FROM pg_class c
WHERE c.relnamespace = $1::oid AND c.relkind IN ('v', 'm')
ORDER BY c.relname
"""

_FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS signature,
       p.prokind::text AS kind,
       CASE WHEN p.prokind = 'a' THEN NULL ELSE pg_get_functiondef(p.oid) END AS definition,
       p.provolatile::text AS volatility, l.lanname AS language, p.prosecdef,
       p.proconfig, p.prosrc
FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = $1::oid
ORDER BY 1
"""

_TRIGGERS = """
SELECT c.relname AS rel, g.tgname, pg_get_triggerdef(g.oid) AS definition,
       g.tgenabled::text AS enabled
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
WHERE c.relnamespace = $1::oid AND NOT g.tgisinternal AND c.relname <> $2
ORDER BY 1, 2
"""

_ENUMS = """
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
FROM pg_type t
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = $1::oid
GROUP BY t.typname
ORDER BY t.typname
"""

_COMPOSITES = """
SELECT t.typname
FROM pg_type t
JOIN pg_class c ON c.oid = t.typrelid
WHERE t.typnamespace = $1::oid AND t.typtype = 'c' AND c.relkind = 'c'
ORDER BY t.typname
"""

_DOMAINS = """
SELECT t.typname, format_type(t.typbasetype, t.typtypmod) AS base, t.typnotnull,
       t.typdefault, co.collname AS collation
FROM pg_type t
LEFT JOIN pg_collation co ON co.oid = t.typcollation AND t.typcollation <> 100
WHERE t.typnamespace = $1::oid AND t.typtype = 'd'
ORDER BY t.typname
"""

_OTHER_TYPES = """
SELECT t.typname, t.typtype::text AS typtype
FROM pg_type t
WHERE t.typnamespace = $1::oid AND t.typtype NOT IN ('c', 'd', 'e')
  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_range r WHERE r.rngmultitypid = t.oid)
ORDER BY t.typname
"""

# pg_identify_object names the schema (quoted if need be) of most commented objects, a
# column or constraint under its table's; a trigger, rule or policy has none: its table's.
_COMMENTS = """
SELECT o.type, o.identity, d.description
FROM pg_description d
CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
WHERE o.schema IN ($1, quote_ident($1))
   OR d.classoid = 'pg_trigger'::regclass AND EXISTS (
          SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE t.oid = d.objoid AND c.relnamespace = $2::oid)
   OR d.classoid = 'pg_rewrite'::regclass AND EXISTS (
          SELECT 1 FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
          WHERE w.oid = d.objoid AND c.relnamespace = $2::oid)
   OR d.classoid = 'pg_policy'::regclass AND EXISTS (
          SELECT 1 FROM pg_policy y JOIN pg_class c ON c.oid = y.polrelid
          WHERE y.oid = d.objoid AND c.relnamespace = $2::oid)
ORDER BY 1, 2
"""

# Anything left in the schema, whatever its kind: what "nothing but the history table" checks.
_LEFTOVERS = """
SELECT 'relation ' || relname FROM pg_class
 WHERE relnamespace = $1::oid AND relname NOT LIKE $2 || '%'
UNION ALL
SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = $1::oid
UNION ALL
SELECT 'type ' || t.typname FROM pg_type t
 WHERE t.typnamespace = $1::oid AND t.typname NOT LIKE '%' || $2 || '%'
UNION ALL
SELECT 'operator ' || oprname FROM pg_operator WHERE oprnamespace = $1::oid
UNION ALL
SELECT 'collation ' || collname FROM pg_collation WHERE collnamespace = $1::oid
UNION ALL
SELECT 'statistics ' || stxname FROM pg_statistic_ext WHERE stxnamespace = $1::oid
UNION ALL
SELECT 'constraint ' || conname FROM pg_constraint
 WHERE connamespace = $1::oid AND conname NOT LIKE $2 || '%'
ORDER BY 1
"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Normaliser:
    """Replaces one schema's name, in every spelling PostgreSQL prints it, by the placeholder."""

    def __init__(self, schema: str, server_quoted: str) -> None:
        spellings = {_quote(schema), server_quoted}
        # The same spellings inside a string constant have their quotes doubled.
        spellings |= {s.replace("'", "''") for s in spellings}
        self._literal = sorted((s for s in spellings if s.startswith('"')), key=len,
                               reverse=True)
        self._bare = (
            re.compile(r'(?<![\w$"])' + re.escape(schema) + r'(?![\w$"])')
            if server_quoted == schema else None
        )

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        for spelling in self._literal:
            value = value.replace(spelling, PLACEHOLDER)
        if self._bare is not None:
            value = self._bare.sub(PLACEHOLDER, value)
        return value

    def row(self, record: asyncpg.Record, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key in skip:
                continue
            if isinstance(value, str):
                value = self.text(value)
            elif isinstance(value, list):
                value = [self.text(v) if isinstance(v, str) else v for v in value]
            out[key] = value
        return out


async def schema_catalog(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """Everything in *schema* as plain, comparable data, its own name replaced by
    :data:`PLACEHOLDER`.

    Sections: ``tables`` (kind, persistence, options, columns with type, nullability,
    default, identity, generated, collation), ``indexes`` (definition, validity),
    ``constraints`` (of tables and domains), ``sequences`` (type, start, increment, bounds,
    owner), ``views`` (views and materialized views, with their definitions),
    ``functions`` (functions, procedures and aggregates: full definition, volatility,
    language, settings, body), ``triggers``, ``types`` (enums with their labels in order,
    composites with their attributes, domains, any other kind), ``comments`` and ``rows``
    (per table and materialized view: row count and an md5 of all its rows, sorted; columns
    whose default is volatile such as ``now()`` are listed under ``unchecked`` and left out
    of the checksum). ``tenantmig_history`` is left out.
    """
    async with conn.transaction(readonly=True):
        await conn.execute("SET LOCAL search_path TO pg_catalog")
        namespace = await _namespace(conn, schema)
        server_quoted = await conn.fetchval("SELECT quote_ident($1)", schema)
        norm = _Normaliser(schema, server_quoted)
        return await _read(conn, schema, namespace, norm)


async def _namespace(conn: asyncpg.Connection, schema: str) -> int:
    oid = await conn.fetchval("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1", schema)
    if oid is None:
        raise LookupError(f"no schema {schema!r}")
    return int(oid)


async def _read(
    conn: asyncpg.Connection, schema: str, namespace: int, norm: _Normaliser
) -> dict[str, Any]:
    args = (namespace, HISTORY_TABLE)

    columns: dict[str, list[dict[str, Any]]] = {}
    for r in await conn.fetch(_COLUMNS, *args):
        columns.setdefault(r["rel"], []).append(norm.row(r, skip=("rel",)))

    tables: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    for r in await conn.fetch(_RELATIONS, *args):
        name = r["relname"]
        tables[name] = {**norm.row(r, skip=("oid", "relname")), "columns": columns.get(name, [])}
        if r["relkind"] in ("r", "p", "m") and (r["relkind"] != "m" or r["relispopulated"]):
            rows[name] = await _rows(conn, schema, name, columns.get(name, []))

    composites: dict[str, Any] = {
        r["typname"]: {"kind": "composite", "attributes": columns.get(r["typname"], [])}
        for r in await conn.fetch(_COMPOSITES, namespace)
    }
    for name in composites:
        tables.pop(name, None)

    constraints: dict[str, Any] = {}
    domain_checks: dict[str, list[str | None]] = {}
    for r in await conn.fetch(_CONSTRAINTS, *args):
        constraints[f"{r['owner']}.{r['conname']}"] = norm.row(r, skip=("owner", "conname"))
        domain_checks.setdefault(r["owner"], []).append(norm.text(r["definition"]))

    types: dict[str, Any] = {
        r["typname"]: {"kind": "enum", "labels": list(r["labels"])}
        for r in await conn.fetch(_ENUMS, namespace)
    }
    types.update(composites)
    for r in await conn.fetch(_DOMAINS, namespace):
        types[r["typname"]] = {"kind": "domain", **norm.row(r, skip=("typname",)),
                               "checks": domain_checks.get(r["typname"], [])}
    for r in await conn.fetch(_OTHER_TYPES, namespace):
        if r["typname"] not in tables and r["typname"] != HISTORY_TABLE:
            types.setdefault(r["typname"], {"kind": r["typtype"]})

    return {
        "tables": tables,
        "indexes": {r["name"]: norm.row(r, skip=("name",))
                    for r in await conn.fetch(_INDEXES, *args)},
        "constraints": constraints,
        "sequences": {r["name"]: norm.row(r, skip=("name",))
                      for r in await conn.fetch(_SEQUENCES, namespace)},
        "views": {r["name"]: norm.row(r, skip=("name",))
                  for r in await conn.fetch(_VIEWS, namespace)},
        "functions": {norm.text(r["signature"]): norm.row(r, skip=("signature",))
                      for r in await conn.fetch(_FUNCTIONS, namespace)},
        "triggers": {f"{r['rel']}.{r['tgname']}": norm.row(r, skip=("rel", "tgname"))
                     for r in await conn.fetch(_TRIGGERS, *args)},
        "types": types,
        "comments": {f"{r['type']} {norm.text(r['identity'])}": r["description"]
                     for r in await conn.fetch(_COMMENTS, schema, namespace)
                     if HISTORY_TABLE not in r["identity"]},
        "rows": rows,
    }


async def _rows(
    conn: asyncpg.Connection, schema: str, table: str, columns: list[dict[str, Any]]
) -> dict[str, Any]:
    checked = [c["attname"] for c in columns
               if not (c["default"] and _VOLATILE_DEFAULT.search(c["default"]))]
    unchecked = [c["attname"] for c in columns if c["attname"] not in checked]
    # Each row as the text of a ROW() of its checked columns; sorting the texts orders the
    # rows by all their columns, whatever the column types (json has no btree order).
    row = "ROW(" + ", ".join(_quote(c) for c in checked) + ")::text" if checked else "''"
    count, digest = await conn.fetchrow(
        f"SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) "
        f"FROM (SELECT {row} AS r FROM {_quote(schema)}.{_quote(table)}) t"
    )
    return {"count": count, "checksum": digest, "unchecked": unchecked}


async def leftovers(conn: asyncpg.Connection, schema: str) -> list[str]:
    """What is in *schema* apart from the history table (and its index, constraint and row
    type): empty once every migration has been undone."""
    namespace = await _namespace(conn, schema)
    return [r[0] for r in await conn.fetch(_LEFTOVERS, namespace, HISTORY_TABLE)]

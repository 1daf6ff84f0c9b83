"""Helpers shared by the test suite (import as ``from tests.helpers import ...`` or ``helpers``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

__all__ = [
    "create_tenants",
    "dsn_with_database",
    "execute",
    "fetch",
    "fetchval",
    "fresh_database",
    "quote_ident",
    "relations",
    "schemas",
]

_BATCH = 200  # schemas per transaction: keeps the lock table small for thousands of tenants


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def dsn_with_database(dsn: str, dbname: str) -> str:
    """The URL ``dsn`` with its database replaced by ``dbname``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL DSN, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


async def create_tenants(dsn: str, names: Iterable[str], *, with_table: bool = False) -> None:
    """Create a schema per name (optionally with a ``things(id int primary key)`` table)."""
    statements: list[str] = []
    for name in names:
        schema = quote_ident(name)
        statements.append(f"CREATE SCHEMA {schema};")
        if with_table:
            statements.append(f"CREATE TABLE {schema}.things (id int PRIMARY KEY);")
    per_tenant = 2 if with_table else 1
    batch = _BATCH * per_tenant
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, len(statements), batch):
            async with conn.transaction():
                await conn.execute("\n".join(statements[start : start + batch]))
    finally:
        await conn.close()


async def schemas(dsn: str, *, include_public: bool = False) -> set[str]:
    """All non-system schema names (``pg_*`` and ``information_schema`` excluded).

    ``public`` is left out unless ``include_public`` is true.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT nspname FROM pg_namespace
            WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
            """
        )
    finally:
        await conn.close()
    names = {r["nspname"] for r in rows}
    if not include_public:
        names.discard("public")
    return names


async def relations(dsn: str, schema: str) -> set[str]:
    """Names of tables, indexes, sequences, views and user-defined types in ``schema``.

    Implicit types (table row types, array types, multirange types) are left out.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname AS name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1
            UNION
            SELECT t.typname
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = $1
              AND t.typrelid = 0
              AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
              AND NOT EXISTS (SELECT 1 FROM pg_range r WHERE r.rngmultitypid = t.oid)
            """,
            schema,
        )
    finally:
        await conn.close()
    return {r["name"] for r in rows}


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one query on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    """The first value of one query on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def execute(dsn: str, sql: str, *args: Any) -> None:
    """One statement on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str, name: str) -> AsyncIterator[str]:
    """Create database *name* on the server, yield its DSN, drop it (WITH FORCE) after."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    try:
        yield dsn_with_database(server_dsn, name)
    finally:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()

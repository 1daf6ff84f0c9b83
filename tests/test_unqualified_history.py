"""An existing history, unqualified throughout, as real projects write it (issue 14, item 1).

``tests/data/unqualified_history`` is a forum's first years: 45 versions, each with its undo,
that never name ``{{schema}}``. The reference is what a team had before tenantmig: the same
files applied by psql to one schema under ``SET search_path``. Every tenant that tenantmig
migrates must come out with the same catalog and the same rows as that reference; ``down`` to
0 must leave nothing but the history table; ``up`` again must give the same catalog again.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pglast
from catalog import leftovers, schema_catalog
from helpers import create_tenants, fetchval, quote_ident

import tenantmig

HISTORY = Path(__file__).parent / "data" / "unqualified_history"

_FILE = re.compile(r"^(?P<kind>[VU])(?P<version>\d+)__(?P<description>.+)\.sql$")
_NO_TRANSACTION = "-- tenantmig:no-transaction"

TENANTS = [f"tenant_{i:03d}" for i in range(1, 21)] + ["tenant_O'Brien \"x\""]
REFERENCE = "reference"


@dataclass(frozen=True)
class SqlFile:
    version: int
    path: Path
    text: str

    @property
    def transactional(self) -> bool:
        header = []
        for line in self.text.splitlines():
            if line.strip() and not line.strip().startswith("--"):
                break
            header.append(line.strip())
        return _NO_TRANSACTION not in header


def history_files(kind: str) -> list[SqlFile]:
    """The V (or U) files of the history, in version order."""
    files = []
    for path in HISTORY.iterdir():
        match = _FILE.match(path.name)
        if match and match["kind"] == kind:
            files.append(SqlFile(int(match["version"]), path, path.read_text(encoding="utf-8")))
    return sorted(files, key=lambda f: f.version)


async def psql_apply(conn: asyncpg.Connection, schema: str, files: list[SqlFile]) -> None:
    """Apply *files* to *schema* the way psql did before tenantmig: ``SET search_path``,
    then each file as one simple query (an implicit transaction), or statement by
    statement for a no-transaction file (``CREATE INDEX CONCURRENTLY`` must stand alone)."""
    for file in files:
        await conn.execute(f"SET search_path TO {quote_ident(schema)}")
        try:
            if file.transactional:
                await conn.execute(file.text)
            else:
                for statement in pglast.split(file.text, with_parser=False):
                    await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            raise AssertionError(f"{file.path.name} on {schema}: {exc!r}") from exc
    await conn.execute("RESET search_path")


async def reference_up(conn: asyncpg.Connection, schema: str) -> None:
    await psql_apply(conn, schema, history_files("V"))


async def reference_down(conn: asyncpg.Connection, schema: str) -> None:
    await psql_apply(conn, schema, history_files("U")[::-1])


async def catalogs(dsn: str, schemas: list[str]) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {schema: await schema_catalog(conn, schema) for schema in schemas}
    finally:
        await conn.close()


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The keys of each catalog section that differ: a readable assertion message."""
    out = []
    for section in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(section, {}), actual.get(section, {})
        for key in sorted(want.keys() | got.keys()):
            if want.get(key) != got.get(key):
                out.append(f"{section}[{key}]: expected {want.get(key)!r}, got {got.get(key)!r}")
    return out


def assert_same(expected: dict[str, Any], actual: dict[str, Any], what: str) -> None:
    diff = differences(expected, actual)
    assert not diff, f"{what}:\n" + "\n".join(diff[:20])


# --- the history itself ------------------------------------------------------------------


def test_history_is_a_complete_small_unqualified_history() -> None:
    ups, undos = history_files("V"), history_files("U")
    assert [f.version for f in ups] == list(range(1, len(ups) + 1))
    assert len(ups) >= 40
    assert [f.version for f in undos] == [f.version for f in ups]
    assert all("{{schema}}" not in f.text for f in ups + undos)
    no_transaction = {f.version for f in ups if not f.transactional}
    assert no_transaction == {18, 32}
    size = sum(p.stat().st_size for p in HISTORY.parent.rglob("*") if p.is_file())
    assert size < 150_000


async def test_the_reference_history_is_sound(dsn: str) -> None:
    """Applied twice to two schemas (one whose name needs quoting), the history gives the same
    catalog; all its undos leave the schema empty; applied again it gives the same again."""
    a, b = "ref_a", "ref_O'Brien \"b\""
    conn = await asyncpg.connect(dsn)
    try:
        for schema in (a, b):
            await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            await reference_up(conn, schema)
        first = await schema_catalog(conn, a)
        assert_same(first, await schema_catalog(conn, b), "two schemas, one history")

        await reference_down(conn, a)
        assert await leftovers(conn, a) == []

        await reference_up(conn, a)
        assert_same(first, await schema_catalog(conn, a), "up, down to 0, up again")
    finally:
        await conn.close()

    # The catalog holds what the history made, rows included.
    assert len(first["tables"]) >= 12 and len(first["functions"]) >= 10
    assert first["types"]["post_status"]["labels"] == ["draft", "published", "archived"]
    assert first["types"]["email_address"]["kind"] == "domain"
    assert first["types"]["post_summary"]["kind"] == "composite"
    assert "{{schema}}" in first["views"]["post_view"]["definition"]
    assert "comments_post_created_idx" in first["indexes"]
    assert first["rows"]["settings_audit"]["count"] == 5
    # The triggers fired by the data migrations did their work, in the schema itself.
    assert await fetchval(
        dsn, f"SELECT score FROM {quote_ident(b)}.posts WHERE title = 'Welcome'"
    ) == 2
    assert await fetchval(
        dsn, f"SELECT subscriber_count FROM {quote_ident(b)}.posts WHERE title = 'Welcome'"
    ) == 2
    assert await fetchval(
        dsn, f"SELECT count(*) FROM {quote_ident(b)}.user_mview WHERE post_count > 0"
    ) == 2


# --- tenantmig on many tenants -----------------------------------------------------------


async def reference_schema(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {quote_ident(REFERENCE)}")
        await reference_up(conn, REFERENCE)
        return await schema_catalog(conn, REFERENCE)
    finally:
        await conn.close()


def assert_all_like(reference: dict[str, Any], got: dict[str, dict[str, Any]],
                    what: str) -> None:
    for tenant, cat in got.items():
        assert_same(reference, cat, f"{what}: {tenant}")


async def test_up_down_up_on_many_tenants_gives_the_reference_catalog(dsn: str) -> None:
    reference = await reference_schema(dsn)
    await create_tenants(dsn, TENANTS)
    async with tenantmig.Engine(dsn, migrations=HISTORY, concurrency=8) as engine:
        report = await engine.upgrade()
        assert [o.message for o in report.failed] == []
        assert report.ok and len(report.succeeded) == len(TENANTS)
        assert_all_like(reference, await catalogs(dsn, TENANTS), "after up")

        report = await engine.downgrade(0)
        assert [o.message for o in report.failed] == []
        conn = await asyncpg.connect(dsn)
        try:
            for tenant in TENANTS:
                assert await leftovers(conn, tenant) == [], tenant
        finally:
            await conn.close()

        report = await engine.upgrade()
        assert [o.message for o in report.failed] == []
        assert_all_like(reference, await catalogs(dsn, TENANTS), "after up, down 0, up")


async def test_up_through_the_command_line(dsn: str) -> None:
    reference = await reference_schema(dsn)
    tenants = ["tenant_cli_1", "tenant_cli_2"]
    await create_tenants(dsn, tenants)
    env = {k: v for k, v in os.environ.items()
           if k not in {"TENANTMIG_DSN", "TENANTMIG_TEST_DSN", "COLUMNS", "LINES"}}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantmig", "up", "--dsn", dsn, "--migrations", str(HISTORY),
        "--log-format", "json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, (stdout.decode() + stderr.decode())[-3000:]
    assert_all_like(reference, await catalogs(dsn, tenants), "after the command line's up")

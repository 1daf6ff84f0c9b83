"""Fixtures for the whole suite.

Set ``TENANTMIG_TEST_DSN`` (a ``postgresql://`` URL of a superuser on an existing server) to
run against that server; otherwise one throwaway :class:`LocalCluster` is started per session.
Every test that uses ``dsn`` gets its own fresh database, dropped afterwards.

Helpers live in ``tests/helpers.py`` (``from helpers import create_tenants, ...``).
"""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers import BASIC, DECOYS, TENANTS, MakeMigrations, create_tenants, fresh_database

from tenantmig._cluster import LocalCluster

TEST_DSN_ENV = "TENANTMIG_TEST_DSN"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster | None]:
    """The session's LocalCluster, or None when running against ``$TENANTMIG_TEST_DSN``."""
    if os.environ.get(TEST_DSN_ENV):
        yield None
        return
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_server_dsn(pg_cluster: LocalCluster | None) -> str:
    """DSN of the server's maintenance database (superuser)."""
    if pg_cluster is None:
        return os.environ[TEST_DSN_ENV]
    return pg_cluster.dsn


@pytest.fixture
async def dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    async with fresh_database(pg_server_dsn, f"tm_{secrets.token_hex(6)}") as database:
        yield database


@pytest.fixture
def make_migrations(tmp_path: Path) -> MakeMigrations:
    """``make({"0001_x.sql": "..."}, subdir="migrations") -> Path`` writes dedented files."""

    def make(files: dict[str, str], subdir: str = "migrations") -> Path:
        directory = tmp_path / subdir
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return directory

    return make


@pytest.fixture
def project(tmp_path: Path, make_migrations: MakeMigrations) -> Path:
    """A working directory with ./migrations holding V1, V2 and U2 (``BASIC``)."""
    make_migrations(BASIC)
    return tmp_path


@pytest.fixture
async def tenants(dsn: str) -> list[str]:
    """``TENANTS`` and the ``DECOYS`` beside them created in the test's database; the tenants."""
    await create_tenants(dsn, TENANTS + DECOYS)
    return TENANTS

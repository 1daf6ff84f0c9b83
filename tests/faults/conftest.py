"""Fault injection: bad data, held locks, killed backends, killed runners, a restarted server,
signals, ``--max-failures`` and two runners at once, each against a real PostgreSQL.

Every test ends by checking the final state of EVERY tenant: its ``tenantmig_history`` (each
version exactly once), the side effects of the migrations (each migration inserts its version
into ``<tenant>.applied``, a table without a key, and creates ``<tenant>.t<version>``: a
migration applied twice or half-applied shows there), and the rows of ``tenantmig.runs`` and
``tenantmig.ledger``.

The command line runs as ``python -m tenantmig`` subprocesses whose output goes to files (so a
chatty runner never blocks on a full pipe); the Python API runs in the test's event loop.
Faults are injected from the test: a task terminating backends, a session holding a table
lock, signals to the runner, a restart of a private cluster. Each stops in a ``finally``.

The helpers are in ``faultkit.py`` (``from faults.faultkit import ...``); this file holds the
fixtures. The folder is a package (``__init__.py``) so that this conftest is imported as
``faults.conftest`` and leaves the name ``conftest`` to ``tests/conftest.py``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest
from helpers import fresh_database

from tenantmig._cluster import LocalCluster


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[LocalCluster]:
    """A cluster of our own, to restart without disturbing the session's."""
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def private_dsn(private_cluster: LocalCluster) -> AsyncIterator[str]:
    """A fresh database on the private cluster; dropped afterwards."""
    name = f"tm_{random.getrandbits(48):012x}"
    async with fresh_database(private_cluster.dsn, name) as database:
        yield database

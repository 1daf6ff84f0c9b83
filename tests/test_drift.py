"""Drift (an applied migration whose file changed or is gone) is refused before any tenant."""

from __future__ import annotations

import pytest
from helpers import (
    ONCE_ONLY,
    MakeMigrations,
    create_tenants,
    history,
    relations,
    runs,
    versions,
)

from tenantmig import DriftError, Engine


async def test_drift_refused_before_any_tenant(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({k: v for k, v in ONCE_ONLY.items() if k < "V3"})
    tenants = ["tenant_a", "tenant_b", "tenant_c"]
    await create_tenants(dsn, [*tenants, "tenant_new"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(tenants=tenants)).ok
    before = {t: await history(dsn, t) for t in tenants}
    run_count = len(await runs(dsn))

    v1 = folder / "V1__tables.sql"
    v1.write_text(v1.read_text() + "-- an innocent comment\n")
    make_migrations({"V3__python.py": ONCE_ONLY["V3__python.py"]})
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(DriftError) as info:
            await engine.upgrade()
    message = str(info.value)
    assert "V1__tables.sql" in message
    for t in tenants:
        assert t in message
    assert "tenant_new" not in message
    assert info.value.drifted == {1: tenants}
    assert len(await runs(dsn)) == run_count
    for t in tenants:
        assert await history(dsn, t) == before[t]
        assert "t3" not in await relations(dsn, t)
    assert await history(dsn, "tenant_new") is None


async def test_applied_version_without_file_is_drift(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({k: v for k, v in ONCE_ONLY.items() if k < "V3"})
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
    (folder / "V2__second.sql").unlink()
    make_migrations({"V3__python.py": ONCE_ONLY["V3__python.py"]})
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(DriftError, match="version 2") as info:
            await engine.upgrade()
    assert info.value.drifted == {2: ["tenant_a"]}
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert len(await runs(dsn)) == 1

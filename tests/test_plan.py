"""Plan: pending versions, targets and drift, as a pure function (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantmig import MigrationSet, load_migrations
from tenantmig.plan import make_plan, plan_down, plan_tenant


@pytest.fixture
def migrations(tmp_path: Path) -> MigrationSet:
    """V1..V4 (SQL), V5 (Python); undo for 2, 3 and 4."""
    for v in range(1, 5):
        (tmp_path / f"V{v}__step_{v}.sql").write_text(
            f"CREATE TABLE {{{{schema}}}}.t{v} (id int);\n", encoding="utf-8")
    for v in (2, 3, 4):
        (tmp_path / f"U{v}__step_{v}.sql").write_text(
            f"DROP TABLE {{{{schema}}}}.t{v};\n", encoding="utf-8")
    (tmp_path / "V5__python.py").write_text("async def up(ctx):\n    pass\n", encoding="utf-8")
    return load_migrations(tmp_path)


def applied(ms: MigrationSet, *versions: int) -> dict[int, str]:
    by_version = ms.by_version()
    return {v: by_version[v].checksum for v in versions}


def versions(plan_pending: tuple) -> list[int]:  # type: ignore[type-arg]
    return [m.version for m in plan_pending]


def test_tenant_without_history(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, None)
    assert versions(p.pending) == [1, 2, 3, 4, 5]
    assert p.current is None
    assert p.has_history is False
    assert p.applied == ()
    assert p.drifted == () and p.unknown == ()
    assert p.target == 5


def test_empty_history_table(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, {})
    assert versions(p.pending) == [1, 2, 3, 4, 5]
    assert p.current is None
    assert p.has_history is True


def test_pending_after_current(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1, 2))
    assert versions(p.pending) == [3, 4, 5]
    assert p.current == 2
    assert p.applied == (1, 2)
    assert p.target == 5


def test_at_head_nothing_pending(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1, 2, 3, 4, 5))
    assert p.pending == ()
    assert p.current == 5
    assert p.target == 5


def test_target_limits_pending(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1), target=3)
    assert versions(p.pending) == [2, 3]
    assert p.target == 3


def test_target_below_current_plans_nothing(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1, 2, 3), target=2)
    assert p.pending == ()
    assert p.current == 3


def test_out_of_order_missing_version_is_pending(migrations: MigrationSet) -> None:
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1, 3))
    assert versions(p.pending) == [2, 4, 5]
    assert p.current == 3
    p = plan_tenant("tenant_a", migrations, applied(migrations, 1, 3), target=3)
    assert versions(p.pending) == [2]


def test_drifted_checksum(migrations: MigrationSet) -> None:
    history = applied(migrations, 1, 2, 3)
    history[2] = "0" * 64
    p = plan_tenant("tenant_a", migrations, history)
    assert p.drifted == (2,)
    assert p.unknown == ()
    assert versions(p.pending) == [4, 5]


def test_unknown_applied_version(migrations: MigrationSet) -> None:
    history = applied(migrations, 1, 2)
    history[7] = "f" * 64
    history[42] = "e" * 64
    p = plan_tenant("tenant_a", migrations, history)
    assert p.unknown == (7, 42)
    assert p.drifted == ()
    assert versions(p.pending) == [3, 4, 5]


def test_make_plan(migrations: MigrationSet) -> None:
    bad = applied(migrations, 1)
    bad[1] = "x" * 64
    histories = {
        "tenant_a": None,
        "tenant_b": applied(migrations, 1, 2, 3, 4, 5),
        "tenant_c": applied(migrations, 1, 2),
        "tenant_d": bad,
        "tenant_e": {**applied(migrations, 1), 9: "9" * 64},
    }
    order = ["tenant_c", "tenant_a", "tenant_b", "tenant_d", "tenant_e", "tenant_missing"]
    plan = make_plan(migrations, histories, order)
    assert plan.target == 5
    assert [t.tenant for t in plan.tenants] == order
    assert [t.tenant for t in plan.work] == ["tenant_c", "tenant_a", "tenant_d", "tenant_e",
                                            "tenant_missing"]
    assert plan.pending_count == 3 + 5 + 4 + 4 + 5
    assert plan.drift() == {1: ["tenant_d"], 9: ["tenant_e"]}
    # A tenant absent from the histories is planned as having none.
    missing = plan.tenants[-1]
    assert missing.has_history is False and versions(missing.pending) == [1, 2, 3, 4, 5]


def test_make_plan_shares_work_between_equal_histories_but_not_results(
    migrations: MigrationSet,
) -> None:
    """make_plan plans each distinct history once; every tenant still gets exactly what
    planning it alone gives: its own name, no history table told from an empty one, the
    same history in another order planned alike."""
    at_two = applied(migrations, 1, 2)
    histories: dict[str, dict[int, str] | None] = {
        "tenant_a": at_two,
        "tenant_b": dict(at_two),
        "tenant_c": dict(reversed(list(at_two.items()))),
        "tenant_d": None,
        "tenant_e": {},
        "tenant_f": None,
        "tenant_g": {},
        "tenant_h": {**at_two, 2: "changed"},
    }
    for target in (None, 3):
        plan = make_plan(migrations, histories, list(histories), target)
        assert plan.tenants == tuple(
            plan_tenant(t, migrations, h, target) for t, h in histories.items())
    assert [p.has_history for p in plan.tenants[3:7]] == [False, True, False, True]


def test_make_plan_target(migrations: MigrationSet) -> None:
    plan = make_plan(migrations, {"tenant_a": applied(migrations, 1)}, ["tenant_a"], target=2)
    assert plan.target == 2
    assert versions(plan.tenants[0].pending) == [2]


def test_drift_lists_every_tenant(migrations: MigrationSet) -> None:
    changed = {**applied(migrations, 1, 2), 2: "changed"}
    histories = {f"tenant_{i}": dict(changed) for i in range(3)}
    plan = make_plan(migrations, histories, list(histories))
    assert plan.drift() == {2: ["tenant_0", "tenant_1", "tenant_2"]}


def test_make_plan_empty_migrations(tmp_path: Path) -> None:
    empty = load_migrations(tmp_path)
    plan = make_plan(empty, {"tenant_a": None}, ["tenant_a"])
    assert plan.target is None
    assert plan.work == ()


def test_plan_down(migrations: MigrationSet) -> None:
    p = plan_down("tenant_a", migrations, applied(migrations, 1, 2, 3, 4), target=1)
    assert versions(p.pending) == [4, 3, 2]
    assert p.current == 4
    assert p.unknown == ()


def test_plan_down_to_zero_and_nothing_to_do(migrations: MigrationSet) -> None:
    p = plan_down("tenant_a", migrations, applied(migrations, 1, 2), target=0)
    assert versions(p.pending) == [2, 1]
    p = plan_down("tenant_a", migrations, applied(migrations, 1, 2), target=2)
    assert p.pending == ()
    p = plan_down("tenant_a", migrations, None, target=0)
    assert p.pending == () and p.has_history is False


def test_plan_down_unknown_and_drift(migrations: MigrationSet) -> None:
    history = {**applied(migrations, 1, 2, 3), 8: "8" * 64}
    history[3] = "changed"
    p = plan_down("tenant_a", migrations, history, target=1)
    assert p.unknown == (8,)
    assert versions(p.pending) == [3, 2]
    assert p.drifted == (3,)

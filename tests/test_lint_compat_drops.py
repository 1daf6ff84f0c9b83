"""Lint rules of the compatibility family added for issue 15: DROP NOT NULL and DROP DEFAULT
(warnings: running code may rely on them), DROP DATABASE and DROP SCHEMA (errors)."""

from __future__ import annotations

from lint_support import lint, rules

from tenantmig.lint import blocking

C = "{{schema}}.customers"


def test_drop_not_null_and_drop_default_are_warnings() -> None:
    findings = lint(f"ALTER TABLE {C} ALTER COLUMN created_at DROP NOT NULL, "
                    "ALTER COLUMN created_at DROP DEFAULT;")
    found = {f.rule: f for f in findings}
    assert sorted((f.rule, f.severity) for f in findings) == [
        ("drop-default", "warning"),
        ("drop-not-null", "warning"),
    ]
    assert blocking(findings) == []
    assert f"{C}.created_at" in found["drop-not-null"].message
    assert "23502" in found["drop-default"].message


def test_what_drops_nothing_running_code_relies_on() -> None:
    assert rules(f"ALTER TABLE {C} ALTER COLUMN created_at SET DEFAULT now();") == []
    created = "CREATE TABLE {{schema}}.t (a int NOT NULL DEFAULT 0);\n"
    assert rules(created + "ALTER TABLE {{schema}}.t ALTER a DROP NOT NULL, "
                 "ALTER a DROP DEFAULT;") == []
    # the old column kept aside after a swap: renamed here, so no running code knows it
    swap = f"""
    -- tenantmig:allow rename-column the swap's switch
    ALTER TABLE {C} RENAME COLUMN email TO email_old;
    ALTER TABLE {C} ALTER COLUMN email_old DROP NOT NULL;
    ALTER TABLE {C} ALTER COLUMN email_old DROP DEFAULT;
    """
    assert [f.rule for f in lint(swap) if f.allowed is None] == []


def test_drop_not_null_guarded_by_a_check_in_the_same_migration() -> None:
    undo = f"""
    ALTER TABLE {C} ALTER COLUMN created_at DROP NOT NULL;
    ALTER TABLE {C} ADD CONSTRAINT c_nn CHECK (created_at IS NOT NULL) NOT VALID;
    """
    assert rules(undo) == []
    other = undo.replace("CHECK (created_at", "CHECK (email")
    assert rules(other) == ["drop-not-null"]
    before = "\n".join(reversed(undo.strip().splitlines()))  # a CHECK before does not count
    assert rules(before) == ["drop-not-null"]


def test_drop_database() -> None:
    findings = lint("DROP DATABASE IF EXISTS tenants;", transactional=False)
    assert [(f.rule, f.severity) for f in findings] == [("drop-database", "error")]
    assert blocking(findings) == findings


def test_drop_schema_of_anything_but_what_the_migration_created() -> None:
    findings = lint("DROP SCHEMA {{schema}} CASCADE;")
    assert [f.rule for f in findings] == ["drop-schema"]
    assert "the tenant's own schema {{schema}}" in findings[0].message
    assert rules("DROP SCHEMA shared;", shared_schemas=["shared"]) == ["drop-schema"]
    assert rules("DROP SCHEMA IF EXISTS legacy, scratch;") == ["drop-schema"] * 2
    # CREATE SCHEMA is database-wide-statement of its own; drop-schema spares its schema.
    assert rules("CREATE SCHEMA scratch; DROP SCHEMA scratch;") == ["database-wide-statement"]
    assert sorted(rules("DROP SCHEMA scratch; CREATE SCHEMA scratch;")) == [
        "database-wide-statement", "drop-schema"]

"""What the lint tests share: the schema earlier migrations left (BASE) and lint helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tenantmig.lint import Finding, LintState, lint_sql

PROJECT_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# What earlier migrations left behind, for rules that depend on them.
BASE = """
CREATE TYPE {{schema}}.invoice_status_enum AS ENUM ('draft', 'sent', 'paid');
CREATE TABLE {{schema}}.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email varchar(50),
    created_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE {{schema}}.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    status {{schema}}.invoice_status_enum,
    amount numeric(10, 2),
    note text
);
"""


def state(*migrations: str) -> LintState:
    """The state after BASE then *migrations*, each one a migration of its own."""
    result = LintState().after(BASE)
    for sql in migrations:
        result = result.after(sql)
    return result


def lint(sql: str, *, earlier: LintState | None = None, **kwargs: Any) -> list[Finding]:
    return lint_sql(textwrap.dedent(sql), earlier=earlier or state(), **kwargs)


def rules(sql: str, **kwargs: Any) -> list[str]:
    return sorted(f.rule for f in lint(sql, **kwargs))

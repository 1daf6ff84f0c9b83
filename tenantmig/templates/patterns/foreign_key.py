"""Pattern foreign-key: ``ADD FOREIGN KEY ... NOT VALID``, then VALIDATE in the next migration.

Explained in ``docs/patterns/foreign-key.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import LOCK, Args, Param, Pattern, Step
from .._text import sql_file


def _build(a: Args) -> list[Step]:
    table, column = a.ident("table"), a.ident("column")
    ref_table, ref_column = a.ident("ref_table"), a.ident("ref_column")
    name = a.optional_ident("name", "constraint name") or _checks.derived(
        f"{table}_{column}_fkey", "constraint"
    )
    lt, desc = a.lock_timeout, a.description
    add = (
        f"ALTER TABLE {{{{schema}}}}.{table}\n"
        f"    ADD CONSTRAINT {name}\n"
        f"    FOREIGN KEY ({column}) REFERENCES {{{{schema}}}}.{ref_table} ({ref_column})\n"
        "    NOT VALID;"
    )
    step1 = sql_file(
        f"""
        {desc}: step 1 of 2 of the foreign key {table}.{column} -> {ref_table}({ref_column})
        ({a.origin}).

        Added NOT VALID: enforced for every write from this commit on, existing rows not
        scanned. ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables until commit, which
        blocks writes to both, so this migration does nothing else: milliseconds, waiting at
        most {lt}. The validation is the next migration (validating in the same
        transaction would block writes to both tables during the whole scan).

        {ref_table}({ref_column}) needs a primary key or unique constraint. An index on
        {table}({column}) (pattern concurrent-index) keeps deletes and key updates on
        {ref_table} from scanning {table}.
        """,
        add,
        directives=[a.lock_directive],
    )
    undo1 = sql_file(
        f"""
        Undo of step 1 of {desc}: drops the foreign key. Catalog-only; brief ACCESS EXCLUSIVE
        on {table} and SHARE ROW EXCLUSIVE on {ref_table}, waiting at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};",
        directives=[a.lock_directive],
    )
    step2 = sql_file(
        f"""
        {desc}: step 2 of 2 of the foreign key {table}.{column} -> {ref_table}({ref_column})
        ({a.origin}): validate the rows that existed before step 1, in a migration of its own.

        VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on {table} and ROW SHARE on
        {ref_table}, so reads and writes on both go on during the scan (only true in a
        migration of its own). Fails with 23503 if a row points at a missing
        {ref_table}: fix those rows first. Waits for its locks at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} VALIDATE CONSTRAINT {name};",
        directives=[a.lock_directive],
    )
    undo2 = sql_file(
        f"""
        Undo of step 2 of {desc}: PostgreSQL cannot mark a constraint not valid again, so the
        foreign key is dropped and added again NOT VALID in one transaction: exactly the state
        after step 1, with no moment without the key. No scan; SHARE ROW EXCLUSIVE / ACCESS
        EXCLUSIVE for milliseconds, waiting at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT {name};\n{add}",
        directives=[a.lock_directive],
    )
    return [
        Step("fk_not_valid", step1, undo=undo1),
        Step("fk_validate", step2, undo=undo2),
    ]


PATTERN = Pattern(
    "foreign-key",
    "add a foreign key NOT VALID, then VALIDATE it in the next migration",
    (
        Param("table", "the referencing table", required=True),
        Param("column", "the referencing column", required=True),
        Param("ref_table", "the referenced table", required=True),
        Param("ref_column", "the referenced column", default="id"),
        Param("name", "the constraint name (default TABLE_COLUMN_fkey)"),
        LOCK,
    ),
    build=_build,
)

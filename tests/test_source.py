"""Migration source: loading, strict checks, checksums and directives (no database)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import tenantmig
from tenantmig import LoadError, load_migrations
from tenantmig.source import Kind, checksum

PROJECT_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def write(directory: Path, name: str, content: str | bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


def problems_of(directory: Path) -> list[tenantmig._exceptions.Problem]:
    with pytest.raises(LoadError) as info:
        load_migrations(directory)
    return list(info.value.problems)


def only_problem(directory: Path) -> tenantmig._exceptions.Problem:
    problems = problems_of(directory)
    assert len(problems) == 1, problems
    return problems[0]


GOOD = "CREATE TABLE {{schema}}.t (id int);\n"


# --- load errors ------------------------------------------------------------------------


def test_duplicate_versions(tmp_path: Path) -> None:
    write(tmp_path, "V1__first.sql", GOOD)
    write(tmp_path, "V001__again.sql", GOOD)
    problem = only_problem(tmp_path)
    assert "duplicate version 1" in problem.message
    # Both files are named: one as the problem's path, the other in the message.
    reported = Path(problem.path).name
    assert reported in ("V1__first.sql", "V001__again.sql")
    other = ({"V1__first.sql", "V001__again.sql"} - {reported}).pop()
    assert other in problem.message


@pytest.mark.parametrize(
    "name",
    ["V1_single_underscore.sql", "1__no_kind.sql", "V1__x.txt", "Vx__not_digits.sql",
     "v1__lower_case.sql", "V1__.sql", "R1__repeatable.sql"],
)
def test_bad_file_name(tmp_path: Path, name: str) -> None:
    write(tmp_path, "V1__ok.sql", GOOD)
    write(tmp_path, name, GOOD)
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == name
    assert "bad file name" in problem.message


def test_unknown_placeholder(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", """\
        -- header
        CREATE TABLE {{schema}}.t (id int);
        CREATE TABLE {{tenant}}.u (id int);
        """)
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"
    assert problem.line == 3
    assert "{{tenant}}" in problem.message


def test_unknown_directive(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", """\
        -- tenantmig:lock-timeout=1s
        -- tenantmig:foo
        CREATE TABLE {{schema}}.t (id int);
        """)
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"
    assert problem.line == 2
    assert "unknown directive" in problem.message and "foo" in problem.message


@pytest.mark.parametrize("text", ["-- tenantmig:lock-timeout=soon\n" + GOOD,
                                  "-- tenantmig:no-transaction=yes\n" + GOOD,
                                  "-- tenantmig:lock-timeout\n" + GOOD])
def test_malformed_directive(tmp_path: Path, text: str) -> None:
    write(tmp_path, "V1__x.sql", text)
    problem = only_problem(tmp_path)
    assert problem.line == 1


def test_directive_after_first_statement(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", """\
        -- a comment

        CREATE TABLE {{schema}}.t (id int);
        -- tenantmig:no-transaction
        """)
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"
    assert problem.line == 4
    assert "after the first statement" in problem.message


def test_undo_without_forward(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", GOOD)
    write(tmp_path, "U2__y.sql", "DROP TABLE {{schema}}.t;")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "U2__y.sql"
    assert "no V file" in problem.message


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    problem = only_problem(missing)
    assert problem.path == str(missing)
    assert "not found" in problem.message


def test_sql_never_naming_schema_loads(tmp_path: Path) -> None:
    """Issue 14: unqualified SQL runs with the tenant first on the transaction's
    search_path, so a file that never names {{schema}} is no longer a load error."""
    write(tmp_path, "V1__x.sql", "CREATE TABLE leak (id int);\n")
    (migration,) = load_migrations(tmp_path).migrations
    assert migration.up.sql == "CREATE TABLE leak (id int);\n"
    assert migration.up.render("tenant_a") == migration.up.sql


def test_sql_naming_schema_only_in_a_comment_loads(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", "-- creates {{schema}}.leak\nCREATE TABLE leak (id int);\n")
    (migration,) = load_migrations(tmp_path).migrations
    assert migration.up.batchable


def test_undo_with_comments_only_is_nothing_to_undo(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", GOOD)
    write(tmp_path, "U1__x.sql", "-- nothing to undo: the table is dropped by V9\n/* kept */\n;\n")
    write(tmp_path, "V2__y.sql", GOOD.replace(".t ", ".u "))
    write(tmp_path, "U2__y.sql", "-- tenantmig:no-transaction\n")
    write(tmp_path, "V3__z.sql", GOOD.replace(".t ", ".v "))
    write(tmp_path, "U3__z.sql", "")
    one, two, three = load_migrations(tmp_path).migrations
    for migration in (one, two, three):
        assert migration.down is not None and migration.down.statements == ()
        assert not migration.down.batchable
    assert one.down is not None and one.down.transactional
    assert two.down is not None and not two.down.transactional
    assert three.down is not None and three.down.sql == ""


@pytest.mark.parametrize("text", ["-- nothing here\n\n", "", "/* nothing */ ;\n"])
def test_forward_file_without_a_statement(tmp_path: Path, text: str) -> None:
    write(tmp_path, "V1__x.sql", text)
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"
    assert "no SQL statement" in problem.message


def test_empty_sql_file(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", "-- nothing here\n\n")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"


def test_non_utf8_file(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", b"-- ok\nCREATE TABLE {{schema}}.t (a text DEFAULT '\xe9');\n")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.sql"
    assert problem.line == 2
    assert "UTF-8" in problem.message


def test_python_without_async_up(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.py", "async def down(ctx):\n    pass\n")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.py"
    assert "async def up" in problem.message


def test_python_up_not_async(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.py", "\n\ndef up(ctx):\n    pass\n")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.py"
    assert problem.line == 3
    assert "async def up" in problem.message


def test_python_syntax_error_line(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.py", "x = 1\n\nasync def up(ctx:\n    pass\n")
    problem = only_problem(tmp_path)
    assert Path(problem.path).name == "V1__x.py"
    assert problem.line == 3
    assert "syntax" in problem.message


def test_python_import_error_line(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.py", "x = 1\nraise RuntimeError('boom')\n")
    problem = only_problem(tmp_path)
    assert problem.line == 2
    assert "boom" in problem.message


def test_all_problems_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "V1__ok.sql", GOOD)
    write(tmp_path, "V2__dup.sql", GOOD)
    write(tmp_path, "V02__dup.sql", GOOD)
    write(tmp_path, "bad-name.sql", GOOD)
    write(tmp_path, "V3__ph.sql", "CREATE TABLE {{tenant}}.t (id int);\n")
    write(tmp_path, "V4__dir.sql", "-- tenantmig:foo\n" + GOOD)
    write(tmp_path, "U9__orphan.sql", GOOD)
    write(tmp_path, "V5__noup.py", "x = 1\n")
    write(tmp_path, "V6__syntax.py", "def (:\n")
    write(tmp_path, "V7__latin1.sql", b"CREATE TABLE {{schema}}.t (a text DEFAULT '\xe9');\n")
    problems = problems_of(tmp_path)
    files = {Path(p.path).name for p in problems}
    assert {"bad-name.sql", "V3__ph.sql", "V4__dir.sql", "U9__orphan.sql", "V5__noup.py",
            "V6__syntax.py", "V7__latin1.sql"} <= files
    assert files & {"V2__dup.sql", "V02__dup.sql"}
    assert "V1__ok.sql" not in files
    # The exception's message lists every problem as file:line: message.
    with pytest.raises(LoadError) as info:
        load_migrations(tmp_path)
    text = str(info.value)
    for p in problems:
        assert f"{p.path}:{p.line}:" in text


def test_files_starting_with_dot_or_underscore_and_folders_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "V1__ok.sql", GOOD)
    write(tmp_path, ".hidden.sql", "junk")
    write(tmp_path, "_helpers.py", "junk")
    (tmp_path / "sub").mkdir()
    ms = load_migrations(tmp_path)
    assert [m.version for m in ms.migrations] == [1]


# --- ordering, checksums ----------------------------------------------------------------


def test_versions_ordered_numerically(tmp_path: Path) -> None:
    for v in (10, 2, 1, 100, 9):
        write(tmp_path, f"V{v}__v{v}.sql", GOOD)
    ms = load_migrations(tmp_path)
    assert [m.version for m in ms.migrations] == [1, 2, 9, 10, 100]
    assert ms.head == 100
    assert ms.migrations[0].description == "v1"


def test_description_from_name(tmp_path: Path) -> None:
    write(tmp_path, "V3__add_users_table.sql", GOOD)
    (m,) = load_migrations(tmp_path).migrations
    assert m.version == 3
    assert m.description == "add users table"
    assert m.kind is Kind.SQL


def test_crlf_and_lf_have_the_same_checksum(tmp_path: Path) -> None:
    lf = "-- comment\nCREATE TABLE {{schema}}.t (id int);\nINSERT INTO {{schema}}.t VALUES (1);\n"
    write(tmp_path / "a", "V1__x.sql", lf.encode())
    write(tmp_path / "b", "V1__x.sql", lf.replace("\n", "\r\n").encode())
    a = load_migrations(tmp_path / "a").migrations[0]
    b = load_migrations(tmp_path / "b").migrations[0]
    assert a.checksum == b.checksum
    assert a.checksum == checksum(lf.encode())
    assert len(a.checksum) == 64


@pytest.mark.parametrize(
    "edit",
    [lambda s: s.replace("id int", "id bigint"),
     lambda s: s + " ",
     lambda s: s.replace("(id int)", "(id  int)"),
     lambda s: s + "\n",
     lambda s: s.replace("-- comment", "-- Comment")],
)
def test_any_edit_changes_checksum(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    text = "-- comment\nCREATE TABLE {{schema}}.t (id int);\n"
    write(tmp_path / "a", "V1__x.sql", text.encode())
    write(tmp_path / "b", "V1__x.sql", edit(text).encode())
    a = load_migrations(tmp_path / "a").migrations[0]
    b = load_migrations(tmp_path / "b").migrations[0]
    assert a.checksum != b.checksum


def test_python_checksum_changes_with_edit(tmp_path: Path) -> None:
    body = "async def up(ctx):\n    await ctx.execute('SELECT 1')\n"
    write(tmp_path / "a", "V1__x.py", body)
    write(tmp_path / "b", "V1__x.py", body.replace("SELECT 1", "SELECT 2"))
    a = load_migrations(tmp_path / "a").migrations[0]
    b = load_migrations(tmp_path / "b").migrations[0]
    assert a.kind is Kind.PYTHON
    assert a.checksum != b.checksum


# --- directives --------------------------------------------------------------------------


def test_directives_parsed(tmp_path: Path) -> None:
    write(tmp_path, "V1__idx.sql", """\
        -- Builds two indexes.
        -- tenantmig:no-transaction
        -- tenantmig:lock-timeout=10s
        -- tenantmig:statement-timeout=5min

        CREATE INDEX CONCURRENTLY "MyIdx" ON {{schema}}.t (a);
        -- the second one
        CREATE INDEX CONCURRENTLY IF NOT EXISTS idx2 ON {{schema}}.t (b);
        """)
    write(tmp_path, "V2__plain.sql", "CREATE TABLE {{schema}}.t (a int, b int);\n")
    m1, m2 = load_migrations(tmp_path).migrations
    assert m1.transactional is False
    assert m1.up.lock_timeout_ms == 10_000
    assert m1.up.statement_timeout_ms == 300_000
    assert len(m1.up.statements) == 2
    assert "MyIdx" in m1.up.statements[0] and "idx2" not in m1.up.statements[0]
    assert "idx2" in m1.up.statements[1]
    assert m1.up.concurrent_indexes == ("MyIdx", "idx2")
    assert m2.transactional is True
    assert m2.up.lock_timeout_ms is None and m2.up.statement_timeout_ms is None


def test_lock_timeout_units(tmp_path: Path) -> None:
    write(tmp_path, "V1__a.sql", "-- tenantmig:lock-timeout=250ms\n" + GOOD)
    write(tmp_path, "V2__b.sql", "-- tenantmig:lock-timeout=0\n" + GOOD)
    write(tmp_path, "V3__c.sql", "-- tenantmig:statement-timeout=1h\n" + GOOD)
    a, b, c = load_migrations(tmp_path).migrations
    assert a.up.lock_timeout_ms == 250
    assert b.up.lock_timeout_ms == 0
    assert c.up.statement_timeout_ms == 3_600_000


def test_python_module_attributes(tmp_path: Path) -> None:
    write(tmp_path, "V1__py.py", """\
        transactional = False
        lock_timeout = "2s"
        statement_timeout = "1min"

        async def up(ctx):
            pass

        async def down(ctx):
            pass
        """)
    (m,) = load_migrations(tmp_path).migrations
    assert m.kind is Kind.PYTHON
    assert m.transactional is False
    assert m.up.lock_timeout_ms == 2000
    assert m.up.statement_timeout_ms == 60_000
    assert m.down is not None and m.down.python is not None


def test_undo_attached(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", GOOD)
    write(tmp_path, "U1__x.sql", "DROP TABLE {{schema}}.t;\n")
    write(tmp_path, "V2__y.sql", GOOD)
    m1, m2 = load_migrations(tmp_path).migrations
    assert m1.down is not None and m1.down.sql is not None
    assert "DROP TABLE" in m1.down.render("tenant_a")
    assert m2.down is None


def test_render_quotes_schema(tmp_path: Path) -> None:
    write(tmp_path, "V1__x.sql", GOOD)
    (m,) = load_migrations(tmp_path).migrations
    assert m.up.render('tenant_O\'Brien "x"') == (
        'CREATE TABLE "tenant_O\'Brien ""x""".t (id int);\n'
    )
    assert m.up.render("tenant_MixedCase").startswith('CREATE TABLE "tenant_MixedCase".t')


# --- the project's own migrations -----------------------------------------------------------


def test_project_migrations_load() -> None:
    ms = load_migrations(PROJECT_MIGRATIONS)
    assert [m.version for m in ms.migrations] == list(range(1, 13))
    assert ms.head == 12
    by_version = ms.by_version()
    v8 = by_version[8]
    assert v8.transactional is False
    assert v8.up.concurrent_indexes == ("invoices_customer_status_created_idx",)
    assert len(v8.up.statements) == 1
    assert by_version[3].kind is Kind.PYTHON and by_version[3].transactional is False
    assert by_version[6].kind is Kind.PYTHON and by_version[6].transactional is False
    assert by_version[2].up.lock_timeout_ms == 5000
    non_transactional = [m.version for m in ms.migrations if not m.transactional]
    assert non_transactional == [3, 6, 8]
    assert by_version[12].down is None
    assert all(by_version[v].down is not None for v in range(1, 12))


def test_sql_that_does_not_scan_refuses_names_that_could_end_its_strings() -> None:
    """Where the scanner cannot find the string constants (an unterminated quote, which
    the server would report), a name with ' \\ or $ could close the one left open."""
    from tenantmig._sql import UnsafeTenantName, render
    from tenantmig.source import string_contexts

    broken = "SELECT '{{schema}} FROM {{schema}}.t"
    strings = string_contexts(broken)
    assert render(broken, "tenant_plain", strings) == \
        'SELECT \'"tenant_plain" FROM "tenant_plain".t'
    for name in ("tenant_O'x", "tenant_a\\", "tenant_$x"):
        with pytest.raises(UnsafeTenantName):
            render(broken, name, strings)


@pytest.mark.parametrize(("dsn", "secret"), [
    ("postgresql://h/db?password=s3cret&user=admin@myserver", "s3cret"),
    ("postgresql://u@h/db?password=s3cret&application_name=ops@host1", "s3cret"),
    ("postgresql://u@h/db?password=a1#b2@c3", "a1#b2@c3"),
    ("postgresql://u:p4ss@h/db?application_name=a@b", "p4ss"),
    ("postgresql://u:Zq/x9!kP@127.0.0.1:1/db", "Zq/x9!kP"),
    ("host=h password=s3cret user=u", "s3cret"),
])
def test_passwords_never_survive_redaction_or_scrubbing(dsn: str, secret: str) -> None:
    """An @ in another query value, or a # in the password, once made the user info
    end in the wrong place and left the password in the redacted DSN (printed by every
    --json document) or out of the words scrubbed from messages."""
    from tenantmig._sql import redact_dsn, scrub

    assert secret not in redact_dsn(dsn)
    assert secret not in scrub(f"authentication failed ({secret}) for {dsn}", [dsn])

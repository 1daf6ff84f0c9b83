"""Migration source: read, check and checksum the migration files, before any connection.

Loading is strict. Every problem found is collected and raised together as one
:class:`LoadError` naming file and line, so a user fixes them all in one go.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pglast

from . import layouts
from ._exceptions import LoadError, Problem
from ._python import Header, PythonStep, coroutine, import_module, python_header
from ._sql import NO_STRINGS, SCHEMA_PLACEHOLDER, StringContexts, placeholders, render
from ._sqlscan import batchable, concurrent_index, string_contexts, walk
from .durations import parse_duration_ms

__all__ = [
    "DESCRIPTION_MAX", "Allow", "Kind", "Migration", "MigrationSet", "PythonStep", "Step",
    "checksum", "load_migrations", "load_migrations_partially", "sql_files", "string_contexts",
    "walk",
]

_NAME = re.compile(r"^(?P<kind>[VU])(?P<version>\d+)__(?P<description>[^/\\]+)\.(?P<ext>sql|py)$")
_DIRECTIVE_PREFIX = "-- tenantmig:"
_ALLOW_PREFIX = "-- tenantmig:allow "
_KNOWN_DIRECTIVES = ("no-transaction", "lock-timeout", "statement-timeout")

DESCRIPTION_MAX = 200
"""Longest description kept (from the file name), the width of the history column."""


class Kind(Enum):
    """How a migration is written."""

    SQL = "sql"
    PYTHON = "python"


@dataclass(frozen=True)
class Allow:
    """``-- tenantmig:allow RULE-ID reason``: a lint finding accepted on purpose."""

    line: int
    rule: str
    reason: str


@dataclass(frozen=True)
class Step:
    """One direction (up or undo) of a migration: SQL text or a Python coroutine."""

    path: Path
    sql: str | None = None
    python: PythonStep | None = field(default=None, compare=False)
    statements: tuple[str, ...] = ()
    """For a non-transactional SQL step: its statements, to run one by one."""
    concurrent_indexes: tuple[str, ...] = ()
    """Indexes built CONCURRENTLY by this step: an INVALID leftover is dropped before a retry."""
    transactional: bool = True
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    allows: tuple[Allow, ...] = ()
    """Lint findings accepted on purpose, each with its line and reason."""

    strings: StringContexts = NO_STRINGS
    """Where ``{{schema}}`` stands inside string constants of :attr:`sql`."""
    statement_strings: tuple[StringContexts, ...] = ()
    """The same for each of :attr:`statements`, found once at load, not per tenant."""

    batchable: bool = False
    """Transactional SQL that can share one round trip with its neighbours: it parses, and
    no statement of it controls the transaction or changes a session setting."""

    def render(self, schema: str) -> str:
        """The SQL for one tenant."""
        if self.sql is None:
            raise TypeError("a Python step has no SQL")
        return render(self.sql, schema, self.strings)

    def render_statement(self, index: int, schema: str) -> str:
        """Statement *index* of a non-transactional step, for one tenant."""
        return render(self.statements[index], schema, self.statement_strings[index])


@dataclass(frozen=True)
class Migration:
    """A versioned migration, as loaded from its file(s)."""

    version: int
    description: str
    kind: Kind
    checksum: str
    up: Step
    down: Step | None = None

    @property
    def transactional(self) -> bool:
        return self.up.transactional

    @property
    def path(self) -> Path:
        return self.up.path

    @property
    def filename(self) -> str:
        return self.up.path.name


@dataclass(frozen=True)
class MigrationSet:
    """All migrations of a folder, in version order."""

    directory: Path
    migrations: tuple[Migration, ...]

    @property
    def head(self) -> int | None:
        return self.migrations[-1].version if self.migrations else None

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}

    def upto(self, target: int | None) -> tuple[Migration, ...]:
        if target is None:
            return self.migrations
        return tuple(m for m in self.migrations if m.version <= target)


def checksum(data: bytes) -> str:
    """sha256 of the file's bytes with line endings normalised to ``\\n``."""
    normalised = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(normalised).hexdigest()


def sql_files(directory: str | Path) -> list[Path]:
    """The SQL migration files (V and U, or another tool's) in *directory*, by name only:
    what ``lint --fix`` rewrites before the files are loaded (and checked) for real."""
    root = Path(directory)
    if not root.is_dir():
        raise LoadError([Problem(str(root), 0, "migrations folder not found")])
    layout, paths = layouts.detect(layouts.entries(root), [])
    if layout != layouts.OURS:
        return layouts.sql_files(layout, paths)
    return [path for path in sorted(root.iterdir())
            if path.is_file() and not path.name.startswith((".", "_"))
            and (match := _NAME.match(path.name)) is not None and match["ext"] == "sql"]


def load_migrations(directory: str | Path) -> MigrationSet:
    """Load and check every migration in *directory*, in our layout or in another tool's
    (see :mod:`tenantmig.layouts`); raise :class:`LoadError` on any problem."""
    migrations, problems = load_migrations_partially(directory)
    if problems:
        raise LoadError(problems)
    return migrations


def load_migrations_partially(directory: str | Path) -> tuple[MigrationSet, list[Problem]]:
    """Every migration of *directory* that loads, and the problems of those that do not:
    what ``lint`` reports in one go. Nothing may run from a set that came with problems.
    A folder that does not exist is not a partial load: :class:`LoadError`."""
    root = Path(directory)
    problems: list[Problem] = []
    if not root.is_dir():
        raise LoadError([Problem(str(root), 0, "migrations folder not found")])
    layout, paths = layouts.detect(layouts.entries(root), problems)
    if layout == layouts.OURS:
        migrations = _load_ours(paths, problems)
    else:
        migrations = [m for found in layouts.read(layout, paths, problems)
                      if (m := _load_found(found, problems)) is not None]
    return MigrationSet(root, tuple(migrations)), problems


def _load_ours(paths: list[Path], problems: list[Problem]) -> list[Migration]:
    ups: dict[int, tuple[Path, str]] = {}
    undos: dict[int, Path] = {}
    for path in paths:
        if path.is_dir():
            continue
        match = _NAME.match(path.name)
        if not match:
            problems.append(
                Problem(
                    str(path),
                    0,
                    "bad file name: expected V<digits>__<description>.sql|.py "
                    "or U<digits>__<description>.sql|.py",
                )
            )
            continue
        version = int(match["version"])
        table: dict[int, Path] = undos if match["kind"] == "U" else {
            v: up for v, (up, _) in ups.items()}
        if version in table:
            problems.append(
                Problem(str(path), 0, f"duplicate version {version} (also {table[version].name})")
            )
            continue
        if match["kind"] == "V":
            ups[version] = (path, match["description"])
        else:
            undos[version] = path

    for version, path in sorted(undos.items()):
        if version not in ups:
            problems.append(Problem(str(path), 0, f"undo of version {version} has no V file"))

    migrations: list[Migration] = []
    for version, (path, description) in sorted(ups.items()):
        migration = _load_one(version, description, path, undos.get(version), problems)
        if migration is not None:
            migrations.append(migration)
    return migrations


def _load_found(found: layouts.Found, problems: list[Problem]) -> Migration | None:
    """A version of another tool's folder: its SQL checked exactly as ours is."""
    before = len(problems)
    up = _load_sql(found.up.path, found.up.data, problems,
                   transactional=found.up.transactional)
    down = None
    if found.down is not None:
        down = _load_sql(found.down.path, found.down.data, problems,
                         transactional=found.down.transactional, undo=True)
    if up is None or len(problems) > before:
        return None
    return Migration(version=found.version, description=found.description[:DESCRIPTION_MAX],
                     kind=Kind.SQL, checksum=checksum(found.checksummed), up=up, down=down)


def _load_one(
    version: int,
    description: str,
    path: Path,
    undo_path: Path | None,
    problems: list[Problem],
) -> Migration | None:
    data = layouts.read_bytes(path, problems)
    if data is None:
        return None
    digest = checksum(data)
    description = description.replace("_", " ")[:DESCRIPTION_MAX]
    before = len(problems)
    if path.suffix == ".sql":
        step = _load_sql(path, data, problems)
        down = _load_undo(undo_path, problems)
        if len(problems) > before or step is None:
            return None
        return Migration(
            version=version,
            description=description,
            kind=Kind.SQL,
            checksum=digest,
            up=step,
            down=down,
        )
    module = import_module(path, version, problems)
    if module is None:
        return None
    header = python_header(path, module, problems)
    up = coroutine(path, module, "up", problems, required=True)
    down_fn = coroutine(path, module, "down", problems, required=False)
    if undo_path is not None:
        problems.append(Problem(str(undo_path), 0, "a Python migration's undo is its down()"))
    if len(problems) > before or up is None:
        return None

    def python_step(fn: PythonStep) -> Step:
        return Step(
            path,
            python=fn,
            transactional=header.transactional,
            lock_timeout_ms=header.lock_timeout_ms,
            statement_timeout_ms=header.statement_timeout_ms,
        )

    return Migration(
        version=version,
        description=description,
        kind=Kind.PYTHON,
        checksum=digest,
        up=python_step(up),
        down=python_step(down_fn) if down_fn is not None else None,
    )


def _load_undo(path: Path | None, problems: list[Problem]) -> Step | None:
    if path is None:
        return None
    data = layouts.read_bytes(path, problems)
    if data is None:
        return None
    if path.suffix == ".py":
        problems.append(Problem(str(path), 0, "undo files are SQL; use down() in a .py migration"))
        return None
    return _load_sql(path, data, problems, undo=True)


def _load_sql(path: Path, data: bytes, problems: list[Problem], *, transactional: bool = True,
              undo: bool = False) -> Step | None:
    """One SQL step; *transactional* False when the file's own tool already says so."""
    header = Header(transactional=transactional)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        problems.append(Problem(str(path), bad_line, "file is not UTF-8"))
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    before = len(problems)
    in_header = True
    allows: list[Allow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(_ALLOW_PREFIX):
            allow = _allow(path, number, stripped[len(_ALLOW_PREFIX) :], problems)
            if allow is not None:
                allows.append(allow)
            continue
        if in_header and (not stripped or stripped.startswith("--")):
            if stripped.startswith(_DIRECTIVE_PREFIX):
                _directive(path, number, stripped[len(_DIRECTIVE_PREFIX) :], header, problems)
            continue
        in_header = False
        if stripped.startswith(_DIRECTIVE_PREFIX):
            problems.append(
                Problem(str(path), number, "tenantmig directive after the first statement")
            )
    for number, name in placeholders(text):
        if name != "schema":
            problems.append(
                Problem(str(path), number, f"unknown placeholder {{{{{name}}}}}; only "
                f"{SCHEMA_PLACEHOLDER} exists")
            )
    # An undo with nothing in it says there is nothing to undo; an up must do something.
    # A file that never names {{schema}} is fine: it runs with the tenant first on the
    # transaction's search_path.
    if not undo and not _has_statement(text):
        problems.append(Problem(str(path), 1, "no SQL statement in file"))
    statements: tuple[str, ...] = ()
    if len(problems) == before and not header.transactional:
        try:
            statements = tuple(
                s for s in pglast.split(text, with_parser=False) if _strip_comments_and_space(s)
            )
        except Exception as exc:  # pglast raises its own error types
            problems.append(Problem(str(path), 1, f"cannot split into statements: {exc}"))
    return Step(
        path,
        sql=text,
        statements=statements,
        concurrent_indexes=tuple(concurrent_index(s) for s in statements if concurrent_index(s)),
        transactional=header.transactional,
        lock_timeout_ms=header.lock_timeout_ms,
        statement_timeout_ms=header.statement_timeout_ms,
        allows=tuple(allows),
        strings=string_contexts(text),
        statement_strings=tuple(string_contexts(s) for s in statements),
        batchable=header.transactional and len(problems) == before and batchable(text),
    )


def _allow(path: Path, number: int, raw: str, problems: list[Problem]) -> Allow | None:
    rule, _, reason = raw.strip().partition(" ")
    if not rule or not reason.strip():
        problems.append(
            Problem(str(path), number,
                    "tenantmig:allow needs a rule id and a reason: "
                    "-- tenantmig:allow RULE-ID why this is safe here")
        )
        return None
    return Allow(line=number, rule=rule, reason=reason.strip())



def _has_statement(text: str) -> bool:
    """Whether *text* holds anything but comments, blanks and semicolons."""
    try:
        return any(t.name not in ("SQL_COMMENT", "C_COMMENT", "ASCII_59")
                   for t in pglast.parser.scan(text))
    except Exception:  # unscannable text is not empty: the server will say what is wrong
        return bool(_strip_comments_and_space(text))


def _strip_comments_and_space(text: str) -> str:
    lines = [ln for ln in text.split("\n") if not ln.strip().startswith("--")]
    return "".join(lines).strip().strip(";").strip()


def _directive(path: Path, number: int, raw: str, header: Header, problems: list[Problem]) -> None:
    name, _, value = raw.strip().partition("=")
    name, value = name.strip(), value.strip()
    if name == "no-transaction" and not value:
        header.transactional = False
    elif name in ("lock-timeout", "statement-timeout") and value:
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            problems.append(Problem(str(path), number, str(exc)))
            return
        if name == "lock-timeout":
            header.lock_timeout_ms = ms
        else:
            header.statement_timeout_ms = ms
    else:
        problems.append(
            Problem(
                str(path),
                number,
                f"unknown directive tenantmig:{raw.strip()}; known: "
                + ", ".join(_KNOWN_DIRECTIVES),
            )
        )

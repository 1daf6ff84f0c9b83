"""Migration source: read, check and checksum the migration files, before any connection.

Loading is strict. Every problem found is collected and raised together as one
:class:`LoadError` naming file and line, so a user fixes them all in one go.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

import pglast
from pglast import ast

from ._exceptions import LoadError, Problem
from ._sql import NO_STRINGS, SCHEMA_PLACEHOLDER, StringContexts, placeholders, render
from .durations import parse_duration_ms

_NAME = re.compile(r"^(?P<kind>[VU])(?P<version>\d+)__(?P<description>[^/\\]+)\.(?P<ext>sql|py)$")
_DIRECTIVE_PREFIX = "-- tenantmig:"
_ALLOW_PREFIX = "-- tenantmig:allow "
_KNOWN_DIRECTIVES = ("no-transaction", "lock-timeout", "statement-timeout")

PythonStep = Callable[[Any], Awaitable[None]]

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


@dataclass
class _Header:
    transactional: bool = True
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None


def sql_files(directory: str | Path) -> list[Path]:
    """The SQL migration files (V and U) in *directory*, by name only: what ``lint --fix``
    rewrites before the files are loaded (and checked) for real."""
    root = Path(directory)
    if not root.is_dir():
        raise LoadError([Problem(str(root), 0, "migrations folder not found")])
    return [path for path in sorted(root.iterdir())
            if path.is_file() and not path.name.startswith((".", "_"))
            and (match := _NAME.match(path.name)) is not None and match["ext"] == "sql"]


def load_migrations(directory: str | Path) -> MigrationSet:
    """Load and check every migration in *directory*; raise :class:`LoadError` on any problem."""
    root = Path(directory)
    problems: list[Problem] = []
    if not root.is_dir():
        raise LoadError([Problem(str(root), 0, "migrations folder not found")])

    ups: dict[int, tuple[Path, str]] = {}
    undos: dict[int, Path] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith((".", "_")) or path.name in {"README.md", "__pycache__"}:
            continue
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
        kind = match["kind"]
        table: dict[int, Any] = ups if kind == "V" else undos
        if version in table:
            other = table[version][0] if kind == "V" else table[version]
            problems.append(
                Problem(str(path), 0, f"duplicate version {version} (also {Path(other).name})")
            )
            continue
        if kind == "V":
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

    if problems:
        raise LoadError(problems)
    return MigrationSet(root, tuple(migrations))


def _read(path: Path, problems: list[Problem]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(Problem(str(path), 0, f"cannot read file: {exc.strerror or exc}"))
        return None


def _load_one(
    version: int,
    description: str,
    path: Path,
    undo_path: Path | None,
    problems: list[Problem],
) -> Migration | None:
    data = _read(path, problems)
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
    module = _import(path, version, problems)
    if module is None:
        return None
    header = _python_header(path, module, problems)
    up = _coroutine(path, module, "up", problems, required=True)
    down_fn = _coroutine(path, module, "down", problems, required=False)
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
    data = _read(path, problems)
    if data is None:
        return None
    if path.suffix == ".py":
        problems.append(Problem(str(path), 0, "undo files are SQL; use down() in a .py migration"))
        return None
    return _load_sql(path, data, problems)


def _load_sql(path: Path, data: bytes, problems: list[Problem]) -> Step | None:
    header = _Header()
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
    body = _strip_comments_and_space(text)
    if not body:
        problems.append(Problem(str(path), 1, "no SQL statement in file"))
    elif SCHEMA_PLACEHOLDER not in _code_only(text):
        problems.append(
            Problem(
                str(path),
                1,
                f"never names {SCHEMA_PLACEHOLDER}: qualify every tenant object as "
                f"{SCHEMA_PLACEHOLDER}.name (shared objects as their_schema.name)",
            )
        )
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
        concurrent_indexes=tuple(_concurrent_index(s) for s in statements if _concurrent_index(s)),
        transactional=header.transactional,
        lock_timeout_ms=header.lock_timeout_ms,
        statement_timeout_ms=header.statement_timeout_ms,
        allows=tuple(allows),
        strings=string_contexts(text),
        statement_strings=tuple(string_contexts(s) for s in statements),
        batchable=header.transactional and len(problems) == before and _batchable(text),
    )


# Statements a batch cannot carry: they would end the batch's transaction or change the
# session that later tenants run on.
_UNBATCHABLE = frozenset({"TransactionStmt", "VariableSetStmt", "DiscardStmt"})


def _batchable(text: str) -> bool:
    try:
        parsed = pglast.parse_sql(render(text, "x"))
    except Exception:  # the server reports the syntax error, naming this migration
        return False
    return bool(parsed) and not any(
        type(raw.stmt).__name__ in _UNBATCHABLE or _sets_session(raw.stmt) for raw in parsed
    )


def _sets_session(stmt: ast.Node | None) -> bool:
    """Whether *stmt* calls set_config other than with a constant ``true`` (transaction-
    local): a setting for the whole session, like a SET. (Inside a DO block or a function
    body it is not seen: the body is a string.)"""
    for node in walk(stmt):
        if isinstance(node, ast.FuncCall) and node.funcname and \
                getattr(node.funcname[-1], "sval", None) == "set_config":
            args = node.args or ()
            local = args[2] if len(args) > 2 else None
            if isinstance(local, ast.NamedArgExpr):
                local = local.arg
            if not (isinstance(local, ast.A_Const) and isinstance(local.val, ast.Boolean)
                    and local.val.boolval):
                return True
    return False


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node of a pglast parse tree under *node* (itself included), depth first."""
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            children = [getattr(item, name) for name in item]
            stack.extend(c for c in reversed(children) if isinstance(c, ast.Node | tuple))


def string_contexts(text: str) -> StringContexts:
    """Where ``{{schema}}`` stands inside string constants of *text* (see
    :class:`StringContexts`): PostgreSQL's own scanner finds the constants, and the
    bodies of dollar-quoted ones (PL/pgSQL is lexed by the same scanner) are scanned in
    turn, so a placeholder in a string inside a function body is escaped for it."""
    if SCHEMA_PLACEHOLDER not in text:
        return NO_STRINGS
    found: dict[str, set[int]] = {"literal": set(), "escape": set(), "opaque": set()}
    tags: set[str] = set()
    try:
        _scan_strings(text, 0, found, tags)
    except Exception:  # the server will report the syntax error
        # Nothing is known of where the constants are: a name with ' \ or $ could end
        # one that the broken text leaves open, so such a name is refused (opaque).
        return StringContexts(opaque=frozenset(
            i for i in range(len(text)) if text.startswith(SCHEMA_PLACEHOLDER, i)))
    return StringContexts(
        literal=frozenset(found["literal"]),
        escape=frozenset(found["escape"]),
        opaque=frozenset(found["opaque"]),
        tags=frozenset(tags),
    )


def _scan_strings(text: str, base: int, found: dict[str, set[int]], tags: set[str]) -> None:
    # The scanner reports byte offsets; map them to character offsets.
    encoded = text.encode("utf-8")
    for t in pglast.parser.scan(text):
        if t.name not in ("SCONST", "USCONST"):
            continue
        lo = len(encoded[: t.start].decode("utf-8", "ignore"))
        hi = len(encoded[: t.end + 1].decode("utf-8", "ignore"))
        inside = _placeholder_offsets(text, lo, hi)
        if not inside:
            continue
        first = text[lo].lower()
        if first == "$":
            tag = text[lo : text.index("$", lo + 1) + 1]
            tags.add(tag)
            body = text[lo + len(tag) : hi - len(tag)]
            try:
                _scan_strings(body, base + lo + len(tag), found, tags)
            except Exception:  # not SQL (another language): refuse risky names there
                found["opaque"].update(base + i for i in inside)
        elif t.name == "USCONST" or first == "u":
            found["opaque"].update(base + i for i in inside)
        elif first == "e":
            found["escape"].update(base + i for i in inside)
        else:
            found["literal"].update(base + i for i in inside)


def _placeholder_offsets(text: str, lo: int, hi: int) -> list[int]:
    offsets = []
    start = text.find(SCHEMA_PLACEHOLDER, lo)
    while start != -1 and start < hi:
        offsets.append(start)
        start = text.find(SCHEMA_PLACEHOLDER, start + 1)
    return offsets


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


def _concurrent_index(statement: str) -> str:
    """The name of the index a ``CREATE INDEX CONCURRENTLY`` statement builds, else ''."""
    if "concurrently" not in statement.lower():
        return ""
    try:
        parsed = pglast.parse_sql(render(statement, "x"))
    except Exception:  # the server will report the syntax error with its own words
        return ""
    for raw in parsed:
        stmt: Any = raw.stmt
        if type(stmt).__name__ == "IndexStmt" and stmt.concurrent and stmt.idxname:
            return str(stmt.idxname)
    return ""


def _code_only(text: str) -> str:
    """*text* without ``--`` comments (strings are kept; good enough to find placeholders)."""
    try:
        return "".join(
            text[t.start : t.end + 1]
            for t in pglast.parser.scan(text)
            if t.name not in ("SQL_COMMENT", "C_COMMENT")
        )
    except Exception:  # unscannable text: the server will say why
        return text


def _strip_comments_and_space(text: str) -> str:
    lines = [ln for ln in text.split("\n") if not ln.strip().startswith("--")]
    return "".join(lines).strip().strip(";").strip()


def _directive(path: Path, number: int, raw: str, header: _Header, problems: list[Problem]) -> None:
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


def _import(path: Path, version: int, problems: list[Problem]) -> ModuleType | None:
    name = f"tenantmig_migrations.v{version}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        problems.append(Problem(str(path), 0, "cannot import"))
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        problems.append(Problem(str(path), exc.lineno or 0, f"syntax error: {exc.msg}"))
        return None
    except Exception as exc:
        line = _traceback_line(exc, path)
        problems.append(Problem(str(path), line, f"import failed: {type(exc).__name__}: {exc}"))
        return None
    sys.modules.pop(name, None)
    return module


def _traceback_line(exc: BaseException, path: Path) -> int:
    tb = exc.__traceback__
    line = 0
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _python_header(path: Path, module: ModuleType, problems: list[Problem]) -> _Header:
    header = _Header()
    transactional = getattr(module, "transactional", True)
    if not isinstance(transactional, bool):
        problems.append(Problem(str(path), 0, "transactional must be True or False"))
    else:
        header.transactional = transactional
    for attribute in ("lock_timeout", "statement_timeout"):
        value = getattr(module, attribute, None)
        if value is None:
            continue
        try:
            ms = parse_duration_ms(str(value))
        except ValueError as exc:
            problems.append(Problem(str(path), 0, f"{attribute}: {exc}"))
            continue
        setattr(header, f"{attribute}_ms", ms)
    return header


def _coroutine(
    path: Path, module: ModuleType, name: str, problems: list[Problem], *, required: bool
) -> PythonStep | None:
    fn = getattr(module, name, None)
    if fn is None:
        if required:
            problems.append(Problem(str(path), 0, f"no async def {name}(ctx)"))
        return None
    if not inspect.iscoroutinefunction(fn):
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", 0)
        problems.append(Problem(str(path), line, f"{name} must be 'async def {name}(ctx)'"))
        return None
    step: PythonStep = fn
    return step

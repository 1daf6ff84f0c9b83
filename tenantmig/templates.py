"""Safe-pattern templates for ``tenantmig new``: migration files that follow NOTES-ON-SEED.

:data:`PATTERNS` names each pattern, says what it does and which parameters it takes.
:func:`render` turns a pattern, a description and parameters into ``(filename, text)`` pairs,
numbered from a first version: ``V<n>__<slug>_<step>.sql`` (or ``.py`` for a backfill or a
copy), and ``U<n>__<slug>_<step>.sql`` where an undo is safe. Without a pattern it gives one
empty ``V<n>__<slug>.sql`` with a commented header. :func:`next_version` and :func:`write`
are the only functions that touch the disk (:func:`create` chains them).

Parameters are interpolated into SQL, so they are checked, never quoted:

* names (tables, columns, indexes, constraints, types) must be plain SQL identifiers: ASCII
  letters, digits and ``_``, not starting with a digit, at most 63 characters, not a reserved
  SQL word; they are folded to lower case, as PostgreSQL does with unquoted names;
* types come from a short allow-list (``varchar(255)``, ``text``, ``bigint``, ``integer``,
  ``numeric(12,2)``, ``timestamptz``, ``boolean``, ``jsonb``, ``uuid``, ...);
* an enum value is a word (letters, digits, ``_ . -`` and inner spaces), written as a
  string literal;
* expressions (``using`` of change-column-type, ``expression`` and ``where`` of backfill) are
  a conservative subset of SQL over the row's own columns: names, numbers, ``'string'``
  literals, function calls, casts (``::``), ``CASE``, arithmetic, comparison and logic
  operators. Refused: ``;``, comments, quoted identifiers, dotted names, dollar quotes,
  backslashes, braces, line breaks, and statement words such as ``SELECT`` or ``FROM`` (so no
  subqueries). Anything more elaborate belongs in a hand-written migration.

Every set a pattern generates passes ``tenantmig lint`` with no blocking finding; the steps
that rename or drop on purpose carry ``-- tenantmig:allow`` lines with their reasons.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from ._exceptions import TenantmigError
from .durations import parse_duration_ms
from .lint import ColumnType, LintState, coercion
from .source import Kind, load_migrations

__all__ = [
    "PATTERNS",
    "Param",
    "Pattern",
    "create",
    "folder_state",
    "next_version",
    "render",
    "slugify",
    "write",
]

_WIDTH = 92
_MAX_IDENT = 63
_FILE = re.compile(r"^(?P<kind>[VU])(?P<version>\d+)__.+\.(?:sql|py)$")


@dataclass(frozen=True)
class Param:
    """One parameter of a pattern."""

    name: str
    help: str
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Pattern:
    """A safe multi-step change, as ``tenantmig new --pattern NAME`` writes it."""

    name: str
    summary: str
    """One line: what the pattern does."""
    params: tuple[Param, ...] = field(default=())

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.required)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if not p.required)

    def describe(self) -> str:
        """The parameters, for ``--list-patterns``."""
        parts = []
        for p in self.params:
            text = p.name if p.required else f"[{p.name}" + (
                f"={p.default}]" if p.default is not None else "]"
            )
            parts.append(text)
        return " ".join(parts)


_LOCK = Param("lock_timeout", "lock_timeout of each step that locks the table", default="5s")
_KEY = Param("key", "the table's integer key walked in keyset batches", default="id")
_BATCH = Param("batch_size", "rows per batch, each committed on its own", default="1000")

PATTERNS: dict[str, Pattern] = {
    p.name: p
    for p in (
        Pattern(
            "widen-column",
            "widen a column in place (varchar(n) -> varchar(m >= n) or text, more numeric "
            "precision): one ALTER COLUMN TYPE, no rewrite",
            (
                Param("table", "the table", required=True),
                Param("column", "the column", required=True),
                Param("to_type", "the wider type", required=True),
                Param("from_type", "its current type, when no migration in the folder "
                      "declares it"),
                _LOCK,
            ),
        ),
        Pattern(
            "change-column-type",
            "change a column's type without a rewrite under lock: new column + sync trigger, "
            "batched backfill, switch",
            (
                Param("table", "the table", required=True),
                Param("column", "the column", required=True),
                Param("to_type", "the new type", required=True),
                Param("using", "expression computing the new value from the row (default: "
                      "column::to_type)"),
                _KEY,
                _BATCH,
                _LOCK,
            ),
        ),
        Pattern(
            "add-not-null",
            "make a column NOT NULL: CHECK ... NOT VALID, then VALIDATE + SET NOT NULL + drop "
            "the CHECK in the next migration",
            (
                Param("table", "the table", required=True),
                Param("column", "the column", required=True),
                Param("name", "the temporary CHECK's name (default TABLE_COLUMN_not_null)"),
                _LOCK,
            ),
        ),
        Pattern(
            "concurrent-index",
            "build an index with CREATE INDEX CONCURRENTLY, alone in a no-transaction "
            "migration",
            (
                Param("table", "the table", required=True),
                Param("columns", "comma separated columns, each optionally followed by "
                      "asc or desc", required=True),
                Param("name", "the index name (default TABLE_COLUMNS_idx)"),
                Param("unique", "true for a unique index", default="false"),
            ),
        ),
        Pattern(
            "unique-constraint",
            "add a UNIQUE constraint: unique index built CONCURRENTLY, then ADD CONSTRAINT "
            "... USING INDEX",
            (
                Param("table", "the table", required=True),
                Param("columns", "comma separated columns", required=True),
                Param("name", "the index and constraint name (default TABLE_COLUMNS_key)"),
                _LOCK,
            ),
        ),
        Pattern(
            "foreign-key",
            "add a foreign key NOT VALID, then VALIDATE it in the next migration",
            (
                Param("table", "the referencing table", required=True),
                Param("column", "the referencing column", required=True),
                Param("ref_table", "the referenced table", required=True),
                Param("ref_column", "the referenced column", default="id"),
                Param("name", "the constraint name (default TABLE_COLUMN_fkey)"),
                _LOCK,
            ),
        ),
        Pattern(
            "enum-value",
            "add a value to an enum type (ALTER TYPE ... ADD VALUE IF NOT EXISTS), alone in "
            "its migration",
            (
                Param("type_name", "the enum type", required=True),
                Param("value", "the new value", required=True),
                _LOCK,
            ),
        ),
        Pattern(
            "backfill",
            "set a column on existing rows in keyset batches, each committed on its own "
            "(Python migration, ctx.backfill)",
            (
                Param("table", "the table", required=True),
                Param("column", "the column to set", required=True),
                Param("expression", "the value, an SQL expression over the row", required=True),
                Param("where", "only rows matching this SQL condition"),
                _KEY,
                _BATCH,
                _LOCK,
            ),
        ),
        Pattern(
            "partition-table",
            "move a table to a range-partitioned copy: create + sync trigger, batched copy, "
            "switch by renaming",
            (
                Param("table", "the table", required=True),
                Param("partition_key", "the timestamp or date column to partition by",
                      required=True),
                Param("interval", "partition size (only monthly)", default="monthly"),
                _KEY,
                _BATCH,
                _LOCK,
            ),
        ),
    )
}
"""Pattern name -> :class:`Pattern`."""


# --- validation ---------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAMES = frozenset(RESERVED_KEYWORDS) | frozenset(TYPE_FUNC_NAME_KEYWORDS)
_TYPE = re.compile(
    r"""(?x)
    (?:text|bigint|integer|int|smallint|boolean|bool|jsonb|json|uuid|date|bytea|inet|cidr
      |real|double\ precision|interval|timestamptz|timestamp|timetz|time
      |varchar(?:\(\d{1,5}\))?
      |numeric(?:\(\d{1,4}(?:,\d{1,4})?\))?
    )"""
)
_TYPE_NAMES = (
    "text, varchar, varchar(N), smallint, integer, bigint, numeric, numeric(P), numeric(P,S), "
    "real, double precision, boolean, date, time, timetz, timestamp, timestamptz, interval, "
    "json, jsonb, uuid, bytea, inet, cidr"
)
_ENUM_VALUE = re.compile(r"[A-Za-z0-9_.-](?:[A-Za-z0-9_. -]*[A-Za-z0-9_.-])?")
_EXPRESSION_TOKEN = re.compile(
    r"""(?x)
      (?P<space>[ \t]+)
    | (?P<string>'(?:[^'$\\{}\r\n]|'')*')
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>::|<>|!=|<=|>=|\|\||[-+*/%=<>(),])
    """
)
_STATEMENT_WORDS = frozenset(
    """select from where insert update delete merge with into returning union intersect except
    join lateral values table do begin commit rollback savepoint grant revoke create alter drop
    truncate copy execute call set reset lock analyze analyse vacuum listen notify""".split()  # noqa: SIM905
)
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def _ident(value: str, what: str) -> str:
    text = value.strip()
    if not _IDENT.fullmatch(text):
        raise ValueError(
            f"{what} {value!r} is not a plain SQL identifier: use ASCII letters, digits and _ "
            "only, not starting with a digit (no quotes, dots, spaces or other characters)"
        )
    text = text.lower()
    if len(text) > _MAX_IDENT:
        raise ValueError(f"{what} {value!r} is longer than {_MAX_IDENT} characters")
    if text in _NOT_NAMES:
        raise ValueError(f"{what} {value!r} is a reserved SQL word: pick another name")
    return text


def _derived(name: str, what: str) -> str:
    """A name built from others (``orders_customer_id_idx``); must fit PostgreSQL's limit."""
    if len(name) > _MAX_IDENT:
        raise ValueError(
            f"the {what} name {name} is longer than {_MAX_IDENT} characters (PostgreSQL would "
            "truncate it): give a shorter one with name=..."
            if what in ("index", "constraint")
            else f"the {what} name {name} is longer than {_MAX_IDENT} characters: the table "
            "and column names are too long for this pattern"
        )
    return name


def _type(value: str, what: str) -> str:
    text = " ".join(value.lower().split())
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    if not _TYPE.fullmatch(text):
        raise ValueError(f"{what} {value!r} is not an accepted type; accepted: {_TYPE_NAMES}")
    return text


def _column_type(sql_type: str) -> ColumnType:
    """How the linter sees *sql_type* (canonical names: int8, bool, ...)."""
    state = LintState().after(f"CREATE TABLE {{{{schema}}}}.t (c {sql_type});")
    found = state.columns.get(("t", "c"))
    if found is None:  # pragma: no cover - every allow-listed type parses
        raise ValueError(f"cannot read the type {sql_type!r}")
    return found


def _expression(value: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError(f"{what} is empty")
    if len(text) > 1000:
        raise ValueError(f"{what} is longer than 1000 characters: write this migration by hand")
    for bad in ("--", "/*", "*/"):
        if bad in text:
            raise ValueError(f"{what} {value!r} contains {bad!r}: comments are not accepted")
    depth = 0
    position = 0
    while position < len(text):
        match = _EXPRESSION_TOKEN.match(text, position)
        if match is None:
            raise ValueError(
                f"{what} {value!r}: {text[position:position + 12]!r} is not accepted; use "
                "column names, numbers, 'strings', function calls, ::casts, CASE, and + - * / "
                "% || = <> < > <= >= operators (no ; quotes\" dots $ or comments)"
            )
        kind, token = match.lastgroup, match.group()
        if kind == "word" and token.lower() in _STATEMENT_WORDS:
            raise ValueError(
                f"{what} {value!r} uses {token.upper()}: only an expression over the row's own "
                "columns is accepted (no subqueries or statements)"
            )
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{what} {value!r} has an unbalanced ')'")
        position = match.end()
    if depth:
        raise ValueError(f"{what} {value!r} has an unbalanced '('")
    return text


def _enum_value(value: str) -> str:
    if not _ENUM_VALUE.fullmatch(value) or len(value.encode()) > _MAX_IDENT:
        raise ValueError(
            f"enum value {value!r} is not accepted: use letters, digits, _ . - and inner spaces, "
            f"at most {_MAX_IDENT} bytes"
        )
    return value


def _flag(value: str, what: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what} must be true or false, not {value!r}")


def _positive(value: str, what: str, maximum: int) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= maximum:
        raise ValueError(f"{what} must be a whole number from 1 to {maximum}, not {value!r}")
    return int(value)


def _duration(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"\d+(?:\.\d+)?(?:ms|s|min|m|h)?", text):
        raise ValueError(f"lock_timeout {value!r} is not a duration (use e.g. 250ms, 5s, 1min)")
    parse_duration_ms(text)
    return text


def _columns(value: str, *, directions: bool) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise ValueError(f"columns {value!r}: give comma separated column names")
    result = []
    for item in items:
        words = item.split()
        name = _ident(words[0], "column")
        if len(words) == 2 and directions and words[1].lower() in ("asc", "desc"):
            result.append(f"{name} {words[1].upper()}")
        elif len(words) == 1:
            result.append(name)
        else:
            allowed = " (optionally followed by asc or desc)" if directions else ""
            raise ValueError(f"columns: {item!r} is not a column name{allowed}")
    return result


def slugify(description: str) -> str:
    """The description as a file-name part: lower case ASCII words joined by ``_``
    (accents dropped: ``Ünïcode name`` gives ``unicode_name``)."""
    ascii_text = unicodedata.normalize("NFKD", description).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    slug = slug[:60].rstrip("_")
    if not slug:
        raise ValueError(
            f"description {description!r} has no letter or digit to name the file with"
        )
    return slug


# --- text helpers -------------------------------------------------------------------------


def _comment(text: str) -> str:
    """Paragraphs (blank-line separated) as wrapped ``--`` comment lines."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        paragraph = paragraph.strip()
        if paragraph.startswith("*"):  # a bulleted list: one bullet per "* " line
            for bullet in re.split(r"\n\s*(?=\* )", paragraph):
                wrapped = textwrap.wrap(
                    " ".join(bullet[2:].split()), _WIDTH - 5,
                    break_long_words=False, break_on_hyphens=False,
                )
                lines += ["-- * " + wrapped[0]] + ["--   " + w for w in wrapped[1:]]
        else:
            wrapped = textwrap.wrap(
                " ".join(paragraph.split()), _WIDTH - 3,
                break_long_words=False, break_on_hyphens=False,
            )
            lines += ["-- " + w for w in wrapped]
        lines.append("--")
    lines.pop()
    for line in lines:  # prose must never read as a directive
        if line.startswith("-- tenantmig:"):
            raise ValueError(f"this text would read as a tenantmig directive: {line}")
    return "\n".join(lines)


def _allow(rule: str, reason: str) -> str:
    """An allow comment line (for a statement in a body)."""
    return f"-- tenantmig:allow {rule} {reason}"


def _sql_file(header: str, body: str, *, directives: Sequence[str] = ()) -> str:
    parts = [f"-- tenantmig:{d}" for d in directives]
    parts.append(_comment(header))
    parts.append(textwrap.dedent(body).strip())
    return "\n".join(parts) + "\n"


def _docstring(text: str) -> str:
    paragraphs = textwrap.dedent(text).strip().split("\n\n")
    out = []
    for paragraph in paragraphs:
        out.append(
            "\n".join(
                textwrap.wrap(" ".join(paragraph.split()), _WIDTH - 4,
                              break_long_words=False, break_on_hyphens=False)
            )
        )
    body = "\n\n".join(out).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{body}\n"""'


def _py_file(doc: str, code: str) -> str:
    return _docstring(doc) + "\n\n" + textwrap.dedent(code).strip() + "\n"


# --- the patterns -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    suffix: str
    text: str
    ext: str = "sql"
    undo: str | None = None


class _Args:
    """Validated access to one call's parameters."""

    def __init__(
        self,
        pattern: Pattern,
        params: Mapping[str, str],
        earlier: LintState | None,
        today: date,
    ) -> None:
        known = {p.name: p for p in pattern.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"pattern {pattern.name} takes no parameter {', '.join(unknown)}; it takes: "
                f"{pattern.describe()}"
            )
        missing = [name for name in pattern.required if not str(params.get(name, "")).strip()]
        if missing:
            raise ValueError(
                f"pattern {pattern.name} needs {', '.join(missing)} (--param NAME=VALUE or "
                f"--{missing[0].replace('_', '-')}); it takes: {pattern.describe()}"
            )
        self.pattern = pattern
        self.values = {
            name: (str(params[name]) if name in params else (p.default or ""))
            for name, p in known.items()
        }
        self.earlier = earlier
        self.today = today

    def raw(self, name: str) -> str:
        return self.values[name].strip()

    def ident(self, name: str, what: str | None = None) -> str:
        return _ident(self.values[name], what or name.replace("_", " "))

    def optional_ident(self, name: str, what: str) -> str | None:
        return _ident(self.values[name], what) if self.raw(name) else None

    @property
    def lock_timeout(self) -> str:
        return _duration(self.values.get("lock_timeout") or "5s")

    @property
    def lock_directive(self) -> str:
        return f"lock-timeout={self.lock_timeout}"


def _widen_column(a: _Args) -> list[_Step]:
    table, column = a.ident("table"), a.ident("column")
    to_type = _type(a.values["to_type"], "to_type")
    given = _type(a.values["from_type"], "from_type") if a.raw("from_type") else None
    known = a.earlier.columns.get((table, column)) if a.earlier is not None else None
    target = _column_type(to_type)
    if known is not None and given is not None and _column_type(given) != known:
        raise ValueError(
            f"from_type {given} does not match {table}.{column} as the migrations in the "
            f"folder leave it: {known}"
        )
    if known is None and given is None:
        raise ValueError(
            f"the current type of {table}.{column} is not declared by any migration in the "
            "folder (or the folder does not load): give it with --param from_type=TYPE "
            "(e.g. varchar(50)) so the widening can be checked"
        )
    old = known if known is not None else _column_type(given or "")
    verdict = coercion(old, target)
    if verdict == "same":
        raise ValueError(f"{table}.{column} is already {old}")
    if verdict != "binary":
        raise ValueError(
            f"{old} -> {to_type} is not binary-coercible: ALTER COLUMN TYPE would rewrite "
            f"{table} and rebuild its indexes under ACCESS EXCLUSIVE. Use --pattern "
            "change-column-type (new column, sync trigger, batched backfill, switch) instead"
        )
    directives = [a.lock_directive]
    if known is None:
        directives.append(
            f"allow alter-column-type {old} -> {to_type} is binary-coercible (no rewrite, no "
            f"index rebuild); the current type {old} was given to tenantmig new because no "
            "migration in this folder declares it"
        )
    header = f"""
        {a.values['__description']}: widens {table}.{column} from {old} to {to_type} in place
        (generated by tenantmig new, pattern widen-column).

        Why this is safe: {old} -> {to_type} is binary-coercible, so PostgreSQL only changes
        the catalog: no table rewrite, no index rebuild (NOTES-ON-SEED, P1: the seed's 5-step
        column swap is only needed for changes that do rewrite).

        Lock: ACCESS EXCLUSIVE on {table} for milliseconds. The lock timeout
        ({a.lock_timeout}) bounds how long this waits for running transactions, and so how long
        reads and writes can queue behind it; on a timeout the engine retries.

        No undo: narrowing the column back would scan {table} under ACCESS EXCLUSIVE and fail
        on longer values.
    """
    body = f"ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} TYPE {to_type};"
    return [_Step("alter_type", _sql_file(header, body, directives=directives))]


def _change_column_type(a: _Args) -> list[_Step]:
    table, column = a.ident("table"), a.ident("column")
    to_type = _type(a.values["to_type"], "to_type")
    key = a.ident("key")
    batch = _positive(a.values["batch_size"], "batch_size", 100_000)
    using = _expression(a.values["using"], "using") if a.raw("using") else None
    new = _derived(f"{column}_new", "column")
    old = _derived(f"{column}_old", "column")
    sync = _derived(f"{table}_{column}_sync", "function")
    value = f"({using})::{to_type}" if using else f"{column}::{to_type}"
    lt = a.lock_timeout
    desc = a.values["__description"]

    if using:
        assign = f"SELECT {value} INTO NEW.{new} FROM (SELECT NEW.*) AS r;"
        events = "INSERT OR UPDATE"
        how = (
            f"computes {new} = {value} from the whole new row (the expression may read any "
            "column), so it fires on every INSERT and UPDATE"
        )
    else:
        assign = f"NEW.{new} := NEW.{column}::{to_type};"
        events = f"INSERT OR UPDATE OF {column}"
        how = f"sets {new} = {column}::{to_type} on every INSERT and every UPDATE of {column}"

    step1 = _sql_file(
        f"""
        {desc}: step 1 of 3 of changing {table}.{column} to {to_type} without rewriting the
        table under lock (generated by tenantmig new, pattern change-column-type; seed
        pattern 1 as corrected by NOTES-ON-SEED).

        Adds the nullable column {new} {to_type} (no default: catalog-only, no rewrite) and
        a BEFORE trigger that {how}. The trigger replaces the seed's application dual-write:
        from this commit on, every write keeps {new} in sync, so no release of the app is
        needed. Both statements commit together, so no write escapes both the trigger and the
        backfill of the next migration.

        Careful: a value the conversion cannot handle now makes that write fail. Check the
        data first, or give a conversion that cannot fail (NULLIF, CASE) as using=...

        Locks: ACCESS EXCLUSIVE on {table} for the catalog change only (milliseconds), then
        SHARE ROW EXCLUSIVE for CREATE TRIGGER until commit, right after; each wait is bounded
        by the lock timeout ({lt}) and retried by the engine.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} ADD COLUMN {new} {to_type};

        CREATE FUNCTION {{{{schema}}}}.{sync}() RETURNS trigger
        LANGUAGE plpgsql AS $sync$
        #variable_conflict use_column
        BEGIN
            {assign}
            RETURN NEW;
        END
        $sync$;

        CREATE TRIGGER {sync}
            BEFORE {events} ON {{{{schema}}}}.{table}
            FOR EACH ROW EXECUTE FUNCTION {{{{schema}}}}.{sync}();
        """,
        directives=[a.lock_directive],
    )
    undo1 = _sql_file(
        f"""
        Undo of step 1 of {desc}: drops the sync trigger, its function and {table}.{new}.
        Catalog-only (DROP COLUMN does not rewrite); brief ACCESS EXCLUSIVE on {table},
        waiting at most {lt}. The original column {column} is untouched.
        """,
        f"""
        DROP TRIGGER IF EXISTS {sync} ON {{{{schema}}}}.{table};
        DROP FUNCTION IF EXISTS {{{{schema}}}}.{sync}();
        {_allow("drop-column", f"undo of step 1: {new} only holds the trigger's copy of "
                f"{column}, which no release of the app reads yet")}
        ALTER TABLE {{{{schema}}}}.{table} DROP COLUMN IF EXISTS {new};
        """,
        directives=[a.lock_directive],
    )
    pending = f"{new} IS DISTINCT FROM {value}"
    step2 = _py_file(
        f"""
        {desc}: step 2 of 3 of changing {table}.{column} to {to_type}: backfill {new} for the
        rows written before step 1 (generated by tenantmig new, pattern change-column-type).

        Rows written since step 1 are kept in sync by the trigger; this fills the older ones
        with the same conversion. transactional = False and ctx.backfill walk {table}.{key} in
        keyset batches of {batch}, each committed on its own: row locks on at most {batch} rows
        for milliseconds, ROW EXCLUSIVE on the table, so reads and writes go on (NOTES-ON-SEED:
        a loop inside one transaction would hold every row lock to the end). Idempotent: only
        rows whose {new} differs from the conversion are touched, so a retry or a resume just
        continues. The final check (a plain read, ACCESS SHARE) makes sure nothing was missed
        before the switch can run.
        """,
        f"""
        from __future__ import annotations

        from typing import Any

        transactional = False
        lock_timeout = {lt!r}

        TABLE = {table!r}
        SET = {f"{new} = {value}"!r}
        PENDING = {pending!r}


        async def up(ctx: Any) -> None:
            rows = await ctx.backfill(
                TABLE, SET, where=PENDING, key={key!r}, batch_size={batch}, pause=0.01
            )
            left = await ctx.fetchval(
                "SELECT count(*) FROM {{{{schema}}}}." + TABLE + " WHERE " + PENDING
            )
            if left:
                raise RuntimeError(f"{{left}} rows of {table} still differ in {new}")
            ctx.log.info("backfilled", table=TABLE, rows=rows)


        async def down(ctx: Any) -> None:
            # Nothing to undo: the values live in {new}, which the undo of step 1 drops.
            ctx.log.info("nothing to undo for the backfill", table=TABLE)
        """,
    )
    step3 = _sql_file(
        f"""
        {desc}: step 3 of 3 of changing {table}.{column} to {to_type}: the switch, in one
        short transaction (generated by tenantmig new, pattern change-column-type).

        Drops the sync trigger and its function, renames {column} -> {old} and {new} ->
        {column}: from this commit on the application reads and writes the {to_type} column
        under the old name. {old} loses NOT NULL (it is no longer written, and inserts must not
        fail on it) and is kept for a rollback; dropping it belongs to a later release. Step 2
        checked that every row was backfilled.

        Before applying, carry over what the old column had. A DEFAULT: SET DEFAULT on {new}
        here, before the renames (catalog-only). NOT NULL, indexes, unique and foreign keys:
        on {new}, in migrations that run before this one (patterns add-not-null,
        concurrent-index, unique-constraint, foreign-key; renumber this file after them, it is
        not applied anywhere yet). Views and functions that use {column} keep pointing at
        {old}: recreate them here.

        Locks: all catalog-only; ACCESS EXCLUSIVE on {table} for milliseconds, waiting at most
        {lt} (then the engine retries). No undo: writes after the switch go to the new column
        only, so going back would lose them.
        """,
        f"""
        DROP TRIGGER {sync} ON {{{{schema}}}}.{table};
        DROP FUNCTION {{{{schema}}}}.{sync}();
        {_allow("rename-column", f"the application reads and writes {column} as {to_type} "
                f"from this release on; {old} is kept for rollback")}
        ALTER TABLE {{{{schema}}}}.{table} RENAME COLUMN {column} TO {old};
        {_allow("rename-column", f"{new} takes the old name in the same transaction, so "
                f"{column} never disappears")}
        ALTER TABLE {{{{schema}}}}.{table} RENAME COLUMN {new} TO {column};
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {old} DROP NOT NULL;
        """,
        directives=[a.lock_directive],
    )
    return [
        _Step("add_column_and_sync_trigger", step1, undo=undo1),
        _Step("backfill", step2, ext="py"),
        _Step("switch", step3),
    ]


def _add_not_null(a: _Args) -> list[_Step]:
    table, column = a.ident("table"), a.ident("column")
    name = a.optional_ident("name", "constraint name") or _derived(
        f"{table}_{column}_not_null", "constraint"
    )
    lt, desc = a.lock_timeout, a.values["__description"]
    check = f"CHECK ({column} IS NOT NULL)"
    step1 = _sql_file(
        f"""
        {desc}: step 1 of 2 of making {table}.{column} NOT NULL (generated by tenantmig new,
        pattern add-not-null; seed pattern 2 as corrected by NOTES-ON-SEED).

        Adds {check} NOT VALID: enforced for every write from this commit on, existing rows
        not scanned. NOT VALID still takes ACCESS EXCLUSIVE on {table}, for milliseconds
        (catalog only), waiting at most {lt}. The validation scan is the next migration, so it
        never runs under this lock.

        Before applying: the application must no longer write NULL into {column} (such writes
        now fail with 23514), and existing NULLs must be filled (pattern backfill) before the
        next migration, which fails otherwise.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} {check} NOT VALID;
        """,
        directives=[a.lock_directive],
    )
    undo1 = _sql_file(
        f"""
        Undo of step 1 of {desc}: drops the CHECK. Catalog-only; brief ACCESS EXCLUSIVE on
        {table}, waiting at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};",
        directives=[a.lock_directive],
    )
    step2 = _sql_file(
        f"""
        {desc}: step 2 of 2 of making {table}.{column} NOT NULL, a separate migration from the
        NOT VALID CHECK as NOTES-ON-SEED requires (the seed added, validated and set NOT NULL
        in one transaction, holding ACCESS EXCLUSIVE through the whole scan).

        * VALIDATE scans {table} under SHARE UPDATE EXCLUSIVE: reads and writes go on during
          the scan. It fails with 23514 if a NULL is left (backfill first).
        * SET NOT NULL needs ACCESS EXCLUSIVE but, on PostgreSQL 12+, skips its own scan because
          the now valid CHECK proves there is no NULL: milliseconds.
        * The CHECK is then redundant and dropped (catalog-only).

        Each lock waits at most {lt}; on a timeout the engine retries the whole migration.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} VALIDATE CONSTRAINT {name};
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} SET NOT NULL;
        ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT {name};
        """,
        directives=[a.lock_directive],
    )
    undo2 = _sql_file(
        f"""
        Undo of step 2 of {desc}: back to the state after step 1, {column} nullable and
        guarded by the unvalidated CHECK. Catalog-only (NOT VALID skips the scan): brief ACCESS
        EXCLUSIVE on {table}, waiting at most {lt}.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} DROP NOT NULL;
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} {check} NOT VALID;
        """,
        directives=[a.lock_directive],
    )
    return [
        _Step("check_not_valid", step1, undo=undo1),
        _Step("validate_set_not_null", step2, undo=undo2),
    ]


def _index_name(table: str, columns: list[str], suffix: str) -> str:
    return "_".join([table, *(c.split()[0] for c in columns), suffix])


_CIC_NOTES = """
    It cannot run in a transaction (25001), hence the no-transaction header, and it stays the
    only statement here: a multi-statement query string is an implicit transaction
    (NOTES-ON-SEED, P3). The build waits for every older transaction in the database, so a
    long-running transaction delays it (without blocking anyone else).

    A failed build leaves an INVALID index that still slows writes and that IF NOT EXISTS
    would silently keep; the engine drops it before a retry or a resume.
"""


def _concurrent_index(a: _Args) -> list[_Step]:
    table = a.ident("table")
    columns = _columns(a.values["columns"], directions=True)
    unique = _flag(a.values["unique"], "unique")
    name = a.optional_ident("name", "index name") or _derived(
        _index_name(table, columns, "key" if unique else "idx"), "index"
    )
    desc = a.values["__description"]
    kind = "UNIQUE INDEX" if unique else "INDEX"
    up = _sql_file(
        f"""
        {desc}: {kind.lower()} {name} on {table} ({", ".join(columns)}), built CONCURRENTLY
        (generated by tenantmig new, pattern concurrent-index; seed pattern 3).

        Lock: SHARE UPDATE EXCLUSIVE on {table}, so reads and writes go on during the whole
        build (a plain CREATE INDEX would block every write with a SHARE lock).{
            " A duplicate makes the build fail with 23505: deduplicate first." if unique else ""}

        {_CIC_NOTES}

        The index name cannot be schema-qualified here: it always goes in the table's schema.
        """,
        f"""
        CREATE {kind} CONCURRENTLY IF NOT EXISTS {name}
            ON {{{{schema}}}}.{table} ({", ".join(columns)});
        """,
        directives=["no-transaction"],
    )
    undo = _sql_file(
        f"""
        Undo of {desc}: DROP INDEX CONCURRENTLY waits out the queries using the index instead
        of taking ACCESS EXCLUSIVE on {table}; like the build it cannot run in a transaction
        and stays the only statement. IF EXISTS makes a retry harmless.
        """,
        f"DROP INDEX CONCURRENTLY IF EXISTS {{{{schema}}}}.{name};",
        directives=["no-transaction"],
    )
    return [_Step("create_index", up, undo=undo)]


def _unique_constraint(a: _Args) -> list[_Step]:
    table = a.ident("table")
    columns = _columns(a.values["columns"], directions=False)
    name = a.optional_ident("name", "constraint name") or _derived(
        _index_name(table, columns, "key"), "constraint"
    )
    cols = ", ".join(columns)
    lt, desc = a.lock_timeout, a.values["__description"]
    create = (
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name}\n"
        f"    ON {{{{schema}}}}.{table} ({cols});"
    )
    step1 = _sql_file(
        f"""
        {desc}: step 1 of 2 of UNIQUE ({cols}) on {table}: the unique index, built
        CONCURRENTLY (generated by tenantmig new, pattern unique-constraint).

        Why: ADD CONSTRAINT ... UNIQUE on its own builds the index under ACCESS EXCLUSIVE,
        blocking reads and writes for the whole build. Here the build takes SHARE UPDATE
        EXCLUSIVE on {table}: reads and writes go on. A duplicate makes it fail with 23505:
        deduplicate first. From the end of the build on, the index already rejects
        duplicates.

        {_CIC_NOTES}
        """,
        create,
        directives=["no-transaction"],
    )
    undo1 = _sql_file(
        f"""
        Undo of step 1 of {desc}: DROP INDEX CONCURRENTLY, alone in a no-transaction migration
        (no ACCESS EXCLUSIVE on {table}). IF EXISTS makes a retry harmless.
        """,
        f"DROP INDEX CONCURRENTLY IF EXISTS {{{{schema}}}}.{name};",
        directives=["no-transaction"],
    )
    step2 = _sql_file(
        f"""
        {desc}: step 2 of 2 of UNIQUE ({cols}) on {table}: turns the index of step 1 into the
        constraint {name} (generated by tenantmig new, pattern unique-constraint).

        USING INDEX reuses the index already built and valid: no scan, no build, catalog
        only. Lock: ACCESS EXCLUSIVE on {table} for milliseconds, waiting at most {lt} (then
        the engine retries).
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} UNIQUE USING INDEX {name};
        """,
        directives=[a.lock_directive],
    )
    undo2 = _sql_file(
        f"""
        Undo of step 2 of {desc}: back to the state after step 1. Dropping the constraint
        also drops its index, so the index is built again CONCURRENTLY; until it is valid,
        duplicates are not rejected. Run statement by statement (no-transaction): the DROP is
        catalog-only with a brief ACCESS EXCLUSIVE on {table} (bounded by the lock timeout),
        the build takes SHARE UPDATE EXCLUSIVE (reads and writes go on). IF EXISTS and IF NOT
        EXISTS make a retry harmless; the engine drops an INVALID index left by a failed
        build.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};\n{create}",
        directives=["no-transaction", a.lock_directive],
    )
    return [
        _Step("unique_index", step1, undo=undo1),
        _Step("add_constraint", step2, undo=undo2),
    ]


def _foreign_key(a: _Args) -> list[_Step]:
    table, column = a.ident("table"), a.ident("column")
    ref_table, ref_column = a.ident("ref_table"), a.ident("ref_column")
    name = a.optional_ident("name", "constraint name") or _derived(
        f"{table}_{column}_fkey", "constraint"
    )
    lt, desc = a.lock_timeout, a.values["__description"]
    add = (
        f"ALTER TABLE {{{{schema}}}}.{table}\n"
        f"    ADD CONSTRAINT {name}\n"
        f"    FOREIGN KEY ({column}) REFERENCES {{{{schema}}}}.{ref_table} ({ref_column})\n"
        "    NOT VALID;"
    )
    step1 = _sql_file(
        f"""
        {desc}: step 1 of 2 of the foreign key {table}.{column} -> {ref_table}({ref_column})
        (generated by tenantmig new, pattern foreign-key; seed pattern 7 as corrected by
        NOTES-ON-SEED).

        Added NOT VALID: enforced for every write from this commit on, existing rows not
        scanned. ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables until commit, which
        blocks writes to both, so this migration does nothing else: milliseconds, waiting at
        most {lt}. The validation is the next migration (the seed validated in the same
        transaction, blocking writes to both tables during the scan).

        {ref_table}({ref_column}) needs a primary key or unique constraint. An index on
        {table}({column}) (pattern concurrent-index) keeps deletes and key updates on
        {ref_table} from scanning {table}.
        """,
        add,
        directives=[a.lock_directive],
    )
    undo1 = _sql_file(
        f"""
        Undo of step 1 of {desc}: drops the foreign key. Catalog-only; brief ACCESS EXCLUSIVE
        on {table} and SHARE ROW EXCLUSIVE on {ref_table}, waiting at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};",
        directives=[a.lock_directive],
    )
    step2 = _sql_file(
        f"""
        {desc}: step 2 of 2 of the foreign key {table}.{column} -> {ref_table}({ref_column}):
        validate the rows that existed before step 1, in a migration of its own.

        VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on {table} and ROW SHARE on
        {ref_table}, so reads and writes on both go on during the scan (NOTES-ON-SEED, P7:
        only true in a migration of its own). Fails with 23503 if a row points at a missing
        {ref_table}: fix those rows first. Waits for its locks at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} VALIDATE CONSTRAINT {name};",
        directives=[a.lock_directive],
    )
    undo2 = _sql_file(
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
        _Step("fk_not_valid", step1, undo=undo1),
        _Step("fk_validate", step2, undo=undo2),
    ]


def _enum_value_pattern(a: _Args) -> list[_Step]:
    type_name = a.ident("type_name", "type name")
    value = _enum_value(a.values["value"])
    literal = "'" + value.replace("'", "''") + "'"
    desc = a.values["__description"]
    up = _sql_file(
        f"""
        {desc}: adds {literal} to the enum type {type_name}, alone in its migration
        (generated by tenantmig new, pattern enum-value; seed pattern 8 as corrected by
        NOTES-ON-SEED).

        No table lock, but the type stays locked until commit, so nothing else runs in this
        transaction; the lock timeout ({a.lock_timeout}) bounds the wait. The new value cannot
        be used in the transaction that adds it (55P04 on PostgreSQL 12+; before 12 ADD VALUE
        cannot run in a transaction at all): code or migrations that write {literal} must
        come in a later version.

        IF NOT EXISTS makes a retry harmless. Enum values cannot be removed, so there is
        deliberately no undo: removing one means a new type and rewriting every table that
        uses it under ACCESS EXCLUSIVE.
        """,
        f"ALTER TYPE {{{{schema}}}}.{type_name} ADD VALUE IF NOT EXISTS {literal};",
        directives=[a.lock_directive],
    )
    return [_Step("add_value", up)]


def _backfill(a: _Args) -> list[_Step]:
    table, column = a.ident("table"), a.ident("column")
    expression = _expression(a.values["expression"], "expression")
    where = _expression(a.values["where"], "where") if a.raw("where") else None
    key = a.ident("key")
    batch = _positive(a.values["batch_size"], "batch_size", 100_000)
    lt, desc = a.lock_timeout, a.values["__description"]
    pending = f"{column} IS DISTINCT FROM ({expression})"
    condition = f"({where}) AND {pending}" if where else pending
    doc = f"""
        {desc}: sets {table}.{column} = {expression} on existing rows{
            f" where {where}" if where else ""} (generated by tenantmig new, pattern backfill).

        transactional = False and ctx.backfill walk {table}.{key} in keyset batches of {batch},
        each committed on its own, pausing between batches: each batch holds row locks on at
        most {batch} rows for milliseconds and ROW EXCLUSIVE on the table, so reads and writes
        go on (NOTES-ON-SEED, P1/P2: a loop or a single UPDATE inside one transaction holds
        every row lock and earlier DDL lock to the end and holds back vacuum).

        Idempotent: only rows where {column} IS DISTINCT FROM the expression are touched, so a
        retry or a resume continues where it stopped, and rows already right are not
        rewritten. Rows the application writes meanwhile are its own business: if it must
        write the same value, deploy that first.

        No down(): the overwritten values are gone, so this cannot be undone.
    """
    code = f"""
        from __future__ import annotations

        from typing import Any

        transactional = False
        lock_timeout = {lt!r}

        TABLE = {table!r}
        SET = {f"{column} = {expression}"!r}
        WHERE = {condition!r}


        async def up(ctx: Any) -> None:
            rows = await ctx.backfill(
                TABLE, SET, where=WHERE, key={key!r}, batch_size={batch}, pause=0.01
            )
            ctx.log.info("backfilled", table=TABLE, rows=rows)
    """
    return [_Step("backfill", _py_file(doc, code), ext="py")]


def _months(today: date, count: int) -> list[tuple[date, date]]:
    first = today.replace(day=1)
    bounds = []
    for _ in range(count):
        following = (first.replace(day=28) + (date.resolution * 4)).replace(day=1)
        bounds.append((first, following))
        first = following
    return bounds


def _partition_table(a: _Args) -> list[_Step]:
    table = a.ident("table")
    part_key = a.ident("partition_key", "partition key")
    key = a.ident("key")
    if a.raw("interval").lower() != "monthly":
        raise ValueError(f"interval {a.raw('interval')!r} is not supported: only monthly")
    batch = _positive(a.values["batch_size"], "batch_size", 100_000)
    lt, desc = a.lock_timeout, a.values["__description"]
    new = _derived(f"{table}_partitioned", "table")
    old = _derived(f"{table}_old", "table")
    sync = _derived(f"{table}_partition_sync", "function")
    default = _derived(f"{table}_default", "partition")
    months = _months(a.today, 13)
    partitions = []
    for start, end in months:
        name = _derived(f"{table}_p{start:%Y_%m}", "partition")
        partitions.append(
            f"CREATE TABLE {{{{schema}}}}.{name} PARTITION OF {{{{schema}}}}.{new}\n"
            f"    FOR VALUES FROM ('{start:%Y-%m-%d} 00:00:00+00') "
            f"TO ('{end:%Y-%m-%d} 00:00:00+00');"
        )
    first, last = months[0][0], months[-1][1]
    step1 = _sql_file(
        f"""
        {desc}: step 1 of 3 of moving {table} to a table partitioned by month of {part_key}
        (generated by tenantmig new on {a.today:%Y-%m-%d}, pattern partition-table; seed
        pattern 4 as corrected by NOTES-ON-SEED).

        Creates {new} with the columns, NOT NULLs, CHECKs and defaults of {table}, but
        not its indexes (LIKE ... EXCLUDING INDEXES): a primary key on a partitioned table must
        include the partition key, so it is PRIMARY KEY ({key}, {part_key}), and {key} is no
        longer unique on its own. The new table gets its own identity for {key} instead of
        the sequence of {table} (the switch moves it past the highest copied {key}). Partitions:
        one per month from {first:%Y-%m} to {months[-1][0]:%Y-%m} (UTC bounds, computed when
        this file was generated), and a DEFAULT partition for everything else, older rows
        included. Create later months before {last:%Y-%m-%d}, or new rows land in the DEFAULT
        partition.

        Then an AFTER trigger on {table} mirrors every INSERT, UPDATE and DELETE into {new}
        from this commit on, so the copy of step 2 only has to move the older rows, and no
        write is lost before the switch.

        Before applying, add to this file what {table} has and LIKE does not copy: secondary
        indexes (a plain CREATE INDEX on {new}, which is empty and unused here, so it blocks
        nobody; CONCURRENTLY is not possible on a partitioned table), GRANTs for the
        application's roles, row-level security policies, its other triggers, and foreign
        keys from {table} to other tables (or add them after the switch, pattern foreign-key).
        Foreign keys that reference {table} must be dropped before the switch, which refuses
        to run while any exists: after a rename they would keep pointing at the old table, and
        a foreign key to a partitioned table must reference ({key}, {part_key}). Stored
        generated columns are not supported by this pattern, and neither are NULLs in
        {part_key} (the copy fails on them). TRUNCATE of {table} is not mirrored.

        Locks: ACCESS SHARE on {table} to copy its definition, then SHARE ROW EXCLUSIVE for
        CREATE TRIGGER until the commit, right after: writes to {table} wait milliseconds.
        Every wait is bounded by the lock timeout ({lt}); the engine retries.
        """,
        "\n".join(
            [
                f"-- tenantmig:allow like-copies-defaults a nextval() default copied for "
                f"{key} is dropped just below for the new table's own identity; the other "
                "defaults (now(), constants) are wanted",
                f"CREATE TABLE {{{{schema}}}}.{new} (",
                f"    LIKE {{{{schema}}}}.{table} INCLUDING ALL EXCLUDING INDEXES "
                "EXCLUDING IDENTITY,",
                f"    PRIMARY KEY ({key}, {part_key})",
                f") PARTITION BY RANGE ({part_key});",
                "",
                f"ALTER TABLE {{{{schema}}}}.{new}",
                f"    ALTER COLUMN {key} DROP DEFAULT,",
                f"    ALTER COLUMN {key} ADD GENERATED BY DEFAULT AS IDENTITY;",
                "",
                f"CREATE TABLE {{{{schema}}}}.{default} PARTITION OF {{{{schema}}}}.{new} "
                "DEFAULT;",
                *partitions,
                "",
                f"CREATE FUNCTION {{{{schema}}}}.{sync}() RETURNS trigger",
                "LANGUAGE plpgsql AS $sync$",
                "#variable_conflict use_column",
                "BEGIN",
                "    IF TG_OP <> 'INSERT' THEN",
                f"        DELETE FROM {{{{schema}}}}.{new}",
                f"         WHERE {key} = OLD.{key} AND {part_key} = OLD.{part_key};",
                "    END IF;",
                "    IF TG_OP <> 'DELETE' THEN",
                f"        INSERT INTO {{{{schema}}}}.{new} SELECT NEW.* ON CONFLICT DO NOTHING;",
                "    END IF;",
                "    RETURN NULL;",
                "END",
                "$sync$;",
                "",
                f"CREATE TRIGGER {sync}",
                f"    AFTER INSERT OR UPDATE OR DELETE ON {{{{schema}}}}.{table}",
                f"    FOR EACH ROW EXECUTE FUNCTION {{{{schema}}}}.{sync}();",
            ]
        ),
        directives=[a.lock_directive],
    )
    undo1 = _sql_file(
        f"""
        Undo of step 1 of {desc}: drops the mirroring trigger, its function and {new} with its
        partitions. {table} itself is untouched. Catalog-only; brief ACCESS EXCLUSIVE on
        {table} for DROP TRIGGER, waiting at most {lt}.
        """,
        f"""
        DROP TRIGGER IF EXISTS {sync} ON {{{{schema}}}}.{table};
        DROP FUNCTION IF EXISTS {{{{schema}}}}.{sync}();
        {_allow("drop-table", f"undo of step 1: {new} only holds copies of the rows of {table}, "
                "which no release of the app reads yet")}
        DROP TABLE IF EXISTS {{{{schema}}}}.{new};
        """,
        directives=[a.lock_directive],
    )
    source, target = f"{{{{schema}}}}.{table}", f"{{{{schema}}}}.{new}"
    step2 = _py_file(
        f"""
        {desc}: step 2 of 3 of moving {table} to {new}: copy the rows that existed before
        step 1 (generated by tenantmig new, pattern partition-table).

        Rows written since step 1 are mirrored by the trigger. This walks {table}.{key} up to
        its highest value at the start, in keyset batches of {batch}; each batch is its own
        transaction (transactional = False) and runs INSERT ... SELECT ... FOR SHARE ON
        CONFLICT DO NOTHING: it holds ROW EXCLUSIVE on {new}, ACCESS SHARE on {table} and
        share row locks on at most {batch} rows of {table} for milliseconds, so reads and
        writes go on (NOTES-ON-SEED: one transaction would hold every lock to the end). The
        row locks make a concurrent UPDATE or DELETE of a row wait until its batch commits,
        so the trigger always sees the copied row; ON CONFLICT DO NOTHING keeps the newer
        version the trigger already wrote. Idempotent: a retry or a resume copies again only
        what is missing.

        The final check (plain reads, ACCESS SHARE) makes sure every row of {table} is in
        {new} before the switch can run.
        """,
        f"""
        from __future__ import annotations

        import asyncio
        from typing import Any

        transactional = False
        lock_timeout = {lt!r}

        BATCH = {batch}
        NEXT_UPPER = (
            "SELECT max({key}) FROM (SELECT {key} FROM {source}"
            " WHERE {key} > $1 AND {key} <= $2 ORDER BY {key} LIMIT $3) AS batch"
        )
        COPY = (
            "INSERT INTO {target} SELECT * FROM {source}"
            " WHERE {key} > $1 AND {key} <= $2 ORDER BY {key} FOR SHARE"
            " ON CONFLICT DO NOTHING"
        )
        MISSING = (
            "SELECT count(*) FROM {source} AS s WHERE NOT EXISTS"
            " (SELECT 1 FROM {target} AS t"
            " WHERE t.{key} = s.{key} AND t.{part_key} = s.{part_key})"
        )
        EXTRA = (
            "SELECT (SELECT count(*) FROM {target})"
            " - (SELECT count(*) FROM {source})"
        )


        async def up(ctx: Any) -> None:
            lower, stop = await ctx.fetchrow(
                "SELECT min({key}) - 1, max({key}) FROM {source}"
            )
            copied = 0
            while lower is not None and lower < stop:
                async with ctx.conn.transaction():
                    upper = await ctx.fetchval(NEXT_UPPER, lower, stop, BATCH)
                    if upper is None:
                        break
                    status = await ctx.execute(COPY, lower, upper)
                copied += int(status.rsplit(" ", 1)[-1])
                lower = upper
                await asyncio.sleep(0.01)
            missing = await ctx.fetchval(MISSING)
            extra = await ctx.fetchval(EXTRA)
            if missing or extra:
                raise RuntimeError(
                    f"{new} differs from {table}: {{missing}} rows missing, {{extra}} extra"
                )
            ctx.log.info("copied", table={table!r}, rows=copied)


        async def down(ctx: Any) -> None:
            # Nothing to undo: the copies live in {new}, which the undo of step 1 drops.
            ctx.log.info("nothing to undo for the copy", table={table!r})
        """,
    )
    guard = f"""
        DO $guard$
        DECLARE
            referencing text;
        BEGIN
            SELECT pg_catalog.string_agg(
                       c.conname || ' on ' || c.conrelid::pg_catalog.regclass::text, ', ')
              INTO referencing
              FROM pg_catalog.pg_constraint AS c
             WHERE c.contype = 'f'
               AND c.confrelid = (SELECT t.typrelid FROM pg_catalog.pg_type AS t
                                   WHERE t.oid = pg_catalog.pg_typeof(NULL::{source}));
            IF referencing IS NOT NULL THEN
                RAISE EXCEPTION 'foreign keys reference {table}: %', referencing
                    USING HINT = 'after the switch they would point at {old}: drop them '
                                 'before this migration (see step 1)';
            END IF;
        END
        $guard$;
    """
    step3 = _sql_file(
        f"""
        {desc}: step 3 of 3 of moving {table} to {new}: the switch, in one short transaction
        (generated by tenantmig new, pattern partition-table).

        First a check that no foreign key references {table} (it would keep pointing at the
        old table after the rename): the migration fails with a clear message, changing
        nothing, if one does. Then the mirroring trigger goes, {table} becomes {old} and
        {new} becomes {table}, and the new identity of {key} is moved past the highest {key}
        of {old}. From this commit on the application reads and writes the partitioned
        table under the old name. {old} is kept, no longer written, for a rollback by hand;
        dropping it belongs to a later release. Views and functions that use {table} keep
        pointing at {old}: recreate them here.

        Locks: DROP TRIGGER takes ACCESS EXCLUSIVE on {table} first and holds it to the
        commit, so no write can slip between the last mirrored row and the rename; all steps
        are catalog-only (max({key}) reads the primary key index): milliseconds, waiting at
        most {lt} (then the engine retries). No undo: writes after the switch go to the
        partitioned table only, so going back would lose them.
        """,
        textwrap.dedent(guard).strip()
        + "\n\n"
        + textwrap.dedent(f"""
        DROP TRIGGER {sync} ON {source};
        DROP FUNCTION {{{{schema}}}}.{sync}();
        {_allow("rename-table", f"{table} becomes {old} and {new} takes its name in the same "
                "transaction, so readers and writers move over at commit")}
        ALTER TABLE {source} RENAME TO {old};
        {_allow("rename-table", f"the partitioned copy takes the name {table} in the same "
                "transaction as the old table leaves it")}
        ALTER TABLE {target} RENAME TO {table};
        SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('{source}', '{key}'),
                                 max({key}))
          FROM {{{{schema}}}}.{old};
        """).strip(),
        directives=[a.lock_directive],
    )
    return [
        _Step("create_partitioned", step1, undo=undo1),
        _Step("copy", step2, ext="py"),
        _Step("switch", step3),
    ]


_BUILDERS: dict[str, Callable[[_Args], list[_Step]]] = {
    "widen-column": _widen_column,
    "change-column-type": _change_column_type,
    "add-not-null": _add_not_null,
    "concurrent-index": _concurrent_index,
    "unique-constraint": _unique_constraint,
    "foreign-key": _foreign_key,
    "enum-value": _enum_value_pattern,
    "backfill": _backfill,
    "partition-table": _partition_table,
}
assert set(_BUILDERS) == set(PATTERNS)


def _blank(description: str) -> str:
    return _sql_file(
        f"""
        {description}

        Write the migration below. Every tenant object must be qualified as {{{{schema}}}}.name
        (the migration runs once per tenant schema, with an empty search_path); objects shared
        by all tenants are written their_schema.name. Each statement that rewrites or scans a
        busy table belongs in a migration of its own: see tenantmig new --list-patterns, and
        run tenantmig lint.
        """,
        """
        --
        -- Header directives go on their own comment lines above the first statement, written
        -- without the leading "--   " shown here:
        --   -- tenantmig:lock-timeout=5s         lock_timeout of this migration
        --   -- tenantmig:statement-timeout=5min  statement_timeout of this migration
        --   -- tenantmig:no-transaction          each statement on its own, outside a
        --                                        transaction (CREATE INDEX CONCURRENTLY)
        -- A lint finding accepted on purpose: a comment line right above the statement,
        --   -- tenantmig:allow RULE-ID why this is safe here
        """,
    )


def render(
    pattern: str | None,
    description: str,
    params: Mapping[str, str],
    first_version: int,
    *,
    earlier: LintState | None = None,
    today: date | None = None,
) -> list[tuple[str, str]]:
    """The files of *pattern* (or one empty migration when None) as ``(filename, text)``.

    ``V`` files are numbered from *first_version*, one version per step, each followed by its
    ``U`` file where a safe undo exists. *earlier* is what the folder's migrations establish
    (:func:`folder_state`; widen-column reads the column's current type from it); *today*
    fixes the months of partition-table (default: today, UTC). Raises ValueError with a
    message for the user on an unknown pattern or a bad parameter.
    """
    if first_version < 1:
        raise ValueError("versions start at 1")
    slug = slugify(description)
    summary = " ".join(description.split())
    if "{{" in summary or "}}" in summary:
        raise ValueError("the description must not contain {{ or }}")
    if summary.lower().startswith("tenantmig:"):
        raise ValueError("the description must not start with tenantmig: (a directive)")
    if pattern is None:
        if params:
            raise ValueError(
                f"parameters ({', '.join(sorted(params))}) need --pattern; see --list-patterns"
            )
        return [(f"V{first_version}__{slug}.sql", _blank(summary))]
    if pattern not in PATTERNS:
        raise ValueError(
            f"unknown pattern {pattern!r}; known: {', '.join(sorted(PATTERNS))}"
        )
    args = _Args(
        PATTERNS[pattern], params, earlier, today or datetime.now(UTC).date()
    )
    args.values["__description"] = summary
    files: list[tuple[str, str]] = []
    for offset, step in enumerate(_BUILDERS[pattern](args)):
        version = first_version + offset
        files.append((f"V{version}__{slug}_{step.suffix}.{step.ext}", step.text))
        if step.undo is not None:
            files.append((f"U{version}__{slug}_{step.suffix}.sql", step.undo))
    return files


def _versions(directory: Path) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if directory.is_dir():
        for path in directory.iterdir():
            match = _FILE.match(path.name)
            if match:
                found.setdefault(int(match["version"]), []).append(path.name)
    return found


def next_version(directory: str | Path) -> int:
    """The highest ``V``/``U`` version in *directory* plus one; 1 for an empty or missing one."""
    versions = _versions(Path(directory))
    return max(versions) + 1 if versions else 1


def write(directory: str | Path, files: Sequence[tuple[str, str]]) -> list[Path]:
    """Write *files* into *directory* (created if missing); return their paths.

    Refuses (FileExistsError, nothing written) when a file exists or one of the versions is
    already used by another file.
    """
    root = Path(directory)
    used = _versions(root)
    for name, _ in files:
        path = root / name
        if path.exists():
            raise FileExistsError(f"{path} already exists: not overwritten")
        match = _FILE.match(name)
        if match is None:
            raise ValueError(f"{name} is not a migration file name")
        others = used.get(int(match["version"]), [])
        if others:
            raise FileExistsError(
                f"version {int(match['version'])} is already used by {root / others[0]}"
            )
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for name, text in files:
            path = root / name
            with path.open("x", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def folder_state(directory: str | Path) -> LintState | None:
    """What the migrations in *directory* establish (column types, ...), as the linter sees
    it; None when the folder is missing or does not load."""
    root = Path(directory)
    if not root.is_dir():
        return None
    try:
        migrations = load_migrations(root)
    except TenantmigError:
        return None
    state = LintState()
    for migration in migrations.migrations:
        if migration.kind is Kind.SQL and migration.up.sql is not None:
            state = state.after(migration.up.sql, transactional=migration.up.transactional)
    return state


def create(
    directory: str | Path,
    pattern: str | None,
    description: str,
    params: Mapping[str, str],
    *,
    today: date | None = None,
) -> list[Path]:
    """Render *pattern* at the folder's next version and write it; return the paths."""
    earlier = folder_state(directory) if pattern == "widen-column" else None
    files = render(
        pattern, description, params, next_version(directory), earlier=earlier, today=today
    )
    return write(directory, files)

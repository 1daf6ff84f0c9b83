"""The checks every parameter of a pattern passes before it is written into SQL.

Parameters are interpolated into SQL, so they are checked, never quoted: each function here
returns the value in the form the SQL takes, or raises :class:`TemplateError` with a message
for the user.
"""

from __future__ import annotations

import re
import unicodedata

from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from .._exceptions import TemplateError
from ..durations import parse_duration_ms
from ..lint import ColumnType, LintState

MAX_IDENT = 63
"""PostgreSQL's identifier limit (NAMEDATALEN - 1): a longer name would be truncated."""

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


def ident(value: str, what: str) -> str:
    """*value* as a plain SQL identifier, folded to lower case as PostgreSQL folds unquoted
    names."""
    text = value.strip()
    if not _IDENT.fullmatch(text):
        raise TemplateError(
            f"{what} {value!r} is not a plain SQL identifier: use ASCII letters, digits and _ "
            "only, not starting with a digit (no quotes, dots, spaces or other characters)"
        )
    text = text.lower()
    if len(text) > MAX_IDENT:
        raise TemplateError(f"{what} {value!r} is longer than {MAX_IDENT} characters")
    if text in _NOT_NAMES:
        raise TemplateError(f"{what} {value!r} is a reserved SQL word: pick another name")
    return text


def derived(name: str, what: str) -> str:
    """A name built from others (``orders_customer_id_idx``); must fit PostgreSQL's limit."""
    if len(name) > MAX_IDENT:
        raise TemplateError(
            f"the {what} name {name} is longer than {MAX_IDENT} characters (PostgreSQL would "
            "truncate it): give a shorter one with name=..."
            if what in ("index", "constraint")
            else f"the {what} name {name} is longer than {MAX_IDENT} characters: the table "
            "and column names are too long for this pattern"
        )
    return name


def index_name(table: str, columns: list[str], suffix: str) -> str:
    """The default name of an index on *columns* (which may carry ASC/DESC)."""
    return "_".join([table, *(c.split()[0] for c in columns), suffix])


def sql_type(value: str, what: str) -> str:
    """*value* as one of the allow-listed types, spaces normalised."""
    text = " ".join(value.lower().split())
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    if not _TYPE.fullmatch(text):
        raise TemplateError(
            f"{what} {value!r} is not an accepted type; accepted: {_TYPE_NAMES}"
        )
    return text


def column_type(type_sql: str) -> ColumnType:
    """How the linter sees *type_sql* (canonical names: int8, bool, ...)."""
    state = LintState().after(f"CREATE TABLE {{{{schema}}}}.t (c {type_sql});")
    found = state.columns.get(("t", "c"))
    if found is None:  # pragma: no cover - every allow-listed type parses
        raise TemplateError(f"cannot read the type {type_sql!r}")
    return found


def expression(value: str, what: str) -> str:
    """*value* as a conservative SQL expression over the row's own columns (no statements,
    subqueries, comments, quoted or dotted names)."""
    text = value.strip()
    if not text:
        raise TemplateError(f"{what} is empty")
    if len(text) > 1000:
        raise TemplateError(
            f"{what} is longer than 1000 characters: write this migration by hand"
        )
    for bad in ("--", "/*", "*/"):
        if bad in text:
            raise TemplateError(f"{what} {value!r} contains {bad!r}: comments are not accepted")
    depth = 0
    position = 0
    while position < len(text):
        match = _EXPRESSION_TOKEN.match(text, position)
        if match is None:
            raise TemplateError(
                f"{what} {value!r}: {text[position:position + 12]!r} is not accepted; use "
                "column names, numbers, 'strings', function calls, ::casts, CASE, and + - * / "
                "% || = <> < > <= >= operators (no ; quotes\" dots $ or comments)"
            )
        kind, token = match.lastgroup, match.group()
        if kind == "word" and token.lower() in _STATEMENT_WORDS:
            raise TemplateError(
                f"{what} {value!r} uses {token.upper()}: only an expression over the row's own "
                "columns is accepted (no subqueries or statements)"
            )
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"{what} {value!r} has an unbalanced ')'")
        position = match.end()
    if depth:
        raise TemplateError(f"{what} {value!r} has an unbalanced '('")
    return text


def enum_value(value: str) -> str:
    """*value* as an enum label that needs no escaping beyond doubling quotes."""
    if not _ENUM_VALUE.fullmatch(value) or len(value.encode()) > MAX_IDENT:
        raise TemplateError(
            f"enum value {value!r} is not accepted: use letters, digits, _ . - and inner spaces, "
            f"at most {MAX_IDENT} bytes"
        )
    return value


def flag(value: str, what: str) -> bool:
    """*value* as a yes/no answer."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TemplateError(f"{what} must be true or false, not {value!r}")


def positive(value: str, what: str, maximum: int) -> int:
    """*value* as a whole number from 1 to *maximum*."""
    text = value.strip()
    # isdigit() also accepts digits such as '²' that int() refuses: both must agree.
    number = int(text) if text.isdigit() and text.isascii() else 0
    if not 1 <= number <= maximum:
        raise TemplateError(
            f"{what} must be a whole number from 1 to {maximum}, not {value!r}"
        )
    return number


def duration(value: str) -> str:
    """*value* as a lock timeout PostgreSQL and the header directive both accept."""
    text = value.strip()
    if not re.fullmatch(r"\d+(?:\.\d+)?(?:ms|s|min|m|h)?", text):
        raise TemplateError(
            f"lock_timeout {value!r} is not a duration (use e.g. 250ms, 5s, 1min)"
        )
    try:
        parse_duration_ms(text)
    except ValueError as exc:
        raise TemplateError(str(exc)) from None
    return text


def columns(value: str, *, directions: bool) -> list[str]:
    """Comma separated column names, each optionally followed by ASC or DESC when
    *directions*."""
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise TemplateError(f"columns {value!r}: give comma separated column names")
    result = []
    for item in items:
        words = item.split()
        name = ident(words[0], "column")
        if len(words) == 2 and directions and words[1].lower() in ("asc", "desc"):
            result.append(f"{name} {words[1].upper()}")
        elif len(words) == 1:
            result.append(name)
        else:
            allowed = " (optionally followed by asc or desc)" if directions else ""
            raise TemplateError(f"columns: {item!r} is not a column name{allowed}")
    return result


def slugify(description: str) -> str:
    """The description as a file-name part: lower case ASCII words joined by ``_``
    (accents dropped: ``Ünïcode name`` gives ``unicode_name``)."""
    ascii_text = unicodedata.normalize("NFKD", description).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    slug = slug[:60].rstrip("_")
    if not slug:
        raise TemplateError(
            f"description {description!r} has no letter or digit to name the file with"
        )
    return slug

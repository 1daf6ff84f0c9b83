"""Other tools' folder layouts, read as they are: golang-migrate, dbmate and diesel.

:func:`detect` says which layout a folder uses (one folder holds one layout). For the
other tools' layouts, :func:`read` finds which file (or which section of a file) is each
version's up and undo, with the version and the order that tool gives them; the SQL in
them is then checked by :mod:`tenantmig.source` exactly as our own files are.

- golang-migrate: ``<n>_<title>.up.sql`` and ``<n>_<title>.down.sql``; the version is the
  unsigned integer *n*, ordered numerically; a file that is one statement PostgreSQL
  refuses in a transaction (``CREATE INDEX CONCURRENTLY``) runs without one, as there.
- dbmate: ``<n><anything>.sql``, one file with ``-- migrate:up`` and ``-- migrate:down``
  sections; the version is the leading digits, ordered by file name.
- diesel: ``<version>_<name>/up.sql`` (and ``down.sql``, ``metadata.toml``); the version is
  the part before the first ``_`` without its dashes, ordered as text.

Where a tool orders by text and our integer versions would order differently, loading
refuses rather than silently reordering.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import Problem
from ._sqlscan import refused_in_transaction

OURS, GOLANG_MIGRATE, DBMATE, DIESEL = "tenantmig", "golang-migrate", "dbmate", "diesel"

_OURS = re.compile(r"^[VU]\d+__.+\.(sql|py)$")
# golang-migrate's own pattern (source/parse.go); we then require the .sql extension.
_GOLANG = re.compile(r"^(?P<version>[0-9]+)_(?P<title>.*)\.(?P<direction>down|up)\.(?P<ext>.*)$")
# dbmate's own pattern (migrationFileRegexp): the leading digits are the version.
_DBMATE = re.compile(r"^(?P<version>\d+)(?P<name>.*)\.sql$")
_DBMATE_MARKER = re.compile(r"^--\s*migrate:(?P<section>up|down)(?P<options>\s.*)?$")
_DIESEL = re.compile(r"^(?P<version>[^_]*)(?:_(?P<name>.*))?$")

BIGINT_MAX = 2**63 - 1
"""The largest version the history's ``bigint`` column holds."""


@dataclass(frozen=True)
class Part:
    """The text one step (up or undo) is loaded from."""

    path: Path
    data: bytes
    """For a dbmate section: the file with everything outside the section blanked out, so
    that line numbers in problems and lint findings are the file's own."""
    transactional: bool = True
    """As the tool itself says (dbmate ``transaction:false``, diesel ``metadata.toml``)."""


@dataclass(frozen=True)
class Found:
    """One version of another tool's folder."""

    version: int
    description: str
    checksummed: bytes
    """The bytes the migration's checksum is of: the up file (dbmate: the whole file)."""
    up: Part
    down: Part | None
    order: str
    """What the tool sorts by: the version as text (diesel), the file name (dbmate)."""


def entries(root: Path) -> list[Path]:
    """The folder's entries that can be migrations (not hidden, not ``_private``)."""
    return [p for p in sorted(root.iterdir())
            if not p.name.startswith((".", "_")) and p.name != "README.md"]


def _kind(path: Path) -> str | None:
    if path.is_dir():
        return DIESEL if (path / "up.sql").is_file() else None
    for layout, pattern in ((OURS, _OURS), (GOLANG_MIGRATE, _GOLANG), (DBMATE, _DBMATE)):
        if pattern.match(path.name):
            return layout
    return None


def detect(paths: Sequence[Path], problems: list[Problem]) -> tuple[str, list[Path]]:
    """The layout of a folder with these entries (ours when nothing tells), and the entries
    to read with it; an entry of another layout is a problem (one folder, one layout)."""
    kinds = {path: _kind(path) for path in paths}
    counts = Counter(kind for kind in kinds.values() if kind is not None)
    if not counts:
        return OURS, list(paths)
    layout = max(counts, key=lambda kind: (counts[kind], kind == OURS))
    example = next(p.name for p, kind in kinds.items() if kind == layout)
    for path, kind in kinds.items():
        if kind is not None and kind != layout:
            problems.append(Problem(
                str(path), 0,
                f"bad file name: a {kind} name in a folder of {layout} migrations (such as "
                f"{example}); one folder holds one layout"))
    return layout, [path for path, kind in kinds.items() if kind in (layout, None)]


def sql_files(layout: str, paths: Sequence[Path]) -> list[Path]:
    """The SQL files among *paths* of a folder in another tool's *layout*, by name only."""
    if layout == DIESEL:
        return [path / name for path in paths if path.is_dir()
                for name in ("up.sql", "down.sql") if (path / name).is_file()]
    if layout == GOLANG_MIGRATE:
        return [path for path in paths if path.is_file()
                and (match := _GOLANG.match(path.name)) is not None and match["ext"] == "sql"]
    return [path for path in paths if path.is_file() and _DBMATE.match(path.name)]


def read_bytes(path: Path, problems: list[Problem]) -> bytes | None:
    """The file's bytes, or None with a problem when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(Problem(str(path), 0, f"cannot read file: {exc.strerror or exc}"))
        return None


def read(layout: str, paths: Sequence[Path], problems: list[Problem]) -> list[Found]:
    """Every version of a folder in another tool's *layout*, in that tool's order."""
    readers: dict[str, Callable[[Sequence[Path], list[Problem]], list[Found]]] = {
        GOLANG_MIGRATE: _golang_migrate, DBMATE: _dbmate, DIESEL: _diesel}
    found = readers[layout](paths, problems)
    return _in_order(layout, found, problems)


def _description(name: str) -> str:
    return name.strip("_").replace("_", " ")


def _version(path: Path, digits: str, problems: list[Problem]) -> int | None:
    version = int(digits)
    if version > BIGINT_MAX:
        problems.append(Problem(str(path), 0, f"version {digits} is larger than {BIGINT_MAX}, "
                                "the largest the history can record"))
        return None
    return version


def _bad_name(path: Path, layout: str, expected: str, problems: list[Problem]) -> None:
    problems.append(Problem(str(path), 0, f"bad name for a {layout} folder: expected {expected}"))


def _golang_migrate(paths: Sequence[Path], problems: list[Problem]) -> list[Found]:
    expected = "<digits>_<title>.up.sql or <digits>_<title>.down.sql"
    files: dict[tuple[int, str], tuple[Path, str]] = {}
    for path in paths:
        match = _GOLANG.match(path.name)
        if path.is_dir():
            continue
        if match is None and path.suffix != ".sql":
            # As golang-migrate: a file it cannot parse is not a migration (the Go file that
            # embeds the folder, a README); only an SQL file with a bad name is refused.
            continue
        if match is None or match["ext"] != "sql":
            _bad_name(path, GOLANG_MIGRATE, expected, problems)
            continue
        version = _version(path, match["version"], problems)
        if version is None:
            continue
        key = (version, match["direction"])
        if key in files:
            problems.append(Problem(str(path), 0, f"duplicate version {version} "
                                    f"(also {files[key][0].name})"))
            continue
        files[key] = (path, match["title"])
    found = []
    for (version, direction), (path, title) in sorted(files.items()):
        if direction == "down":
            if (version, "up") not in files:
                problems.append(Problem(str(path), 0, f"down of version {version} has no up file"))
            continue
        data = read_bytes(path, problems)
        down_path = files.get((version, "down"), (None, ""))[0]
        down_data = read_bytes(down_path, problems) if down_path is not None else None
        if data is None or (down_path is not None and down_data is None):
            continue
        down = Part(down_path, down_data, _golang_transactional(down_data)) \
            if down_path is not None and down_data is not None else None
        found.append(Found(version, _description(title), data,
                           Part(path, data, _golang_transactional(data)), down,
                           order=f"{version:020d}"))
    return found


def _golang_transactional(data: bytes) -> bool:
    """golang-migrate sends a file as one query: PostgreSQL runs a file of several
    statements in one implicit transaction, a single ``CREATE INDEX CONCURRENTLY`` (and the
    like) outside any, which is how it must run here too."""
    try:
        return not refused_in_transaction(data.decode("utf-8"))
    except UnicodeDecodeError:  # reported, with its line, when the step is loaded
        return True


def _dbmate(paths: Sequence[Path], problems: list[Problem]) -> list[Found]:
    found = []
    for path in paths:
        match = _DBMATE.match(path.name)
        if path.is_dir():
            continue
        if match is None:
            _bad_name(path, DBMATE, "<digits>_<name>.sql", problems)
            continue
        version = _version(path, match["version"], problems)
        data = read_bytes(path, problems)
        if version is None or data is None:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_line = data[: exc.start].count(b"\n") + 1
            problems.append(Problem(str(path), bad_line, "file is not UTF-8"))
            continue
        sections = _dbmate_sections(path, text, problems)
        if sections is not None:
            up, down = sections
            found.append(Found(version, _description(match["name"]), data, up, down,
                               order=path.name))
    return found


def _dbmate_sections(path: Path, text: str, problems: list[Problem]) -> tuple[Part, Part] | None:
    """The up and down sections as dbmate reads them: up first, then down, both required,
    nothing but comments before the up."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    markers: dict[str, list[int]] = {"up": [], "down": []}
    transactional = {"up": True, "down": True}
    before = len(problems)
    statements_before: list[Problem] = []
    for index, line in enumerate(lines):
        match = _DBMATE_MARKER.match(line.rstrip())
        if match is None:
            if not markers["up"] and not markers["down"] and line.strip() \
                    and not line.lstrip().startswith("--"):
                statements_before.append(Problem(
                    str(path), index + 1, "statement before '-- migrate:up' (dbmate refuses it)"))
            continue
        section = match["section"]
        markers[section].append(index)
        for option in (match["options"] or "").split():
            if option in ("transaction:false", "transaction:true"):
                transactional[section] = option == "transaction:true"
            else:
                problems.append(Problem(str(path), index + 1, f"unknown dbmate option "
                                        f"{option!r}; known: transaction:false"))
    missing = [f"no '-- migrate:{section}'" for section in ("up", "down") if not markers[section]]
    if missing:
        problems.append(Problem(str(path), 0, " and ".join(missing) + " section: dbmate "
                                "requires both (an empty down means nothing to undo)"))
        return None
    problems.extend(statements_before)
    for section in ("up", "down"):
        for extra in markers[section][1:]:
            problems.append(Problem(str(path), extra + 1,
                                    f"a second '-- migrate:{section}' section"))
    if len(problems) > before:
        return None
    up_at, down_at = markers["up"][0], markers["down"][0]
    if down_at < up_at:
        problems.append(Problem(str(path), down_at + 1,
                                "'-- migrate:down' before '-- migrate:up' (dbmate refuses it)"))
        return None
    up = "\n".join(lines[:down_at]) + "\n"
    down = "\n" * down_at + "\n".join(lines[down_at:])
    return (Part(path, up.encode("utf-8"), transactional["up"]),
            Part(path, down.encode("utf-8"), transactional["down"]))


def _diesel(paths: Sequence[Path], problems: list[Problem]) -> list[Found]:
    found = []
    for path in paths:
        if not path.is_dir():
            _bad_name(path, DIESEL, "one directory <version>_<name> per version", problems)
            continue
        match = _DIESEL.match(path.name)
        digits = match["version"].replace("-", "") if match else ""
        if match is None or not digits.isdigit() or not digits.isascii():
            _bad_name(path, DIESEL, "<version>_<name>, the version digits and dashes "
                      "(such as 2017-12-30-151035_create_users)", problems)
            continue
        up_path = path / "up.sql"
        if not up_path.is_file():
            problems.append(Problem(str(path), 0, "no up.sql in this diesel migration"))
            continue
        version = _version(path, digits, problems)
        data = read_bytes(up_path, problems)
        down_path = path / "down.sql"
        down_data = read_bytes(down_path, problems) if down_path.is_file() else None
        transactional = _diesel_metadata(path / "metadata.toml", problems)
        if version is None or data is None or transactional is None \
                or (down_path.is_file() and down_data is None):
            continue
        down = Part(down_path, down_data, transactional) if down_data is not None else None
        found.append(Found(version, _description(match["name"] or ""), data,
                           Part(up_path, data, transactional), down, order=digits))
    return found


def _diesel_metadata(path: Path, problems: list[Problem]) -> bool | None:
    """``run_in_transaction`` from ``metadata.toml`` (True without the file or the key)."""
    if not path.is_file():
        return True
    data = read_bytes(path, problems)
    if data is None:
        return None
    try:
        metadata = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        problems.append(Problem(str(path), 0, f"not valid TOML: {exc}"))
        return None
    value = metadata.get("run_in_transaction", True)
    if not isinstance(value, bool):
        problems.append(Problem(str(path), 0, "run_in_transaction must be true or false"))
        return None
    return value


def _in_order(layout: str, found: list[Found], problems: list[Problem]) -> list[Found]:
    """*found* in the tool's order; a duplicate integer version, or an order our integer
    versions would not keep, is a problem naming both files."""
    ordered = sorted(found, key=lambda f: f.order)
    by_version: dict[int, Found] = {}
    for item in ordered:
        other = by_version.setdefault(item.version, item)
        if other is not item:
            problems.append(Problem(str(item.up.path), 0, f"duplicate version {item.version} "
                                    f"(also {_shown(other)})"))
    for first, second in itertools.pairwise(ordered):
        if first.version > second.version:
            problems.append(Problem(
                str(second.up.path), 0,
                f"{layout} runs {_shown(first)} before {_shown(second)} (it orders "
                f"{'file names' if layout == DBMATE else 'versions'} as text) but version "
                f"{first.version} > {second.version}: write the versions with the same "
                "number of digits"))
    return ordered


def _shown(item: Found) -> str:
    """The name a user knows a migration by: its file (diesel: its directory)."""
    return item.up.path.parent.name if item.up.path.name == "up.sql" else item.up.path.name

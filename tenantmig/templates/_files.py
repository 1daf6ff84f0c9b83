"""The only part of the templates that touches the disk: version numbering, writing the files,
and reading what the folder's migrations establish."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .._exceptions import TemplateError, TenantmigError
from ..lint import LintState
from ..source import Kind, load_migrations

_FILE = re.compile(r"^(?P<kind>[VU])(?P<version>\d+)__.+\.(?:sql|py)$")


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
            raise TemplateError(f"{name} is not a migration file name")
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

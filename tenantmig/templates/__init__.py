"""Safe-pattern templates for ``tenantmig new``: the migration files of a multi-step change.

:data:`PATTERNS` names each pattern, says what it does and which parameters it takes.
:func:`render` turns a pattern, a description and parameters into ``(filename, text)`` pairs,
numbered from a first version: ``V<n>__<slug>_<step>.sql`` (or ``.py`` for a backfill or a
copy), and ``U<n>__<slug>_<step>.sql`` where an undo is safe. Without a pattern it gives one
empty ``V<n>__<slug>.sql`` with a commented header. :func:`next_version` and :func:`write`
are the only functions that touch the disk (:func:`create` chains them). Every refusal is a
:class:`TemplateError` with a message for the user.

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
that rename or drop on purpose carry ``-- tenantmig:allow`` lines with their reasons. Each
file names the page of the documentation that explains its pattern, ``docs/patterns/NAME.md``.

Layout: one module per pattern in :mod:`tenantmig.templates.patterns`; the parameter checks in
``_checks``, the file text in ``_text``, the disk in ``_files``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from .._exceptions import TemplateError
from ..lint import LintState
from ._checks import slugify
from ._files import folder_state, next_version, write
from ._pattern import Args, Param, Pattern
from ._text import blank
from .patterns import ALL

__all__ = [
    "PATTERNS",
    "Param",
    "Pattern",
    "TemplateError",
    "create",
    "folder_state",
    "next_version",
    "render",
    "slugify",
    "write",
]

PATTERNS: dict[str, Pattern] = {p.name: p for p in ALL}
"""Pattern name -> :class:`Pattern`."""


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
    fixes the months of partition-table (default: today, UTC). Raises
    :class:`TemplateError` with a message for the user on an unknown pattern or a bad
    parameter.
    """
    if first_version < 1:
        raise TemplateError("versions start at 1")
    slug = slugify(description)
    summary = " ".join(description.split())
    if "{{" in summary or "}}" in summary:
        raise TemplateError("the description must not contain {{ or }}")
    if summary.lower().startswith("tenantmig:"):
        raise TemplateError("the description must not start with tenantmig: (a directive)")
    if pattern is None:
        if params:
            raise TemplateError(
                f"parameters ({', '.join(sorted(params))}) need --pattern; see --list-patterns"
            )
        return [(f"V{first_version}__{slug}.sql", blank(summary))]
    if pattern not in PATTERNS:
        raise TemplateError(
            f"unknown pattern {pattern!r}; known: {', '.join(sorted(PATTERNS))}"
        )
    spec = PATTERNS[pattern]
    args = Args(spec, params, description=summary, earlier=earlier,
                today=today or datetime.now(UTC).date())
    files: list[tuple[str, str]] = []
    for offset, step in enumerate(spec.build(args)):
        version = first_version + offset
        files.append((f"V{version}__{slug}_{step.suffix}.{step.ext}", step.text))
        if step.undo is not None:
            files.append((f"U{version}__{slug}_{step.suffix}.sql", step.undo))
    return files


def create(
    directory: str | Path,
    pattern: str | None,
    description: str,
    params: Mapping[str, str],
    *,
    today: date | None = None,
) -> list[Path]:
    """Render *pattern* at the folder's next version and write it; return the paths."""
    spec = PATTERNS.get(pattern) if pattern is not None else None
    earlier = folder_state(directory) if spec is not None and spec.reads_folder else None
    files = render(
        pattern, description, params, next_version(directory), earlier=earlier, today=today
    )
    return write(directory, files)

"""``tenantmig lint --explain RULE-ID``: a rule's page, on the terminal.

The pages are ``docs/rules/<id>.md`` in the repository. A source checkout or an editable
install (how the README and CI install tenantmig) has them next to the package; a wheel does
not ship ``docs/``, and then the registry's summary is all there is to print, with where the
full page lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from rich.console import Console

from .._exceptions import ConfigError
from ..lint import RULES, Rule

LOAD = Rule(
    id="load",
    summary="a migration file cannot be loaded (its name, encoding, header directives, "
    "placeholders or allow comments): nothing runs until it is fixed",
    severity="error",
    family="load",
)
"""What a load problem is reported as, beside the lint findings. It is no lint rule (it has
no page in ``docs/rules/`` and no ``tenantmig:allow`` accepts it): what a file must look
like is on the migration files page."""

KNOWN: Mapping[str, Rule] = MappingProxyType({**RULES, LOAD.id: LOAD})
"""Every id a finding of ``tenantmig lint`` can carry."""

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
"""The repository's docs folder, when tenantmig runs from a checkout."""



def page(rule_id: str, docs: Path | None = None) -> Path | None:
    """The Markdown page of rule *rule_id*, or None when no docs folder is at hand."""
    found = (docs or DOCS) / "rules" / f"{rule_id}.md"
    return found if found.is_file() else None


def explain(out: Console, rule_id: str, docs: Path | None = None) -> int:
    """Print *rule_id*'s page (rendered Markdown), or its summary and where the page is when
    the docs are not installed; an unknown id is a usage error naming the known ones."""
    rule = KNOWN.get(rule_id)
    if rule is None:
        raise ConfigError(f"unknown rule id {rule_id!r}; known: " + ", ".join(sorted(KNOWN)))
    found = None if rule_id == LOAD.id else page(rule_id, docs)
    if found is None:
        out.print(f"{rule.id} ({rule.severity}): {rule.summary}", markup=False)
        where = ("docs/migration-files.md" if rule_id == LOAD.id
                 else f"docs/rules/{rule_id}.md")
        out.print(f"More: {where} in the tenantmig repository.", markup=False)
        return 0
    from rich.markdown import Markdown  # only --explain renders Markdown

    out.print(Markdown(found.read_text(encoding="utf-8")))
    return 0

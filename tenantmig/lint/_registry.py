"""Every rule, collected from the modules that report them: the one list of rules.

A rule is declared next to its handler (``family.rule(...)`` in a family module); this module
only gathers the families, in the order the walker runs them, and the two rules the machinery
itself reports (``unparsable``, ``unused-allow``). Each rule has its page at
``docs/rules/<id>.md``; ``tests/test_rule_docs.py`` keeps the pages and this list equal.

Only SQL files (``V`` and ``U``) are linted: Python migrations are code, not checked (their
``ctx.execute`` SQL is the author's responsibility).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import (
    _columns,
    _compat,
    _constraints,
    _domains,
    _identifiers,
    _indexes,
    _maintenance,
    _retry_safety,
    _schemas,
    _shared,
    _transactions,
)
from ._allows import UNUSED_ALLOW
from ._common import Rule
from ._walker import UNPARSABLE, Family

FAMILIES: tuple[Family, ...] = (
    _indexes.family,
    _constraints.family,
    _columns.family,
    _compat.family,
    _transactions.family,
    _schemas.family,
    _maintenance.family,
    _domains.family,
    _retry_safety.family,
    _shared.family,
    _identifiers.family,
)
"""The rule families, in the order their handlers see each statement."""


def _collect() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for rule in [r for f in FAMILIES for r in f.rules] + [UNPARSABLE, UNUSED_ALLOW]:
        if rule.id in rules:  # pragma: no cover - a programming error, caught by any test
            raise AssertionError(f"rule {rule.id!r} is declared twice")
        rules[rule.id] = rule
    return rules


RULES: Mapping[str, Rule] = MappingProxyType(_collect())
"""Rule id -> :class:`Rule` (summary, severity, family), read-only."""

"""Static safety checks of migration files: no database, PostgreSQL's own parser (pglast).

Each SQL file (``V`` and ``U`` alike) is rendered with ``{{schema}}`` replaced by a quoted
identifier of the same length, parsed, and its statements walked in order. Rules catch what
locks or rewrites a busy table, what breaks running code, and what escapes the tenant's own
schema; each message says what is dangerous and the safe pattern, and each rule has its page
at ``docs/rules/<rule-id>.md``.
Rules that depend on earlier migrations (a CHECK validated before ``SET NOT NULL``, a column's
type before ``ALTER COLUMN TYPE``) use the facts the earlier files established
(:class:`LintState`). Python migrations are not linted. Given the tenants' catalog
(:func:`read_catalog`, one query per database), the tables no migration created are known
too, as the worst tenant holds them.

The rules are grouped by family, one module each (``_indexes``, ``_constraints``,
``_columns``, ``_compat``, ``_transactions``, ``_schemas``, ``_maintenance``, ``_domains``,
``_retry_safety``, ``_shared``, ``_identifiers``), each declaring its rules and
registering its handlers with the walker (``_walker``), which makes one pass over the
statements and collects the facts they share (``_facts``); ``_registry`` gathers the rules,
``_run`` composes the whole. Adding a rule: its declaration and handler in the family module,
a dangerous/safe pair in ``tests/test_lint.py`` (details in ``tests/test_lint_<family>.py``),
and its page in ``docs/rules/`` (``tests/test_rule_docs.py`` checks the last two).

Every finding is reported at its statement's first line. A finding is accepted on purpose with
``-- tenantmig:allow RULE-ID reason``: on a line before a statement, or inside it, it covers
that statement (never the next one); in the header (before the first statement) it covers the
whole file. Accepted findings keep their reason in :attr:`Finding.allowed` and do not block.
"""

from __future__ import annotations

from ._catalog import Catalog, read_catalog
from ._common import SENTINEL, Finding, Rule, Severity
from ._fix import fix_qualifiers
from ._registry import RULES
from ._run import HISTORY_REASON, LintState, accept_history, blocking, lint_migrations, lint_sql
from ._shared import TENANT_ONLY
from ._state import ColumnType, coercion

__all__ = [
    "HISTORY_REASON",
    "RULES",
    "SENTINEL",
    "TENANT_ONLY",
    "Catalog",
    "ColumnType",
    "Finding",
    "LintState",
    "Rule",
    "Severity",
    "accept_history",
    "blocking",
    "coercion",
    "fix_qualifiers",
    "lint_migrations",
    "lint_sql",
    "read_catalog",
]

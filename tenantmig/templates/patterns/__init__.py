"""The patterns of ``tenantmig new``, one module each.

Each module defines ``PATTERN``, a :class:`~tenantmig.templates.Pattern` holding the name, the
one-line summary, the parameters and the builder of the files. The module is named after the
pattern (``widen_column`` for ``widen-column``) and explained by its page
``docs/patterns/<name>.md``.

To add a pattern: a module here, its name in :data:`_MODULES`, a case in
``tests/test_templates.py`` (``CASES``, which also applies it under load) and its page in
``docs/patterns/`` listed in ``docs/patterns/index.md``.
"""

from __future__ import annotations

import importlib

from .._pattern import Pattern

_MODULES = (
    "widen_column",
    "change_column_type",
    "add_not_null",
    "concurrent_index",
    "unique_constraint",
    "foreign_key",
    "enum_value",
    "backfill",
    "partition_table",
)


def _load(module_name: str) -> Pattern:
    module = importlib.import_module(f"{__name__}.{module_name}")
    pattern = module.PATTERN
    if not isinstance(pattern, Pattern) or pattern.name != module_name.replace("_", "-"):
        raise ImportError(f"{module.__name__}.PATTERN is not the Pattern named after it")
    return pattern


ALL: tuple[Pattern, ...] = tuple(_load(name) for name in _MODULES)
"""Every pattern, in the order of :data:`_MODULES`."""

"""tenantmig: PostgreSQL schema migrations for thousands of tenant schemas at once.

The public names below are imported on first use (PEP 562), so ``import tenantmig`` and
the command line's start-up stay cheap: an application that only needs
``tenantmig.provision`` does not pay for the linter, and ``tenantmig --help`` does not
load the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exceptions import (
        BaselineError,
        ConfigError,
        DatabaseUnavailable,
        DriftError,
        LintError,
        LoadError,
        TargetError,
        TenantmigError,
    )
    from .context import MigrationContext
    from .engine import Engine, provision
    from .fleet import Fleet
    from .options import Options
    from .outcome import TenantOutcome
    from .plan import Plan, TenantPlan
    from .report import Report, Status, TenantStatus
    from .source import Migration, MigrationSet, load_migrations

_WHERE = {
    "ConfigError": "._exceptions",
    "DatabaseUnavailable": "._exceptions",
    "DriftError": "._exceptions",
    "LintError": "._exceptions",
    "LoadError": "._exceptions",
    "TargetError": "._exceptions",
    "TenantmigError": "._exceptions",
    "BaselineError": "._exceptions",
    "MigrationContext": ".context",
    "Engine": ".engine",
    "provision": ".engine",
    "Fleet": ".fleet",
    "Options": ".options",
    "TenantOutcome": ".outcome",
    "Plan": ".plan",
    "TenantPlan": ".plan",
    "Report": ".report",
    "Status": ".report",
    "TenantStatus": ".report",
    "Migration": ".source",
    "MigrationSet": ".source",
    "load_migrations": ".source",
}

__all__ = [
    "BaselineError",
    "ConfigError",
    "DatabaseUnavailable",
    "DriftError",
    "Engine",
    "Fleet",
    "LintError",
    "LoadError",
    "Migration",
    "MigrationContext",
    "MigrationSet",
    "Options",
    "Plan",
    "Report",
    "Status",
    "TargetError",
    "TenantOutcome",
    "TenantPlan",
    "TenantStatus",
    "TenantmigError",
    "load_migrations",
    "provision",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

"""tenantmig: PostgreSQL schema migrations for thousands of tenant schemas at once."""

from ._exceptions import (
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
from .executor import TenantOutcome
from .plan import Plan, TenantPlan
from .report import Report, Status, TenantStatus
from .source import Migration, MigrationSet, load_migrations

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "DriftError",
    "Engine",
    "LintError",
    "LoadError",
    "Migration",
    "MigrationContext",
    "MigrationSet",
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

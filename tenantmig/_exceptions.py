"""Errors raised by tenantmig.

TenantmigError                  root: the CLI prints its message, never a traceback
├── ConfigError                 bad option, config file or DSN (exit 2)
├── LoadError                   migration files rejected before any connection (exit 2)
├── TargetError                 a named tenant or version that does not exist (exit 2)
├── DriftError                  an applied migration whose file changed (exit 2)
├── LintError                   a migration fails a safety check (exit 2)
├── BaselineError               a tenant's history contradicts a baseline (exit 2)
├── DatabaseUnavailable         the database cannot be reached (exit 2)
└── TemplateError               tenantmig new: unknown pattern or refused parameter (exit 2);
                                also a ValueError

Failures of single tenants are not exceptions: they are outcomes in the report and
the ledger, so the other tenants go on.
"""

from __future__ import annotations

from dataclasses import dataclass


class TenantmigError(Exception):
    """Root of every error tenantmig raises on purpose."""


class ConfigError(TenantmigError):
    """A command-line option, configuration file or DSN is unusable."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one migration file."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class LoadError(TenantmigError):
    """Migration files were rejected; nothing was touched."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TargetError(TenantmigError):
    """A tenant, run or version named by the user does not exist."""


class DriftError(TenantmigError):
    """Applied migrations differ from the files on disk."""

    def __init__(self, message: str, drifted: dict[int, list[str]]) -> None:
        self.drifted = drifted
        super().__init__(message)


class LintError(TenantmigError):
    """Migrations failed safety checks that no ``tenantmig:allow`` accepts."""

    def __init__(self, findings: list[object]) -> None:
        self.findings = findings
        lines = [str(f) for f in findings]
        super().__init__(
            "unsafe migration(s), nothing touched (accept a finding on purpose with "
            "'-- tenantmig:allow RULE-ID reason' above the statement):\n" + "\n".join(lines)
        )


class DatabaseUnavailable(TenantmigError):
    """The database could not be reached or refused us."""


class BaselineError(TenantmigError):
    """``baseline`` refused: a targeted tenant's history already says otherwise."""

    def __init__(self, message: str, problems: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.problems = problems
        """tenant -> what in its history contradicts the baseline."""


class TemplateError(TenantmigError, ValueError):
    """``tenantmig new`` cannot write a pattern: an unknown pattern, a refused parameter or a
    description that cannot name a file. Nothing was written.

    Also a :class:`ValueError`, which the templates raised before they had an error of their
    own: code that catches ValueError around them keeps working.
    """

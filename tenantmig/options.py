"""Options: how tenantmig runs, every default written once and every value checked once.

The config file, the command line, :class:`~tenantmig.Engine` and
:func:`~tenantmig.provision` all build an :class:`Options` (the first two through
:func:`Options.from_settings`, from what the user wrote; the Python API from keyword
arguments), so a value one of them refuses is refused by all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict

from ._exceptions import ConfigError
from .discovery import check_control_schema
from .durations import parse_duration_ms

MAX_TIMEOUT_MS = 2**31 - 1
"""PostgreSQL's largest ``lock_timeout`` / ``statement_timeout``, in milliseconds."""


class Settings(TypedDict, total=False):
    """The keyword arguments :class:`~tenantmig.Engine` and :func:`~tenantmig.provision`
    take for :class:`Options` (the same names as the config file's keys)."""

    prefix: str
    control_schema: str
    concurrency: int
    lock_timeout: str | float | None
    retries: int
    max_failures: int | None
    atomic_tenant: bool
    shared_schemas: Sequence[str]
    shared_target: str
    pgbouncer: bool
    lint: bool
    lint_after: int | None
    ledger_retention: str | float | None
    retry_wait: tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class Options:
    """What a run needs to know besides the migrations and the database; valid once made."""

    prefix: str = "tenant_"
    """Literal schema-name prefix of the tenants."""
    control_schema: str = "tenantmig"
    """The schema of runs and the ledger."""
    concurrency: int = 8
    """Tenants migrated at once (one connection each)."""
    lock_timeout_ms: int = 5000
    """``lock_timeout`` of every migration; 0 turns it off."""
    retries: int = 3
    """Retries of a transient error, per migration."""
    max_failures: int | None = None
    """Start no new tenant once more than this many have failed."""
    atomic_tenant: bool = False
    """All pending migrations of a tenant in one transaction."""
    shared_schemas: tuple[str, ...] = ()
    """Schemas every tenant may reference (extensions, lookups)."""
    shared_target: str = "public"
    """The schema the shared migrations change."""
    pgbouncer: bool = False
    """The DSN goes through PgBouncer in transaction pooling mode."""
    lint: bool = True
    """Refuse migrations that fail a safety check."""
    lint_after: int | None = None
    """Findings in versions up to this one are shown but never block: the history that
    production already ran (strong_migrations' ``start_after``)."""
    ledger_retention_ms: int | None = None
    """Runs older than this are pruned from the ledger after each run; None keeps all."""
    retry_wait: tuple[float, float] = (0.1, 5.0)
    """First and largest wait between retries, in seconds."""

    def __post_init__(self) -> None:
        _whole("concurrency", self.concurrency, 1)
        _whole("retries", self.retries, 0)
        if self.max_failures is not None:
            _whole("max_failures", self.max_failures, 0)
        if self.lint_after is not None:
            _whole("lint_after", self.lint_after, 0)
        _whole("lock_timeout", self.lock_timeout_ms, 0)
        if self.lock_timeout_ms > MAX_TIMEOUT_MS:
            raise ConfigError(f"lock_timeout: {self.lock_timeout_ms}ms is more than PostgreSQL "
                              "allows (about 24 days); 0 turns the timeout off")
        for name in ("atomic_tenant", "pgbouncer", "lint"):
            _true_or_false(name, getattr(self, name))
        _string("prefix", self.prefix)
        _string("control_schema", self.control_schema)
        _string("shared_target", self.shared_target)
        check_control_schema(self.control_schema)
        if isinstance(self.shared_schemas, str) or not all(
            isinstance(s, str) and s for s in self.shared_schemas
        ):
            raise ConfigError("shared_schemas must be a list of schema names")
        first, largest = self.retry_wait
        if not 0 <= first <= largest:
            raise ConfigError("retry_wait must be (first, largest) seconds with "
                              "0 <= first <= largest")

    def updated(self, settings: Settings | Mapping[str, Any]) -> Options:
        """These options with *settings* (Python values, as :class:`Settings` names them)
        in place of the ones they give."""
        changes: dict[str, Any] = dict(settings)
        if "lock_timeout" in changes:
            changes["lock_timeout_ms"] = lock_timeout_ms(changes.pop("lock_timeout"))
        if "ledger_retention" in changes:
            changes["ledger_retention_ms"] = retention_ms(changes.pop("ledger_retention"))
        if "shared_schemas" in changes and not isinstance(changes["shared_schemas"], str):
            changes["shared_schemas"] = tuple(changes["shared_schemas"])
        if "retry_wait" in changes:
            changes["retry_wait"] = tuple(changes["retry_wait"])
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        return replace(self, **changes)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Options:
        """Options from what a user wrote (the config file's keys, the command line's
        values): the keys it does not give keep their defaults."""
        known = {k: v for k, v in settings.items() if k in FILE_KEYS}
        for name in ("concurrency", "retries", "max_failures", "lint_after"):
            if known.get(name) is not None:
                known[name] = _whole(name, known[name], 0)
        return cls().updated(known)


_FIELDS = frozenset(f.name for f in fields(Options))
_SETTING_KEYS = frozenset(Settings.__annotations__)
FILE_KEYS = _SETTING_KEYS - {"lint", "retry_wait"}
"""The options a config file or the command line may set (turning the safety checks off,
or the retry waits, is for the Python API only)."""


def lock_timeout_ms(value: str | float | None) -> int:
    """A lock timeout as a user gives it (``"5s"``, ``"250ms"``, seconds as a number, or
    None for none) in milliseconds."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"lock_timeout must be a duration such as \"5s\", not {value!r}")
    try:
        ms = parse_duration_ms(value if isinstance(value, str) else f"{float(value):f}s")
    except ValueError as exc:
        raise ConfigError(f"lock_timeout: {exc}") from None
    if ms > MAX_TIMEOUT_MS:
        raise ConfigError(f"lock_timeout: {value} is more than PostgreSQL allows "
                          "(about 24 days); 0 turns the timeout off")
    return ms


def retention_ms(value: str | float | None) -> int | None:
    """How long runs stay in the ledger (``"180d"``, ``"12h"``, seconds), in
    milliseconds; None (or ``0``) keeps them all."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"ledger_retention must be a duration such as \"180d\", not {value!r}")
    try:
        ms = parse_duration_ms(value if isinstance(value, str) else f"{float(value):f}s")
    except ValueError as exc:
        raise ConfigError(f"ledger_retention: {exc}") from None
    return ms or None


def _whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name} must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def _true_or_false(name: str, value: Any) -> None:
    # A TOML string "false" is truthy: only true and false themselves are accepted.
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {value!r}")


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")

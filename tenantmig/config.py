"""Configuration: command-line options over ``TENANTMIG_DSN`` over the config file over
defaults.

The config file is ``tenantmig.toml`` (top-level keys) or ``[tool.tenantmig]`` in
``pyproject.toml``, looked up in the current directory, or named with ``--config``.
``${VAR}`` in a DSN is expanded from the environment, so passwords need not live in
the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError
from .discovery import check_control_schema
from .durations import parse_duration_ms

DSN_ENV = "TENANTMIG_DSN"
_MAX_TIMEOUT_MS = 2**31 - 1  # PostgreSQL's largest lock_timeout / statement_timeout

_KEYS = {
    "dsn",
    "migrations",
    "prefix",
    "control_schema",
    "concurrency",
    "lock_timeout",
    "retries",
    "max_failures",
    "atomic_tenant",
    "log_format",
    "shared_schemas",
    "pgbouncer",
}


@dataclass(frozen=True)
class Config:
    """Everything a command needs besides its own arguments."""

    dsns: tuple[str, ...] = ()
    migrations: Path = Path("migrations")
    prefix: str = "tenant_"
    control_schema: str = "tenantmig"
    concurrency: int = 8
    lock_timeout_ms: int = 5000
    retries: int = 3
    max_failures: int | None = None
    atomic_tenant: bool = False
    log_format: str = "console"
    shared_schemas: tuple[str, ...] = ()
    pgbouncer: bool = False
    source: str = "defaults"
    extra: Mapping[str, Any] = field(default_factory=dict)


def _file_settings(path: Path | None, cwd: Path) -> tuple[dict[str, Any], str]:
    candidates = [path] if path is not None else [cwd / "tenantmig.toml", cwd / "pyproject.toml"]
    for candidate in candidates:
        if candidate is None or not candidate.is_file():
            if path is not None:
                raise ConfigError(f"config file not found: {path}")
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{candidate}: {exc}") from None
        if candidate.name == "pyproject.toml" and path is None:
            section = data.get("tool", {}).get("tenantmig")
            if section is None:
                continue
            data = section
        elif candidate.name == "pyproject.toml":
            data = data.get("tool", {}).get("tenantmig", {})
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{candidate}: unknown setting(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(_KEYS))
            )
        return dict(data), str(candidate)
    return {}, "defaults"


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name} must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def _bool(name: str, value: Any) -> bool:
    # A TOML string "false" is truthy: only true and false themselves are accepted.
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return value


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(dsn: str, env: Mapping[str, str]) -> str:
    """``${NAME}`` from the environment (a DSN in the config file only: one given on the
    command line or in TENANTMIG_DSN was expanded by the shell, if at all, and a ``$`` in
    it is a character of the password)."""
    unset = sorted({m.group(1) for m in _VAR.finditer(dsn) if m.group(1) not in env})
    if unset:
        raise ConfigError(
            "a DSN names an environment variable that is not set: " + ", ".join(unset)
        )
    return _VAR.sub(lambda m: env[m.group(1)], dsn)


def load_config(
    overrides: Mapping[str, Any],
    *,
    config_file: str | Path | None = None,
    cwd: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge *overrides* (command-line values; None means not given) over the
    environment, the config file and the defaults."""
    env = os.environ if environ is None else environ
    here = Path(cwd) if cwd is not None else Path.cwd()
    settings, source = _file_settings(Path(config_file) if config_file else None, here)
    dsn_from_file = "dsn" in settings
    if env.get(DSN_ENV):
        settings["dsn"] = env[DSN_ENV]
        dsn_from_file = False
    for key, value in overrides.items():
        if value is not None and value != [] and value != ():
            settings[key] = value
            dsn_from_file = dsn_from_file and key != "dsn"

    raw_dsn = settings.get("dsn", ())
    # The same database named twice is one database (two runs on it would only wait for
    # each other).
    dsns = (raw_dsn,) if isinstance(raw_dsn, str) else tuple(dict.fromkeys(raw_dsn))
    if not all(isinstance(d, str) and d for d in dsns):
        raise ConfigError("dsn must be a connection string or a list of them")

    lock_timeout = settings.get("lock_timeout", "5s")
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, str | int | float):
        raise ConfigError(f"lock_timeout must be a duration such as \"5s\", not {lock_timeout!r}")
    try:
        lock_timeout_ms = parse_duration_ms(str(lock_timeout))
    except ValueError as exc:
        raise ConfigError(f"lock_timeout: {exc}") from None
    if lock_timeout_ms > _MAX_TIMEOUT_MS:
        raise ConfigError(f"lock_timeout: {lock_timeout} is more than PostgreSQL allows "
                          "(about 24 days); 0 turns the timeout off")

    max_failures = settings.get("max_failures")
    log_format = str(settings.get("log_format", "console"))
    if log_format not in ("console", "json"):
        raise ConfigError("log_format must be console or json")
    migrations = Path(_str("migrations", settings.get("migrations", "migrations")))
    from_file = source != "defaults" and overrides.get("migrations") is None
    if not migrations.is_absolute() and from_file:
        migrations = Path(source).parent / migrations
    shared = settings.get("shared_schemas", ())
    if isinstance(shared, str) or not all(isinstance(s, str) and s for s in shared):
        raise ConfigError("shared_schemas must be a list of schema names")
    control_schema = _str("control_schema", settings.get("control_schema", "tenantmig"))
    prefix = _str("prefix", settings.get("prefix", "tenant_"))
    check_control_schema(control_schema)
    return Config(
        dsns=tuple(_expand(d, env) if dsn_from_file else d for d in dsns),
        migrations=migrations,
        prefix=prefix,
        control_schema=control_schema,
        concurrency=_int("concurrency", settings.get("concurrency", 8), 1),
        lock_timeout_ms=lock_timeout_ms,
        retries=_int("retries", settings.get("retries", 3), 0),
        max_failures=None if max_failures is None else _int("max_failures", max_failures, 0),
        atomic_tenant=_bool("atomic_tenant", settings.get("atomic_tenant", False)),
        log_format=log_format,
        shared_schemas=tuple(shared),
        pgbouncer=_bool("pgbouncer", settings.get("pgbouncer", False)),
        source=source,
    )

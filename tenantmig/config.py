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
from .options import FILE_KEYS, Options

DSN_ENV = "TENANTMIG_DSN"

_KEYS = {"dsn", "migrations", "shared_migrations", "log_format", *FILE_KEYS}


@dataclass(frozen=True)
class Config:
    """Everything a command needs besides its own arguments."""

    dsns: tuple[str, ...] = ()
    migrations: Path = Path("migrations")
    shared_migrations: Path | None = None
    """The shared schema's own migrations, applied once per database before any tenant."""
    log_format: str = "console"
    options: Options = field(default_factory=Options)
    """How runs go: tenants' prefix, concurrency, timeouts, ... (see :class:`Options`)."""
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


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


def _folder(name: str, value: Any, source: str, overrides: Mapping[str, Any]) -> Path:
    """A folder setting; relative to the config file when it comes from one."""
    folder = Path(_str(name, value))
    from_file = source != "defaults" and overrides.get(name) is None
    if not folder.is_absolute() and from_file:
        folder = Path(source).parent / folder
    return folder


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

    log_format = str(settings.get("log_format", "console"))
    if log_format not in ("console", "json"):
        raise ConfigError("log_format must be console or json")
    migrations = _folder("migrations", settings.get("migrations", "migrations"), source,
                         overrides)
    shared = settings.get("shared_migrations")
    shared_migrations = (None if shared is None
                         else _folder("shared_migrations", shared, source, overrides))
    return Config(
        dsns=tuple(_expand(d, env) if dsn_from_file else d for d in dsns),
        migrations=migrations,
        shared_migrations=shared_migrations,
        log_format=log_format,
        options=Options.from_settings(settings),
        source=source,
    )

"""Logging setup: only the command line configures structlog."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from .._sql import scrub
from ._render import visible


class _Stderr:
    """Looks sys.stderr up on every write, so a live progress display can redirect it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _ToStructlog(logging.Handler):
    """Sends the standard-library records of libraries (asyncpg's pool warnings) through
    structlog, so stderr stays one format (JSON lines under --log-format json)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        level = record.levelname.lower()
        method = getattr(logger, level if level in ("debug", "info", "warning") else "error")
        method(record.getMessage(), logger=record.name)


def configure(log_format: str, *, verbosity: int, dsns: list[str]) -> None:
    """structlog to stderr, console or JSON, with DSN passwords scrubbed from every value.

    Console output defaults to warnings and errors (the progress display and the summary
    tell the rest); ``-v`` adds info, ``-vv`` debug. JSON defaults to info.
    """
    base = 1 if log_format == "json" else 0
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(2, base + verbosity)]

    # JSON escapes control characters itself; on the console a tenant named with ESC
    # sequences would otherwise recolour or retitle the terminal.
    shown = (lambda text: text) if log_format == "json" else visible

    def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in list(event.items()):
            if isinstance(value, str):
                event[key] = shown(scrub(value, dsns))
        return event

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    root.setLevel(level)

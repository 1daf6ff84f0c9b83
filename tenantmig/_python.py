"""Python migrations: import a ``V<version>__<name>.py`` module and check its ``up`` and
``down`` coroutines and its module attributes (``transactional``, ``lock_timeout``, ...)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ._exceptions import Problem
from .durations import parse_duration_ms

PythonStep = Callable[[Any], Awaitable[None]]


@dataclass
class Header:
    """How a step runs, from a SQL file's header directives or a module's attributes."""

    transactional: bool = True
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None


def import_module(path: Path, version: int, problems: list[Problem]) -> ModuleType | None:
    """The migration's module, imported afresh under a private name; None on a problem."""
    name = f"tenantmig_migrations.v{version}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        problems.append(Problem(str(path), 0, "cannot import"))
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        problems.append(Problem(str(path), exc.lineno or 0, f"syntax error: {exc.msg}"))
        return None
    except Exception as exc:
        line = _traceback_line(exc, path)
        problems.append(Problem(str(path), line, f"import failed: {type(exc).__name__}: {exc}"))
        return None
    sys.modules.pop(name, None)
    return module


def _traceback_line(exc: BaseException, path: Path) -> int:
    tb = exc.__traceback__
    line = 0
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def python_header(path: Path, module: ModuleType, problems: list[Problem]) -> Header:
    """How the module's steps run, from its ``transactional`` and timeout attributes."""
    header = Header()
    transactional = getattr(module, "transactional", True)
    if not isinstance(transactional, bool):
        problems.append(Problem(str(path), 0, "transactional must be True or False"))
    else:
        header.transactional = transactional
    for attribute in ("lock_timeout", "statement_timeout"):
        value = getattr(module, attribute, None)
        if value is None:
            continue
        try:
            ms = parse_duration_ms(str(value))
        except ValueError as exc:
            problems.append(Problem(str(path), 0, f"{attribute}: {exc}"))
            continue
        setattr(header, f"{attribute}_ms", ms)
    return header


def coroutine(
    path: Path, module: ModuleType, name: str, problems: list[Problem], *, required: bool
) -> PythonStep | None:
    """The module's ``async def <name>(ctx)``; None (with a problem if *required*) without it."""
    fn = getattr(module, name, None)
    if fn is None:
        if required:
            problems.append(Problem(str(path), 0, f"no async def {name}(ctx)"))
        return None
    if not inspect.iscoroutinefunction(fn):
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", 0)
        problems.append(Problem(str(path), line, f"{name} must be 'async def {name}(ctx)'"))
        return None
    step: PythonStep = fn
    return step

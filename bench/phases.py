"""``--phases``: time of each engine phase, measured by wrapping tenantmig's functions.

The one diagnostic here that reaches past the public API: it names modules and functions
inside the package. Anything it does not find (the package is being restructured) is
skipped and listed, never an error, so the rest of the bench does not depend on it.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# (module, attribute path, label, is_async)
TARGETS: tuple[tuple[str, str, str, bool], ...] = (
    ("engine", "load_migrations", "load migrations", False),
    ("engine", "Engine.pool", "pool open", True),
    ("engine", "Engine.close", "pool close", True),
    ("engine", "discover", "discovery", True),
    ("engine", "read_histories", "history read", True),
    ("engine", "make_plan", "plan", False),
    ("control", "ensure_control", "control setup", True),
    ("runs", "start_run", "run start (runs + ledger rows)", True),
    ("runs", "Executor.run", "executor", True),
    ("executor._transaction", "apply_sql", "  in-transaction apply CALLs (summed)", True),
    ("executor._each", "apply", "  apply CALLs, a COMMIT per migration (summed)", True),
    ("ledger", "LedgerWriter.flush", "ledger flushes (background)", True),
    ("runs", "finish_run", "run finish", True),
)


@dataclass
class PhaseTimer:
    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed

    def wrap_sync(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed


def _owner(module: str, path: str) -> tuple[Any, str] | None:
    try:
        owner: Any = importlib.import_module(f"tenantmig.{module}")
    except ImportError:
        return None
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return (owner, name) if getattr(owner, name, None) is not None else None


@contextlib.contextmanager
def phase_timing(timer: PhaseTimer) -> Iterator[None]:
    """Wrap the engine's phases for the duration of the block (tenantmig is not edited)."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for module, path, label, is_async in TARGETS:
            found = _owner(module, path)
            if found is None:
                timer.missing.add(f"tenantmig.{module}.{path}")
                continue
            owner, name = found
            original = getattr(owner, name)
            saved.append((owner, name, original))
            wrapped = timer.wrap(label, original) if is_async else timer.wrap_sync(label, original)
            setattr(owner, name, wrapped)
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)

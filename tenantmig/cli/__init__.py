"""The ``tenantmig`` command line (the parser and the commands live in :mod:`._main`).

Exit codes: 0 all targeted tenants at target; 1 a tenant failed or was left pending;
2 usage, configuration, load or drift error (nothing touched); 130/143 interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line in this process; returns the exit code."""
    from ._main import main as run

    return run(argv)


def console() -> NoReturn:
    """The ``tenantmig`` program (the console script and ``python -m tenantmig``).

    A short command spends most of its time starting up, so the program, unlike
    :func:`main`, also tunes its own process:

    * imports allocate objects that live as long as the process: no cyclic garbage
      collection while importing, then they move to the permanent generation, which
      later collections skip (about 30 ms);
    * structlog is imported without rich's traceback and pretty-printer (see
      :func:`_import_structlog_without_rich_tracebacks`);
    * the process ends without the interpreter's teardown (see :func:`_end`).
    """
    gc.disable()
    try:
        _import_structlog_without_rich_tracebacks()
        from ._main import main as run
    finally:
        gc.freeze()
        gc.enable()
    _end(run(sys.argv[1:]))


def _end(code: int) -> NoReturn:
    """End the process with *code*, without tearing the interpreter down.

    What was registered to run at exit still runs (logging's flush, the stop of a demo's
    cluster, a coverage tool's data), and the standard streams are flushed; what is skipped
    is freeing every module and object one by one, which nothing needs once the command
    is over and which took about 25 ms, as long as all the queries before a run's first
    tenant."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to lose
            stream.flush()
    os._exit(code)


# structlog imports rich's traceback and pretty-printer when rich is installed (with
# pygments, about 10 ms) to format exceptions in its development console. tenantmig never
# shows users a traceback, so the program imports structlog with those two modules hidden
# and structlog falls back to its plain formatter; they import normally afterwards.
_HIDDEN = ("rich.traceback", "rich.pretty")


def _import_structlog_without_rich_tracebacks() -> None:
    if "structlog" in sys.modules or any(name in sys.modules for name in _HIDDEN):
        return
    for name in _HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        for name in _HIDDEN:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]

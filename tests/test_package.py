"""The package as an application and the command line load it: public names, start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tenantmig


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("name", tenantmig.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(tenantmig, name)
    assert getattr(value, "__name__", name) == name
    assert name in dir(tenantmig)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        tenantmig.no_such_thing  # noqa: B018


def test_from_import_of_names_and_submodules() -> None:
    out = _python(
        "from tenantmig import Engine, LoadError, provision, batch, control\n"
        "print(Engine.__module__, LoadError.__module__, provision.__module__,\n"
        "      batch.__name__, control.__name__)"
    )
    assert out == ("tenantmig.engine tenantmig._exceptions tenantmig.engine "
                   "tenantmig.batch tenantmig.control")


def test_importing_the_package_loads_no_engine() -> None:
    """An application importing tenantmig for one name pays for that name only."""
    out = _python(
        "import sys, tenantmig\n"
        "print(sorted(m for m in ('asyncpg', 'pglast', 'structlog', 'tenantmig.engine')\n"
        "             if m in sys.modules))"
    )
    assert out == "[]"


def test_cli_start_up_leaves_rich_whole() -> None:
    """The command line imports structlog without rich's traceback and pretty-printer,
    and then puts them back: they import normally afterwards and structlog logs."""
    out = _python(
        "import sys\n"
        "from tenantmig.cli import console\n"
        "import contextlib, io\n"
        "sys.argv = ['tenantmig', 'ledger', '--help']\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    console()\n"
        "print('rich.traceback' in sys.modules, 'pygments' in sys.modules)\n"
        "import rich.pretty, rich.traceback, structlog\n"
        "print(rich.traceback.Traceback.__name__)\n"
        "structlog.get_logger().info('still logs')\n"
    )
    lines = out.splitlines()
    assert lines[0] == "False False"
    assert lines[1] == "Traceback"
    assert "still logs" in lines[2]


def test_cli_in_an_application_that_loaded_structlog_changes_nothing() -> None:
    out = _python(
        "import sys, structlog, structlog.dev\n"
        "before = structlog.dev.rich\n"
        "from tenantmig.cli import console\n"
        "import contextlib, io\n"
        "sys.argv = ['tenantmig', 'ledger', '--help']\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    console()\n"
        "print(structlog.dev.rich is before and before is not None)\n"
    )
    assert out == "True"

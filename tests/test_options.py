"""One options object: the config file, the command line, Engine and provision refuse the
same values with the same messages, and share one set of defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MakeMigrations

import tenantmig
from tenantmig._exceptions import ConfigError
from tenantmig.config import load_config
from tenantmig.options import Options

FILES = {"V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n"}


def test_defaults_are_written_once() -> None:
    """The config's options and a bare Engine's are the same object's defaults."""
    config = load_config({}, cwd="/nonexistent-dir-for-tenantmig-tests", environ={})
    assert config.options == Options()
    assert Options().lock_timeout_ms == 5000
    assert Options().concurrency == 8


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lock_timeout": "600h"}, "more than PostgreSQL allows"),
        ({"lock_timeout": "soon"}, "not a duration"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"retries": -1}, "retries must be at least 0"),
        ({"max_failures": -2}, "max_failures must be at least 0"),
        ({"control_schema": "public"}, "control"),
        ({"shared_schemas": "extensions"}, "shared_schemas must be a list"),
    ],
)
def test_engine_and_config_refuse_the_same_values(
    make_migrations: MakeMigrations, tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    folder = make_migrations(FILES)
    with pytest.raises(ConfigError, match=message) as from_api:
        tenantmig.Engine("postgresql://127.0.0.1:1/db", migrations=folder,
                         **settings)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message) as from_config:
        load_config(settings, cwd=tmp_path, environ={})
    assert str(from_api.value) == str(from_config.value)


def test_config_file_values_reach_the_engine_unchanged(tmp_path: Path,
                                                       make_migrations: MakeMigrations) -> None:
    (tmp_path / "tenantmig.toml").write_text(
        'lock_timeout = "250ms"\nconcurrency = 3\nprefix = "acct_"\n', encoding="utf-8")
    config = load_config({"retries": 7}, cwd=tmp_path, environ={})
    engine = tenantmig.Engine("postgresql://127.0.0.1:1/db", migrations=make_migrations(FILES),
                              options=config.options, concurrency=5)
    assert engine.settings == Options(lock_timeout_ms=250, concurrency=5, prefix="acct_",
                                      retries=7)
    assert engine.options.lock_timeout_ms == 250  # what the executor gets
    assert engine.options.concurrency == 5


def test_an_unknown_keyword_is_a_type_error(make_migrations: MakeMigrations) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        tenantmig.Engine("postgresql://127.0.0.1:1/db", migrations=make_migrations(FILES),
                         concurency=4)  # type: ignore[call-arg]


async def test_provision_refuses_what_engine_refuses(dsn: str,
                                                     make_migrations: MakeMigrations) -> None:
    folder = make_migrations(FILES)
    with pytest.raises(ConfigError, match="more than PostgreSQL allows"):
        await tenantmig.provision(dsn, "tenant_new", migrations=folder, lock_timeout="600h")
    report = await tenantmig.provision(dsn, "tenant_new", migrations=folder,
                                       options=Options(lock_timeout_ms=2000, retries=0))
    assert report.ok and [o.version_reached for o in report.outcomes] == [1]

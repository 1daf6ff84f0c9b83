"""PostgreSQL's server programs on this machine: where they are, and running them as the
``postgres`` OS user when we are root (the server refuses to run as root)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
ROOT_RUN_AS = "postgres"
CMD_TIMEOUT = 180.0  # seconds, for any single initdb / pg_ctl invocation


class ClusterError(Exception):
    """The local cluster could not be found, created, started or controlled."""


def _has_server_binaries(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts)


def find_bindir() -> Path:
    """Locate the PostgreSQL server binaries (``initdb``, ``pg_ctl``, ``postgres``).

    ``$TENANTMIG_PG_BINDIR`` if set, else ``pg_config --bindir`` if it contains the server
    binaries, else the highest version in ``/usr/lib/postgresql/*/bin``.
    """
    override = os.environ.get("TENANTMIG_PG_BINDIR")
    if override:
        path = Path(override)
        if not _has_server_binaries(path):
            raise ClusterError(
                f"TENANTMIG_PG_BINDIR={override!r} does not contain {', '.join(REQUIRED_BINARIES)}"
            )
        return path

    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            path = Path(out.stdout.strip())
            if _has_server_binaries(path):
                return path

    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(p)]
    if candidates:
        return max(candidates, key=_version_key)

    raise ClusterError(
        "no PostgreSQL server binaries found (initdb, pg_ctl, postgres): set "
        "TENANTMIG_PG_BINDIR, put pg_config on PATH, or install PostgreSQL under "
        "/usr/lib/postgresql/<version>/bin"
    )


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` can reach entries below ``path`` (x permission on every level)."""
    for part in (path, *path.parents):
        try:
            st = part.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True




def run_program(cmd: Sequence[str], *, as_server_user: bool, cwd: Path | None,
                env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run *cmd* (as the ``postgres`` user when *as_server_user*), its output captured."""
    full = ["runuser", "-u", ROOT_RUN_AS, "--", *cmd] if as_server_user else list(cmd)
    try:
        return subprocess.run(
            full,
            capture_output=True,
            text=True,
            check=False,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            timeout=CMD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(
            f"{Path(cmd[0]).name} timed out after {exc.timeout:.0f}s: {' '.join(cmd)}"
        ) from None
    except OSError as exc:
        raise ClusterError(f"could not run {cmd[0]}: {exc}") from None


def make_basedir(uid: int | None, gid: int | None) -> Path:
    """A fresh temporary directory, owned by (and reachable for) *uid*/*gid* if given."""
    parent: str | None = None
    if uid is not None and gid is not None:
        # The postgres user must be able to reach the directory.
        tmp = Path(tempfile.gettempdir())
        if not _traversable_by(tmp, uid, gid):
            if not _traversable_by(Path("/tmp"), uid, gid):
                raise ClusterError(
                    f"temporary directory {tmp} is not accessible to the "
                    f"{ROOT_RUN_AS!r} user; set TMPDIR to a world-searchable directory"
                )
            parent = "/tmp"
    path = Path(tempfile.mkdtemp(prefix="tenantmig-pg-", dir=parent))
    if uid is not None and gid is not None:
        os.chown(path, uid, gid)
    return path


def write_owned(path: Path, text: str, uid: int | None, gid: int | None, *,
                append: bool = False) -> None:
    """Write (or append) *text* to *path*, owned by *uid*/*gid* if given, mode 0600."""
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        fh.write(text)
    if uid is not None and gid is not None:
        os.chown(path, uid, gid)
    path.chmod(0o600)

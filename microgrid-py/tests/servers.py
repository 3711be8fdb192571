"""Database servers of a test's own, on data directories that survive them:
started, SIGKILLed and started again on the same data (the fault-injection
tests, test_faults.py).

The servers' executables come from the tools virtualenv, whose path
scripts/databases exports (MICROGRID_TEST_PG_BIN, MICROGRID_TEST_PG_OS_USER,
MICROGRID_TEST_SECANTUSD); starting and killing them is
scripts/databases.py's `PostgresOnDisk` and `SecantusOnDisk`, loaded here by
its path (it needs only the standard library). Without the variables the
tests fail: they never skip.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]


def _databases():
    spec = importlib.util.spec_from_file_location("microgrid_scripts_databases", REPO / "scripts" / "databases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _required(name: str, *, may_be_empty: bool = False) -> str:
    value = os.environ.get(name)
    if value is None or (not value and not may_be_empty):
        # Database tests never skip: without the servers' executables the run fails.
        pytest.fail(f"{name} is not set: run the tests through ./scripts/databases (./scripts/test-all does)")
    return value


class Readings:
    """What a store holds of its readings, counted in its own tables or
    collections: rows, and the sums of produced and consumed Wh."""

    def __init__(self, rows: int, produced: int, consumed: int):
        self.rows, self.produced, self.consumed = rows, produced, consumed

    def __eq__(self, other):
        return (self.rows, self.produced, self.consumed) == (other.rows, other.produced, other.consumed)

    def __repr__(self):
        return f"Readings(rows={self.rows}, produced={self.produced}, consumed={self.consumed})"


class Postgres:
    """A PostgreSQL server of the test's own; a database per use."""

    kind = "postgres"

    def __init__(self, root: Path):
        db = _databases()
        self.server = db.PostgresOnDisk(
            _required("MICROGRID_TEST_PG_BIN"),
            root / "pgdata",
            root / "pgsock",
            os_user=_required("MICROGRID_TEST_PG_OS_USER", may_be_empty=True),
        )

    def start(self) -> None:
        self.server.start()

    def new_database(self, name: str) -> str:
        return self.server.create_database(name)

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> str:
        """Starts the server again on its data directory; says whether the
        start recovered the data directory after a crash."""
        before = self.server.recoveries()
        self.server.start()
        return "crash recovery" if self.server.recoveries() > before else "clean start"

    def stop(self) -> None:
        self.server.stop()

    def ensure_running(self) -> None:
        """Starts the server if a failed test left it killed."""
        if self.server.proc is None:
            self.server.start()

    def log(self) -> str:
        return self.server.log()

    def readings(self, url: str) -> Readings:
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
            rows, produced, consumed = conn.execute(
                "SELECT count(*), coalesce(sum(produced_wh), 0), coalesce(sum(consumed_wh), 0) FROM readings"
            ).fetchone()
        return Readings(int(rows), int(produced), int(consumed))

    def settlements(self, url: str, start: dt.datetime, end: dt.datetime) -> List[Tuple[str, str]]:
        """(id, content hash) of every stored settlement whose period overlaps [start, end)."""
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
            rows = conn.execute(
                "SELECT id, content_hash FROM settlements WHERE period_start < %s AND period_end > %s ORDER BY id",
                (end, start),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]


class Mongo:
    """A MongoDB-wire server (secantusd-py) of the test's own, on disk with
    every commit synced; a database per use."""

    kind = "mongodb"

    def __init__(self, root: Path):
        db = _databases()
        self.server = db.SecantusOnDisk(_required("MICROGRID_TEST_SECANTUSD"), root / "mongodata")

    def start(self) -> None:
        self.server.start()

    def new_database(self, name: str) -> str:
        # A killed server is noticed within 2 s instead of the driver's 30.
        return self.server.url(name) + "&serverSelectionTimeoutMS=2000"

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> str:
        self.server.start()
        return "reopened storage"

    def stop(self) -> None:
        self.server.stop()

    def ensure_running(self) -> None:
        """Starts the server if a failed test left it killed."""
        if self.server.proc is None:
            self.server.start()

    def log(self) -> str:
        return self.server.log()

    def _db(self, url: str):
        import pymongo

        client = pymongo.MongoClient(url)
        return client, client.get_default_database()

    def readings(self, url: str) -> Readings:
        client, db = self._db(url)
        try:
            rows = produced = consumed = 0
            for d in db["reading_frames"].find({}, {"ids": 1, "produced": 1, "consumed": 1}):
                rows += len(d["ids"])
                produced += sum(int(x) for x in d["produced"])
                consumed += sum(int(x) for x in d["consumed"])
            return Readings(rows, produced, consumed)
        finally:
            client.close()

    def settlements(self, url: str, start: dt.datetime, end: dt.datetime) -> List[Tuple[str, str]]:
        client, db = self._db(url)
        try:
            found = db["settlements"].find({"period_start": {"$lt": end}, "period_end": {"$gt": start}}, {"content_hash": 1})
            return sorted((d["_id"], d["content_hash"]) for d in found)
        finally:
            client.close()


class Servers:
    """Both servers, in a temporary directory of their own (short: the
    PostgreSQL socket lives there), stopped and removed by `close()`."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mgfault-"))
        os.chmod(self.root, 0o755)
        self.by_kind = {}
        try:
            for cls in (Postgres, Mongo):
                server = cls(self.root)
                server.start()
                self.by_kind[cls.kind] = server
        except BaseException:
            self.close()
            raise

    def __getitem__(self, kind: str):
        return self.by_kind[kind]

    def close(self) -> None:
        # The data is thrown away: no need for a clean shutdown.
        for server in self.by_kind.values():
            server.kill()
        shutil.rmtree(self.root, ignore_errors=True)

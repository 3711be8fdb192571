"""Fault injection on real servers: PostgreSQL and the MongoDB-wire server
are killed (SIGKILL, the server and every process it started) in the
middle of ingest, clear and settle, started again on the same data, and the
operation is tried again on a new `Grid`. The books must then equal those
of an undisturbed run on the memory store: every summary, allocation,
trade and bill, and the settlement (id and content hash); every reading
counted once (the store's own rows, and the summaries' totals, equal the
inputs); at most one settlement per period (settling again returns the
same one, and the store holds one for the period).

The servers are the test's own (see servers.py), not the shared ones of
scripts/databases. The kill lands a seeded random fraction into the time
the operation takes undisturbed on that server (measured first, on a
database of its own, which must equal the memory store too).

The table of outcomes is printed at the end and written to
<pytest basetemp>/fault-table.md.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from decimal import Decimal

import microgrid
import pyarrow as pa
import pytest

from conftest import JUNE
from servers import Servers

PROSUMERS = 1000
DAYS = 2
SEED = 20260601
START = JUNE
END = JUNE + dt.timedelta(days=DAYS)
TIMEFRAMES = DAYS * 96
RATE = Decimal("90000")
OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
ADDRESSES = [
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
    "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
]
OPERATIONS = ["ingest", "clear", "settle"]
STORES = ["postgres", "mongodb"]
# The kill lands this far into the operation's store work (a fraction of
# its undisturbed duration, after the part the memory store takes too).
KILL_WINDOW = (0.15, 0.6)
# Cells whose operation completed before the kill are tried again (see the test).
TRIES = 3
# How long the server stays down at most while a killed operation has not
# returned (the MongoDB store tries a transaction again on a transient
# error, which a server that is away is, many times over), and how long the
# operation may then take.
HOLD_DOWN_S = 10
GIVE_UP_S = 120

ROWS = []  # the fault table: one dict per cell


def tariff():
    return microgrid.Tariff(Decimal("0.30"), Decimal("0.08"), grid_fee=Decimal("0.02"), fixed_fee="1.50", operator_margin="0.01")


class Workload:
    def __init__(self):
        data = microgrid.simulate(PROSUMERS, START.date(), DAYS, seed=SEED)
        self.n = len(data["start"])
        self.produced = sum(data["produced_wh"])
        self.consumed = sum(data["consumed_wh"])
        # Arrow columns: converting them costs next to nothing, so the
        # ingest's time is the store's.
        self.columns = [pa.array(data[k]) for k in ("start", "prosumer_id", "produced_wh", "consumed_wh")]
        ids = sorted(set(data["prosumer_id"]))
        self.prosumers = [
            {"id": p, "name": f"Member {i}", "kind": "household", "joined": dt.date(2026, 1, 1), "address": ADDRESSES[i % 3]}
            for i, p in enumerate(ids)
        ]


@pytest.fixture(scope="module")
def workload():
    return Workload()


# The operations; each returns what it reported.
def ingest(grid, w):
    return grid.record(*w.columns)


def clear(grid, w):
    return grid.clear(START, END, "sdr", tariff())


def settle(grid, w):
    return grid.settle(START, END, tariff(), rate=RATE, operator_address=OPERATOR)


RUN = {"ingest": ingest, "clear": clear, "settle": settle}


def check_report(op, report, w):
    """What a (retried) operation reported adds up: every reading or
    timeframe accounted for once."""
    if op == "ingest":
        assert report["replaced"] == 0, report
        assert report["inserted"] + report["unchanged"] == w.n, report
    elif op == "clear":
        assert report["cleared"] + report["already_cleared"] == TIMEFRAMES, report
    else:
        assert report.is_conserved()


def plain(table) -> pa.Table:
    """An Arrow table with dictionary columns decoded (dictionaries may be
    ordered differently by different stores)."""
    table = pa.table(table)
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def books(grid, w):
    """Everything the books say about the period, in comparable form."""
    allocations = plain(grid.allocations_arrow(START, END)).sort_by([("start", "ascending"), ("prosumer_id", "ascending")])
    trades = plain(grid.trades_arrow(START, END)).sort_by(
        [("start", "ascending"), ("seller_id", "ascending"), ("buyer_id", "ascending")]
    )
    s = grid.settle(START, END, tariff(), rate=RATE, operator_address=OPERATOR)
    stored = grid.settlement(s.id)
    return {
        "prosumers": grid.prosumers(),
        "summaries": grid.summaries(START, END),
        "allocations": allocations,
        "trades": trades,
        "bills": grid.bill(START, END, tariff()),
        "settlement": (s.id, s.content_hash, s.canonical_json()),
        "stored settlement": None if stored is None else (stored.id, stored.content_hash, stored.canonical_json()),
    }


def differences(got, want):
    """What differs between two `books`, named field by field."""
    out = []
    for key in want:
        a, b = got[key], want[key]
        if isinstance(b, pa.Table):
            if a.equals(b):
                continue
            if a.num_rows != b.num_rows:
                out.append(f"{key}: {a.num_rows} rows, undisturbed {b.num_rows}")
                continue
            for name in b.column_names:
                if not a.column(name).equals(b.column(name)):
                    x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
                    i = next((i for i in range(len(y)) if x[i] != y[i]), None)
                    out.append(f"{key}.{name}: first difference at row {i}: {x[i] if i is not None else '?'} != {y[i] if i is not None else '?'}")
        elif key == "summaries":
            for name in b:
                if a.get(name) != b[name]:
                    i = next((i for i, (x, y) in enumerate(zip(a.get(name, []), b[name])) if x != y), None)
                    out.append(f"summaries.{name}: lengths {len(a.get(name, []))}/{len(b[name])}, first difference at {i}")
        elif key == "bills":
            if a != b:
                diff = [(x["prosumer_id"], k) for x, y in zip(a, b) for k in y if x.get(k) != y[k]]
                out.append(f"bills: {len(a)}/{len(b)} bills; differing (prosumer, field): {diff[:10]}")
        elif a != b:
            out.append(f"{key}: {str(a)[:200]} != undisturbed {str(b)[:200]}")
    return out


def check_store(server, url, w):
    """Every reading stored once, and one settlement for the period, in the
    store's own tables or collections."""
    readings = server.readings(url)
    assert (readings.rows, readings.produced, readings.consumed) == (w.n, w.produced, w.consumed), (
        f"{server.kind} holds {readings}, the inputs are {w.n} readings, {w.produced} Wh produced, {w.consumed} Wh consumed"
    )
    settlements = server.settlements(url, START, END)
    assert len(settlements) == 1, f"{server.kind} holds {len(settlements)} settlements for the period: {settlements}"
    return settlements[0]


@pytest.fixture(scope="module")
def reference(workload):
    grid = microgrid.Grid()
    grid.register_all(workload.prosumers)
    durations = {}
    for op in OPERATIONS:
        t = time.monotonic()
        check_report(op, RUN[op](grid, workload), workload)
        durations[op] = time.monotonic() - t
    b = books(grid, workload)
    assert sum(b["summaries"]["production_wh"]) == workload.produced
    assert sum(b["summaries"]["consumption_wh"]) == workload.consumed
    return b, durations


@pytest.fixture(scope="module")
def servers():
    s = Servers()
    yield s
    s.close()


@pytest.fixture(scope="module")
def undisturbed(servers, workload, reference):
    """Each server's undisturbed run (which must equal the memory store's),
    and how long each operation took on it."""
    want, _ = reference
    durations = {}
    for kind in STORES:
        server = servers[kind]
        url = server.new_database("undisturbed")
        grid = microgrid.Grid(url)
        grid.register_all(workload.prosumers)
        durations[kind] = {}
        for op in OPERATIONS:
            t = time.monotonic()
            check_report(op, RUN[op](grid, workload), workload)
            durations[kind][op] = time.monotonic() - t
        diff = differences(books(grid, workload), want)
        assert not diff, f"undisturbed {kind} differs from the memory store: {diff}"
        check_store(server, url, workload)
    return durations


class Attempt(threading.Thread):
    """An operation in a thread of its own (store calls release the GIL)."""

    def __init__(self, op, grid, w):
        super().__init__(daemon=True)
        self.op, self.grid, self.w = op, grid, w
        self.result = self.error = None
        self.started = self.ended = None

    def run(self):
        self.started = time.monotonic()
        try:
            self.result = RUN[self.op](self.grid, self.w)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.ended = time.monotonic()


def one_try(server, op, w, want, delay, database, row):
    """Runs the pipeline up to `op` on a new database, kills the server
    `delay` s into `op`, restarts it, tries `op` again on a new Grid, runs
    the rest, and checks the books; fills in `row`."""
    kind = server.kind
    url = server.new_database(database)
    grid = microgrid.Grid(url)
    grid.register_all(w.prosumers)
    for before in OPERATIONS[: OPERATIONS.index(op)]:
        check_report(before, RUN[before](grid, w), w)

    attempt = Attempt(op, grid, w)
    attempt.start()
    time.sleep(delay)
    killed_at = time.monotonic()
    server.kill()
    try:
        # The server stays down while the operation fails (or gives up);
        # one that keeps trying past HOLD_DOWN_S sees the server come back.
        attempt.join(HOLD_DOWN_S)
        row["kill_after_s"] = killed_at - attempt.started
        outlived = attempt.is_alive()
        t = time.monotonic()
        row["restart"] = server.restart()
        row["restart_s"] = time.monotonic() - t
    except BaseException:
        server.ensure_running()
        raise
    attempt.join(GIVE_UP_S)
    assert not attempt.is_alive(), f"{op} on {kind} did not return within {HOLD_DOWN_S + GIVE_UP_S} s of the kill, {GIVE_UP_S} s of the restart"
    row["before_kill"] = attempt.error is None and attempt.ended <= killed_at
    returned = f"{attempt.ended - killed_at:.2f}s after the kill" + (", after the restart" if outlived else "")
    row.pop("error", None)
    if attempt.error is None:
        row["first"] = "completed " + (f"before the kill ({attempt.ended - attempt.started:.2f}s)" if row["before_kill"] else returned)
    elif isinstance(attempt.error, microgrid.StorageError):
        row["first"] = f"StorageError {returned}"
        row["error"] = str(attempt.error)
    else:
        row["first"] = f"{type(attempt.error).__name__} {returned}"
        row["error"] = str(attempt.error)
        raise AssertionError(f"{op} on {kind} failed with {type(attempt.error).__name__}, not StorageError: {attempt.error}") from attempt.error
    del grid, attempt.grid

    # A new Grid on the restarted server, as a restarted application would
    # open; the operation again, then the rest of the pipeline.
    grid = microgrid.Grid(url)
    retry = RUN[op](grid, w)
    check_report(op, retry, w)
    row["retry"] = retry if op != "settle" else {"id": retry.id}
    if op == "ingest":
        again = grid.record(*w.columns)
        assert again == {"inserted": 0, "replaced": 0, "unchanged": w.n}, again
    if op == "settle":
        again = settle(grid, w)
        assert (again.id, again.content_hash) == (retry.id, retry.content_hash)
    for after in OPERATIONS[OPERATIONS.index(op) + 1 :]:
        check_report(after, RUN[after](grid, w), w)

    diff = differences(books(grid, w), want)
    stored_id, stored_hash = check_store(server, url, w)
    if (stored_id, stored_hash) != want["settlement"][:2]:
        diff.append(f"stored settlement {stored_id}/{stored_hash} is not the undisturbed {want['settlement'][:2]}")
    row["differences"] = diff
    assert not diff, f"{op} on {kind}, killed after {row['kill_after_s']:.2f}s: {diff}"
    if attempt.error is not None:
        row["outcome"] = "failed-then-retried-equal"
    elif row["before_kill"]:
        row["outcome"] = "completed-before-kill-equal"
    else:
        row["outcome"] = "completed-across-restart-equal"


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("kind", STORES)
def test_a_killed_server_restarted_on_its_data_gives_the_undisturbed_books(kind, op, servers, workload, reference, undisturbed):
    want, memory_durations = reference
    row = {"store": kind, "operation": op, "fault": "SIGKILL mid-operation", "outcome": "MISMATCH", "tries": 0}
    ROWS.append(row)
    # The kill lands a seeded random fraction into the store's part of the
    # operation (after what the memory store takes too). An operation that
    # was quicker this time and completed before the kill (checked all the
    # same) is run again on a new database, killed after half the delay.
    took = undisturbed[kind][op]
    own = memory_durations[op]
    fraction = random.Random(f"{SEED}/{kind}/{op}").uniform(*KILL_WINDOW)
    delay = own + fraction * max(took - own, 0.0)
    row["undisturbed_s"] = took
    for n in range(1, TRIES + 1):
        row["tries"] = n
        row["delay_s"] = delay
        row["outcome"] = "MISMATCH"
        one_try(servers[kind], op, workload, want, delay, f"fault_{op}_{n}", row)
        if not row["before_kill"]:
            break
        delay /= 2


def table() -> str:
    lines = [
        "| store | operation | fault | op undisturbed (s) | kill after (s) | tries | first attempt | restart | retry | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ROWS:
        num = lambda k: f"{r[k]:.2f}" if k in r else "-"  # noqa: E731
        restart = f"{r['restart']} {r['restart_s']:.1f}s" if "restart" in r else "-"
        lines.append(
            f"| {r['store']} | {r['operation']} | {r['fault']} | {num('undisturbed_s')} | {num('kill_after_s')} "
            f"| {r['tries']} | {r.get('first', '-')} | {restart} | {r.get('retry', '-')} | {r['outcome']} |"
        )
    for r in ROWS:
        if r.get("differences"):
            lines.append(f"\n{r['store']} {r['operation']}: {'; '.join(r['differences'])}")
        if r.get("error"):
            lines.append(f"\n{r['store']} {r['operation']} first attempt: {r['error'][:300]}")
    return "\n".join(lines)


def test_the_fault_table(request, capsys, tmp_path_factory):
    cells = [i for i in request.session.items if i.originalname == "test_a_killed_server_restarted_on_its_data_gives_the_undisturbed_books"]
    text = table()
    (tmp_path_factory.getbasetemp() / "fault-table.md").write_text(text + "\n")
    with capsys.disabled():
        print("\n\nFault injection (SIGKILL, restart on the same data, retry):\n" + text + "\n")
    assert len(ROWS) == len(cells), "a cell of the table did not run"
    bad = [f"{r['store']}/{r['operation']}: {r['outcome']}" for r in ROWS if r["outcome"] == "MISMATCH"]
    assert not bad, bad

"""A quarter on a Dask cluster from Parquet, next to the same quarter on one
machine.

    python examples/distributed_quarter.py [households] [directory]

1. Simulates July to September 2026 for `households` homes (200 by
   default) and writes the readings to Parquet a day at a time, by month
   (`directory/readings/month=2026-07/2026-07-01.parquet`, ...): the quarter
   is never in memory whole.
2. Clears and bills it on a local Dask cluster of two worker processes
   (`microgrid.distributed.run`, one task per 7 days, never across a month),
   writing the views and the bills back as Parquet by month
   (`directory/books/`), and settles it once on the client.
3. Runs the same quarter on one `Grid("memory:")` and prints whether every
   timeframe's summary, every bill and the settlement's content hash are the
   same.

Needs `pip install 'dask[distributed]' pyarrow` next to microgrid. Without
`directory` the files go to a temporary directory, removed at the end.
"""

import datetime as dt
import os
import sys
import tempfile
import time
from decimal import Decimal

import microgrid
import pyarrow as pa
from distributed import Client, LocalCluster
from microgrid import distributed, parquet

UTC = dt.timezone.utc
START = dt.datetime(2026, 7, 1, tzinfo=UTC)
END = dt.datetime(2026, 10, 1, tzinfo=UTC)
OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
TARIFF = dict(
    import_price=Decimal("0.30"),
    export_price=Decimal("0.08"),
    grid_fee=Decimal("0.02"),
    fixed_fee=Decimal("4.50"),
    operator_margin=Decimal("0.01"),
)
RATE = Decimal("91234.56")


def write_quarter(households: int, root: str) -> list:
    """The readings, day by day, and the community's registry rows."""
    ids = None
    rows = 0
    day = START
    while day < END:
        data = microgrid.simulate(households, day.date(), 1, seed=day.toordinal())
        ids = ids or sorted(set(data["prosumer_id"]))
        rows += parquet.write_readings(data, root, name=day.strftime("%Y-%m-%d"))
        day += dt.timedelta(days=1)
    print(f"wrote {rows:,} readings for {households} households to {root}: months {parquet.months(root)}")
    return [
        {"id": p, "name": f"Home {k + 1}", "kind": "household", "joined": dt.date(2026, 1, 1),
         "address": OPERATOR if k % 4 == 0 else None}
        for k, p in enumerate(ids)
    ]


def main(households: int, directory: str) -> bool:
    readings = os.path.join(directory, "readings")
    books_dir = os.path.join(directory, "books")
    prosumers = write_quarter(households, readings)
    mechanism = microgrid.Mechanism.SUPPLY_DEMAND_RATIO

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t = time.perf_counter()
        books = distributed.run(client, readings, prosumers, START, END, TARIFF, mechanism,
                                days_per_task=7, books=books_dir)
        settlement = books.settle(rate=RATE, operator_address=OPERATOR)
        on_cluster = time.perf_counter() - t
    print(f"cluster: {books.tasks} tasks on 2 worker processes, {on_cluster:.1f} s; "
          f"books written to {books_dir}: {sorted(os.listdir(books_dir))}")

    t = time.perf_counter()
    single = distributed.single_machine(readings, prosumers, START, END, TARIFF, mechanism)
    tariff = microgrid.Tariff(**TARIFF)
    bills = single.bill(START, END, tariff)
    expected = single.settle(START, END, tariff, rate=RATE, operator_address=OPERATOR)
    on_one = time.perf_counter() - t
    print(f"one machine: {on_one:.1f} s")

    summaries = books.summaries.equals(pa.table(single.summaries_arrow(START, END)))
    same_bills = books.bills == bills
    same_hash = settlement.content_hash == expected.content_hash
    print(f"{books.summaries.num_rows:,} timeframe summaries identical: {summaries}")
    print(f"{len(bills)} bills identical to the last decimal: {same_bills}")
    print(f"settlement content hash identical: {same_hash} ({settlement.content_hash[:16]}...)")
    total = sum(b["total"] for b in books.bills)
    print(f"the quarter: members owe {total:.2f} EUR in total; settlement {settlement.id[:16]}..., "
          f"{len(settlement.invoices())} invoices, payouts {settlement.sendmany_json()[:60]}...")
    return summaries and same_bills and same_hash


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    if len(sys.argv) > 2:
        ok = main(n, sys.argv[2])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ok = main(n, tmp)
    sys.exit(0 if ok else 1)

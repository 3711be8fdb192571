"""How the Dask run grows with the community: a month of 15-minute readings
for N prosumers, written to Parquet and cleared and billed on a LocalCluster
of 2 worker processes (microgrid.distributed.run).

    python benches/distributed_scaling.py 10000 100000 [--days 30] [--workers 2]
        [--days-per-task 1] [--views summaries] [--single] [--dir DIR] [--keep]
        [--start 2026-06-01]

For each size it prints the time to write the Parquet files (a day at a
time, numpy-generated readings), the time of the cluster run (every task,
the tree of merges, the summaries gathered), of finishing the bills and of
settling on the client, the Parquet size, and the peak RSS of each worker
process and of the client, sampled every 50 ms with psutil (the RSS of an
idle worker is printed next to it). With --single the same month also runs
on one Grid("memory:") in this process and the script checks that the
summaries, bills and settlement content hash are identical (needs the
month in memory: fine for 10,000 prosumers, about 10 GB for 100,000).

The readings are synthetic (a daylight production curve for 70 % of the
members, random consumption), seeded, so the runs are repeatable. The
files go to a temporary directory removed at the end unless --keep.
Needs `pip install 'dask[distributed]' pyarrow numpy psutil` and a release
wheel of microgrid for meaningful times.
"""

import argparse
import datetime as dt
import os
import resource
import shutil
import tempfile
import threading
import time
from decimal import Decimal

import microgrid
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from microgrid import distributed

UTC = dt.timezone.utc
START = dt.datetime(2026, 6, 1, tzinfo=UTC)
OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
TARIFF = dict(import_price=Decimal("0.30"), export_price=Decimal("0.08"), grid_fee=Decimal("0.02"),
              fixed_fee=Decimal("4.50"), operator_margin=Decimal("0.01"))
RATE = Decimal("91234.56")
MB = 1 << 20


def ids_of(n):
    return [f"p{k:06d}" for k in range(n)]


def write_month(n, days, root):
    """One file per day under root/month=YYYY-MM/: 96 timeframes x n
    prosumers, sorted by start, ids as a dictionary."""
    rng = np.random.default_rng(7)
    ids = pa.array(ids_of(n))
    solar = rng.random(n) < 0.7
    peak = rng.integers(300, 1500, n)  # Wh per quarter-hour at noon
    quarter = np.arange(96)
    sun = np.clip(np.sin((quarter - 24) / 48 * np.pi), 0, None)  # 06:00-18:00
    rows = 0
    for d in range(days):
        day = START + dt.timedelta(days=d)
        starts = np.datetime64(day.replace(tzinfo=None), "us") + (quarter * 15 * 60 * 10**6).astype("timedelta64[us]")
        produced = (np.outer(sun, peak * solar) * rng.uniform(0.5, 1.0, (96, 1))).astype(np.int64)
        consumed = rng.integers(20, 400, (96, n), dtype=np.int64)
        table = pa.table({
            "start": pa.array(np.repeat(starts, n), pa.timestamp("us", tz="UTC")),
            "prosumer_id": pa.DictionaryArray.from_arrays(pa.array(np.tile(np.arange(n, dtype=np.int32), 96)), ids),
            "produced_wh": produced.ravel(),
            "consumed_wh": consumed.ravel(),
        })
        folder = os.path.join(root, f"month={day:%Y-%m}")
        os.makedirs(folder, exist_ok=True)
        pq.write_table(table, os.path.join(folder, f"{day:%Y-%m-%d}.parquet"), compression="zstd")
        rows += table.num_rows
        del table, produced, consumed
    return rows


def size_of(root):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)


class Peaks:
    """Samples the RSS of some processes every 50 ms in a thread."""

    def __init__(self, pids):
        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            for pid, p in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], p.memory_info().rss)
                except psutil.Error:
                    pass
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def one_size(n, args, directory):
    from distributed import Client, LocalCluster

    readings = os.path.join(directory, f"readings-{n}")
    end = START + dt.timedelta(days=args.days)
    t = time.perf_counter()
    rows = write_month(n, args.days, readings)
    write_s = time.perf_counter() - t
    parquet_mb = size_of(readings) / MB
    prosumers = pa.table({"id": ids_of(n), "name": ids_of(n), "kind": ["household"] * n,
                          "joined": [START.date()] * n})
    print(f"\n== {n:,} prosumers x {args.days} days: {rows:,} readings, Parquet {parquet_mb:,.0f} MiB, "
          f"written in {write_s:.1f} s", flush=True)

    with LocalCluster(n_workers=args.workers, processes=True, threads_per_worker=1,
                      dashboard_address=None, memory_limit=0) as cluster, Client(cluster) as client:
        workers = client.run(os.getpid)
        idle = {w: psutil.Process(pid).memory_info().rss for w, pid in workers.items()}
        books = os.path.join(directory, f"books-{n}") if args.views else None
        with Peaks(list(workers.values()) + [os.getpid()]) as peaks:
            t = time.perf_counter()
            result = distributed.run(client, readings, prosumers, START, end, TARIFF, "sdr",
                                     days_per_task=args.days_per_task, books=books, views=args.views)
            run_s = time.perf_counter() - t
            t = time.perf_counter()
            settlement = result.settle(rate=RATE, operator_address=OPERATOR)
            settle_s = time.perf_counter() - t
        cluster_s = result.timings["cluster"]
        finish_s = result.timings["total"] - cluster_s
        print(f"cluster run: {run_s:.1f} s ({result.tasks} tasks; tasks + merges + gather {cluster_s:.1f} s, "
              f"bills finished on the client {finish_s:.2f} s); settle on the client {settle_s:.2f} s; "
              f"{rows / cluster_s / 1e6:.1f} M readings/s", flush=True)
        for w, pid in workers.items():
            print(f"  worker {w}: peak RSS {peaks.peak[pid] / MB:,.0f} MiB (idle {idle[w] / MB:,.0f} MiB)")
        print(f"  client: peak RSS {peaks.peak[os.getpid()] / MB:,.0f} MiB")
        if books:
            print(f"  books written: {size_of(books) / MB:,.0f} MiB ({', '.join(args.views)})")

    if args.single:
        t = time.perf_counter()
        single = distributed.single_machine(readings, prosumers, START, end, TARIFF, "sdr")
        tariff = microgrid.Tariff(**TARIFF)
        bills = single.bill(START, end, tariff)
        expected = single.settle(START, end, tariff, rate=RATE, operator_address=OPERATOR)
        single_s = time.perf_counter() - t
        same = (result.summaries.equals(pa.table(single.summaries_arrow(START, end))), result.bills == bills,
                settlement.content_hash == expected.content_hash)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
        print(f"one Grid(memory:) in this process: {single_s:.1f} s, peak RSS of this process "
              f"{peak:,.0f} MiB (the whole script); identical summaries, bills, content hash: {same}")
        del single
    if not args.keep:
        shutil.rmtree(readings, ignore_errors=True)
        if args.views:
            shutil.rmtree(os.path.join(directory, f"books-{n}"), ignore_errors=True)


def main():
    global START
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--days-per-task", type=int, default=1)
    p.add_argument("--views", nargs="*", default=["summaries"], help="views written as Parquet (none: nothing)")
    p.add_argument("--single", action="store_true", help="also run on one Grid and compare")
    p.add_argument("--dir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--start", type=dt.date.fromisoformat, default=START.date(),
                   help="first day (UTC), default 2026-06-01; a year must end before today")
    args = p.parse_args()
    START = dt.datetime.combine(args.start, dt.time(), UTC)
    end = START + dt.timedelta(days=args.days)
    if end > dt.datetime.now(UTC):
        # The library clears only timeframes that have ended: say so before writing gigabytes.
        p.error(f"{args.days} days from {args.start} end {end:%Y-%m-%d}, in the future: pass an earlier --start")
    print(f"microgrid {microgrid.__version__}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / (1 << 30):.0f} GiB RAM; {args.workers} worker processes, "
          f"1 thread each, {args.days_per_task} day(s) per task, views written: {args.views or 'none'}")
    directory = args.dir or tempfile.mkdtemp(prefix="microgrid-scaling-")
    try:
        for n in args.sizes:
            one_size(n, args, directory)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

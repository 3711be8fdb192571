"""Record a month of a large community from Python, one kind of input at a
time (in-memory store, release wheel):

    python benches/py_ingest.py                 # every kind, 10,000 prosumers x 2,880 timeframes
    python benches/py_ingest.py --prosumers 1000 --days 3 pyarrow

10,000 prosumers x 2,880 15-minute timeframes (30 days) = 28.8 M readings,
recorded by one ``Grid.record`` (or ``record_wide``) call from:

* ``wide``:           two wide pandas DataFrames (produced, consumed), a row per start, a column per id
* ``pandas-category``: a long pandas DataFrame, ids as a categorical
* ``polars``:         a long polars DataFrame, ids as a Categorical
* ``pyarrow``:        a pyarrow Table, ids dictionary-encoded
* ``pandas-str``:     a long pandas DataFrame, ids as plain Python strings (object column: the slow path)
* ``rows``:           row by row, one ``record`` call per reading, on a sample (its rate extrapolated)

Each kind runs in a fresh process, so that its peak RSS (``ru_maxrss``) is
its own: the input it builds plus what recording it costs. The input's own
RSS is printed next to it.
"""

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time

KINDS = ["wide", "pandas-category", "polars", "pyarrow", "pandas-str", "rows"]
ROW_SAMPLE = 5_000


def rss_mib() -> float:
    """Current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(kind: str, prosumers: int, days: int) -> dict:
    import numpy as np

    import microgrid

    timeframes = days * 96
    total = prosumers * timeframes
    ids = [f"house-{i:05d}" for i in range(prosumers)]
    rng = np.random.default_rng(3)
    # Deterministic, plausible watt-hours: 70 % with solar in daylight.
    hour = (np.arange(timeframes) % 96) / 4
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    solar = rng.random(prosumers) < 0.7
    produced = (np.outer(sun, rng.integers(200, 1500, prosumers)) * solar).astype(np.int64)  # timeframes x prosumers
    consumed = rng.integers(50, 800, size=(timeframes, prosumers), dtype=np.int64)
    first = np.datetime64("2026-01-01T00:00:00", "s")
    times = first + np.arange(timeframes) * np.timedelta64(900, "s")

    grid = microgrid.Grid()
    joined = dt.date(2025, 1, 1)
    t = time.perf_counter()
    grid.register_all([{"id": i, "name": i, "kind": "household", "joined": joined} for i in ids])
    register_s = time.perf_counter() - t

    codes = np.tile(np.arange(prosumers, dtype=np.int32), timeframes)  # time-major: every prosumer per start
    starts = np.repeat(times, prosumers)

    def long_pandas(categorical: bool):
        import pandas as pd

        prosumer = pd.Categorical.from_codes(codes, categories=ids) if categorical else np.array(ids, dtype=object)[codes]
        return pd.DataFrame(
            {
                "start": pd.Series(starts).dt.tz_localize("UTC"),
                "prosumer_id": prosumer,
                "produced_wh": produced.ravel(),
                "consumed_wh": consumed.ravel(),
            },
            copy=False,
        )

    def arrow_table():
        import pyarrow as pa

        return pa.table(
            {
                "start": pa.array(starts.astype(np.int64), pa.timestamp("s", tz="UTC")),
                "prosumer_id": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(ids)),
                "produced_wh": produced.ravel(),
                "consumed_wh": consumed.ravel(),
            }
        )

    if kind == "rows":
        total = min(ROW_SAMPLE, total)
        import pandas as pd

        stamps = [pd.Timestamp(s, tz="UTC").to_pydatetime() for s in starts[:total]]
        sample = list(zip(stamps, (ids[c] for c in codes[:total]), produced.ravel()[:total].tolist(), consumed.ravel()[:total].tolist()))
        before = rss_mib()
        t = time.perf_counter()
        for start, pid, p, c in sample:
            grid.record([start], [pid], [p], [c])
        seconds = time.perf_counter() - t
        return {"kind": kind, "readings": total, "seconds": seconds, "register_s": register_s, "input_mib": before, "peak_mib": peak_mib()}

    if kind == "wide":
        import pandas as pd

        index = pd.DatetimeIndex(times).tz_localize("UTC").rename("start")
        p_frame = pd.DataFrame(produced, index=index, columns=ids, copy=False)
        c_frame = pd.DataFrame(consumed, index=index, columns=ids, copy=False)
        del produced, consumed, codes, starts
        before = rss_mib()
        t = time.perf_counter()
        report = grid.record_wide(p_frame, c_frame)
    else:
        if kind == "pandas-category":
            data = long_pandas(categorical=True)
        elif kind == "pandas-str":
            data = long_pandas(categorical=False)
        elif kind == "pyarrow":
            data = arrow_table()
        elif kind == "polars":
            import polars as pl

            data = pl.from_arrow(arrow_table())
        else:
            raise SystemExit(f"unknown kind {kind}")
        del produced, consumed, codes, starts
        before = rss_mib()
        t = time.perf_counter()
        report = grid.record(data)
    seconds = time.perf_counter() - t
    assert report == {"inserted": total, "replaced": 0, "unchanged": 0}, report
    return {"kind": kind, "readings": total, "seconds": seconds, "register_s": register_s, "input_mib": before, "peak_mib": peak_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kinds", nargs="*", help=f"any of {', '.join(KINDS)} (default: all)")
    parser.add_argument("--prosumers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.prosumers, args.days)))
        return
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    total = args.prosumers * args.days * 96
    print(f"{args.prosumers:,} prosumers x {args.days * 96:,} timeframes = {total:,} readings, in-memory store")
    print(f"{'input':<16} {'readings':>11} {'seconds':>8} {'readings/s':>13} {'input RSS':>10} {'peak RSS':>10}")
    for kind in args.kinds or KINDS:
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, "--prosumers", str(args.prosumers), "--days", str(args.days)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        note = f"  (a sample; {total:,} would take {total / (r['readings'] / r['seconds']):,.0f} s)" if kind == "rows" else ""
        print(
            f"{kind:<16} {r['readings']:>11,} {r['seconds']:>8.2f} {r['readings'] / r['seconds']:>13,.0f} "
            f"{r['input_mib']:>7,.0f} MiB {r['peak_mib']:>7,.0f} MiB{note}"
        )
    print(f"(register_all of {args.prosumers:,} prosumers: {r['register_s']:.2f} s)")


if __name__ == "__main__":
    main()

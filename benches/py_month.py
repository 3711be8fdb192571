"""A whole month from Python, as a notebook user runs it (memory store,
release wheel): register the community from a DataFrame, record wide meter
data (a column per prosumer), clear with SDR, bill, settle, and take the
three views as pandas DataFrames; the time of each step and the peak RSS of
the whole script.

    python benches/py_month.py [PROSUMERS]      # default 10,000 (28.8 M readings)

The views taken: the grid per timeframe for the month, one prosumer's month,
and the trades of the first day (the month's trades and every prosumer's
month are tens of millions of rows each; `allocations_arrow` and
`trades_arrow` return them too, at about 100 bytes a row).
"""

import datetime as dt
import resource
import sys
import time
from decimal import Decimal

import numpy as np
import pandas as pd

import microgrid

PROSUMERS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
TIMEFRAMES = 30 * 96
OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    ids = [f"house-{i:05d}" for i in range(PROSUMERS)]
    rng = np.random.default_rng(3)
    hour = (np.arange(TIMEFRAMES) % 96) / 4
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    solar = rng.random(PROSUMERS) < 0.7
    index = pd.date_range("2026-06-01", periods=TIMEFRAMES, freq="15min", tz="UTC", name="start")
    produced = pd.DataFrame(
        (np.outer(sun, rng.integers(200, 1500, PROSUMERS)) * solar).astype(np.int64), index=index, columns=ids
    )
    consumed = pd.DataFrame(rng.integers(50, 800, size=(TIMEFRAMES, PROSUMERS), dtype=np.int64), index=index, columns=ids)
    members = pd.DataFrame({"id": ids, "name": ids, "kind": "household", "joined": dt.date(2026, 1, 1)})
    print(f"{PROSUMERS:,} prosumers x {TIMEFRAMES:,} timeframes; input frames built, peak {peak_mib()} MiB")

    start, end = index[0].to_pydatetime(), (index[-1] + pd.Timedelta(minutes=15)).to_pydatetime()
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))
    grid = microgrid.Grid()
    steps = []

    def step(name, f):
        t = time.perf_counter()
        out = f()
        steps.append((name, time.perf_counter() - t, peak_mib()))
        return out

    step("register_all", lambda: grid.register_all(members))
    step("record_wide", lambda: grid.record_wide(produced, consumed))
    del produced, consumed
    step("clear", lambda: grid.clear(start, end, microgrid.Mechanism.SUPPLY_DEMAND_RATIO, tariff))
    bills = step("bill", lambda: grid.bill(start, end, tariff))
    settlement = step("settle", lambda: grid.settle(start, end, tariff, rate=Decimal("90000"), operator_address=OPERATOR))
    day = start + dt.timedelta(days=1)
    frames = step(
        "views as DataFrames",
        lambda: (
            microgrid.to_frame(grid.summaries_arrow(start, end)),
            microgrid.to_frame(grid.allocations_arrow(start, end, prosumer_ids=[ids[0]])),
            microgrid.to_frame(grid.trades_arrow(start, day)),
        ),
    )
    assert settlement.is_conserved() and len(bills) == PROSUMERS
    print("| step | time | peak RSS so far |")
    print("| --- | --- | --- |")
    for name, seconds, peak in steps:
        print(f"| {name} | {seconds:.3f} s | {peak} MiB |")
    total = sum(s for _, s, _ in steps)
    print(f"| whole month | {total:.3f} s | {peak_mib()} MiB |")
    print(f"views: {', '.join(f'{len(f):,} rows' for f in frames)}; record_wide {PROSUMERS * TIMEFRAMES / steps[1][1] / 1e6:.1f} M readings/s")


if __name__ == "__main__":
    main()

"""Record readings from a pandas DataFrame, next to the same readings
recorded row by row from Python, in one run (in-memory store).

    python benches/py_ingest.py [READINGS]      # default 10,000,000

Row by row is timed on a sample (default 20,000 rows: one call per row is
slow) and its rate extrapolated; the script says so in its output.
"""

import datetime as dt
import sys
import time

import pandas as pd

import microgrid

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
SAMPLE = min(20_000, TOTAL)
HOUSEHOLDS = 1_000
days = max(1, -(-TOTAL // (HOUSEHOLDS * 96)))

t = time.perf_counter()
frame = pd.DataFrame(microgrid.simulate(HOUSEHOLDS, dt.date(2026, 1, 1), days, seed=3)).iloc[:TOTAL]
frame["start"] = pd.to_datetime(frame["start"], utc=True)
print(f"simulated {len(frame):,} readings in {time.perf_counter() - t:.1f} s")


def fresh_grid():
    grid = microgrid.Grid()
    for pid in sorted(frame["prosumer_id"].unique()):
        grid.register(pid, pid, "household", dt.date(2025, 1, 1))
    return grid


grid = fresh_grid()
t = time.perf_counter()
report = microgrid.record_frame(grid, frame)
columnar = time.perf_counter() - t
assert report["inserted"] == len(frame)
print(f"DataFrame:    {len(frame):>11,} readings in {columnar:8.2f} s = {len(frame) / columnar:>12,.0f} readings/s")

grid = fresh_grid()
rows = frame.iloc[:SAMPLE]
t = time.perf_counter()
for start, pid, produced, consumed in rows[["start", "prosumer_id", "produced_wh", "consumed_wh"]].itertuples(index=False):
    grid.record([start.to_pydatetime()], [pid], [int(produced)], [int(consumed)])
per_row = time.perf_counter() - t
rate = SAMPLE / per_row
print(f"row by row:   {SAMPLE:>11,} readings in {per_row:8.2f} s = {rate:>12,.0f} readings/s "
      f"(extrapolated to {len(frame):,}: {len(frame) / rate:,.0f} s)")
print(f"ratio: DataFrame is {len(frame) / columnar / rate:,.0f}x faster per reading")

"""A month of a community, side by side in one run: the library from Rust
(`examples/month.rs` on a store), the memory floor (copying the month's
readings once), and a plain numpy script of the same SDR clearing with
month totals per prosumer (floats; the yardstick a notebook user writes).

    .venv/bin/python benches/month_compare.py [PROSUMERS ...] [--store URL]

Defaults: 10,000 prosumers on the memory store. Each measurement runs in
its own process so that its peak memory (VmHWM / ru_maxrss) is its own.
Build first: `cargo build --release --example month --features postgres,mongodb`
(or without the features for memory and SQLite only).
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEFRAMES = 30 * 96


def numpy_month(prosumers: int) -> dict:
    """SDR clearing per timeframe and month totals per prosumer, in floats."""
    rng = np.random.default_rng(7)
    produced = rng.integers(0, 2_000, size=(TIMEFRAMES, prosumers), dtype=np.int32)
    consumed = rng.integers(0, 1_500, size=(TIMEFRAMES, prosumers), dtype=np.int32)
    r, e = 0.30, 0.08
    t0 = time.perf_counter()
    net = produced.astype(np.int64) - consumed
    surplus = np.maximum(net, 0)
    deficit = np.maximum(-net, 0)
    supply = surplus.sum(axis=1)
    demand = deficit.sum(axis=1)
    shared = np.minimum(supply, demand)
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = np.where(demand > 0, supply / np.maximum(demand, 1), np.inf)
        sell = np.where(sdr <= 1, e * r / ((r - e) * sdr + e), e)
        sell = np.where(supply == 0, r, sell)
        sold = surplus * np.where(supply > 0, shared / np.maximum(supply, 1), 0.0)[:, None]
        bought = deficit * np.where(demand > 0, shared / np.maximum(demand, 1), 0.0)[:, None]
    exported = surplus - sold
    imported = deficit - bought
    price = sell[:, None] / 1000.0
    amount = (bought - sold) * price + imported * (r / 1000) - exported * (e / 1000)
    totals = {
        "produced": produced.sum(axis=0, dtype=np.int64),
        "consumed": consumed.sum(axis=0, dtype=np.int64),
        "sold": sold.sum(axis=0),
        "bought": bought.sum(axis=0),
        "amount": amount.sum(axis=0),
    }
    took = time.perf_counter() - t0
    assert totals["amount"].shape == (prosumers,)
    return {
        "numpy_s": took,
        "numpy_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def rust_month(prosumers: int, store: str) -> dict:
    exe = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples", "month")
    out = subprocess.run([exe, store, str(prosumers), "--json"], check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = sys.argv[1:]
    store = "memory:"
    if "--store" in args:
        i = args.index("--store")
        store = args[i + 1]
        del args[i : i + 2]
    if "--numpy-only" in args:
        print(json.dumps(numpy_month(int(args[0]))))
        return
    sizes = [int(a) for a in args] or [10_000]
    for n in sizes:
        rust = rust_month(n, store)
        numpy = json.loads(
            subprocess.run([sys.executable, __file__, str(n), "--numpy-only"], check=True, capture_output=True, text=True).stdout
        )
        clear_bill = rust["clear_s"] + rust["bill_s"]
        print(f"\n{n:,} prosumers × 30 days on {store.split(':')[0]}")
        print("| what | time | peak memory |")
        print("| --- | --- | --- |")
        for stage in ["register", "record", "clear", "bill", "settle", "views"]:
            print(f"| {stage} | {rust[stage + '_s']:.3f} s | {rust[stage + '_peak_mb']} MB |")
        print(f"| register + record + clear + bill + settle | {rust['pipeline_s']:.3f} s | {rust['peak_mb']} MB |")
        print(f"| copy the readings once, fresh memory (floor) | {rust['copy_fresh_s']:.3f} s | |")
        print(f"| copy the readings once, warm buffers (floor) | {rust['copy_warm_s']:.3f} s | |")
        print(f"| numpy: SDR clearing + month totals (float) | {numpy['numpy_s']:.3f} s | {numpy['numpy_peak_mb']} MB |")
        print(
            f"clear + bill = {clear_bill:.3f} s: {clear_bill / rust['copy_fresh_s']:.1f}x the fresh copy, "
            f"{clear_bill / rust['copy_warm_s']:.1f}x the warm copy; numpy / (clear + bill) = {numpy['numpy_s'] / clear_bill:.1f}x"
        )


if __name__ == "__main__":
    main()

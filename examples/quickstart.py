"""Quickstart in Python: a simulated week of 20 households, cleared with
SDR, billed and settled in bitcoin, all in memory.

    python examples/quickstart.py
"""

import datetime as dt
from decimal import Decimal

import microgrid

UTC = dt.timezone.utc
start = dt.datetime(2026, 6, 1, tzinfo=UTC)
end = start + dt.timedelta(days=7)

grid = microgrid.Grid()  # or microgrid.Grid("sqlite:books.db")
data = microgrid.simulate(20, start.date(), 7, seed=1)
# Each member gets its own payout address (made-up regtest ones here: use
# the members' real addresses); one in four has none and is paid by invoice.
for i, pid in enumerate(sorted(set(data["prosumer_id"]))):
    grid.register(pid, f"Household {i + 1}", microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1),
                  address=microgrid.regtest_address(i) if i % 4 else None)
print(grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"]))

tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"), grid_fee=Decimal("0.02"), fixed_fee=Decimal("1.00"))
print(grid.clear(start, end, microgrid.Mechanism.SUPPLY_DEMAND_RATIO, tariff))

summary = grid.summaries(start, end)
print(f"shared {sum(summary['shared_wh']) / 1000:.1f} kWh, imported {sum(summary['import_wh']) / 1000:.1f} kWh")
for bill in grid.bill(start, end, tariff)[:5]:
    print(f"{bill['prosumer_id']}: owes {bill['total']:.2f} EUR, saves {bill['saving']:.2f}")

settlement = grid.settle(start, end, tariff, rate=Decimal("90000"),
                         operator_address=microgrid.regtest_address(10_000))
print("sendmany:", settlement.sendmany_json())
print("invoices:", len(settlement.invoices()), "conserved:", settlement.is_conserved())

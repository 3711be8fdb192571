"""A month with a community battery from Python: October 2026 in Vienna
(a 25-hour day on Sunday the 25th), 20 simulated households and a battery
of 100 kWh, 50 kW in and out, 90 % round trip, cleared with and without
the battery on two grids in memory, with grid prices by time of use in
Vienna time. Prints the battery's totals, its state of charge on the
25-hour day, the self-sufficiency with and without it, and its bill.

Run: python examples/battery_month.py
"""

import datetime as dt
from zoneinfo import ZoneInfo

import microgrid

VIENNA = ZoneInfo("Europe/Vienna")
UTC = dt.timezone.utc


def local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), VIENNA).astimezone(UTC)


def main() -> None:
    start, end = local_midnight(dt.date(2026, 10, 1)), local_midnight(dt.date(2026, 11, 1))
    tariff = microgrid.Tariff(
        "0.25", "0.07",
        time_zone="Europe/Vienna",
        windows=[
            {"start": "17:00", "end": "20:00", "import_price": "0.38", "export_price": "0.07", "days": "weekdays"},
            {"start": "00:00", "end": "06:00", "import_price": "0.18", "export_price": "0.05", "months": [10, 11, 12, 1, 2, 3]},
        ],
        grid_fee="0.04",
        network_charge="0.015",
        fixed_fee="3.10",
    )
    data = microgrid.simulate(20, dt.date(2026, 9, 30), 33, seed=2026)
    battery = microgrid.Battery(
        "battery", capacity_wh=100_000, max_charge_w=50_000, max_discharge_w=50_000, round_trip_efficiency="0.9"
    )

    grids = {}
    for name in ("with", "without"):
        grid = microgrid.Grid()
        for pid in sorted(set(data["prosumer_id"])):
            grid.register(pid, pid, microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 9, 30))
        keep = [k for k, s in enumerate(data["start"]) if start <= s < end]
        grid.record(
            [data["start"][k] for k in keep],
            [data["prosumer_id"][k] for k in keep],
            [data["produced_wh"][k] for k in keep],
            [data["consumed_wh"][k] for k in keep],
        )
        if name == "with":
            # The battery joins on 1 October (00:00 UTC, 02:00 in Vienna).
            grid.register("battery", "Community battery", microgrid.ProsumerKind.BATTERY, dt.date(2026, 10, 1))
            grid = grid.with_battery(battery)
        grid.clear(start, end, "sdr", tariff)
        grids[name] = grid

    states = grids["with"].battery_states(start, end)
    charged, discharged = sum(states["charged_wh"]), sum(states["discharged_wh"])
    print(f"The battery in October ({len(states['start'])} quarter-hours):")
    print(f"  charged {charged} Wh, stored {sum(states['stored_wh'])} Wh, losses {sum(states['loss_wh'])} Wh, discharged {discharged} Wh")
    print(f"  state of charge {states['soc_start_wh'][0]} Wh at the start, {states['soc_end_wh'][-1]} Wh at the end")
    day = grids["with"].battery_states(local_midnight(dt.date(2026, 10, 25)), local_midnight(dt.date(2026, 10, 26)))
    print(f"  on the 25th ({len(day['start'])} quarter-hours): highest state of charge {max(day['soc_end_wh'])} Wh")

    print("Self-sufficiency of the households:")
    for name, grid in grids.items():
        s = grid.summaries(start, end)
        consumed = sum(s["consumption_wh"]) - (charged if name == "with" else 0)
        imported = sum(s["import_wh"])
        print(f"  {name:<7} the battery: {100 * (consumed - imported) / consumed:6.2f} %  (imported {imported} Wh)")

    bill = next(b for b in grids["with"].bill(start, end, tariff) if b["prosumer_id"] == "battery")
    print(
        f"The battery's bill: bought {bill['bought_wh']} Wh for {bill['purchases']:.2f}, "
        f"sold {bill['sold_wh']} Wh for {bill['sales']:.2f}, total {bill['total']:.2f} EUR"
    )


if __name__ == "__main__":
    main()

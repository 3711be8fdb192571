"""Tariffs from Python: time-of-use windows in a local time zone (across
daylight-saving changes), days of the week and seasons, a network charge
on shared energy on its own bill line, and the fixed fee per calendar month
prorated by registration."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import microgrid
import pytest

from conftest import UTC

VIENNA = ZoneInfo("Europe/Vienna")
QUARTER = dt.timedelta(minutes=15)
PEAK = {"start": "17:00", "end": "20:00", "import_price": "0.40", "export_price": "0.08"}


def local_day(day):
    """The UTC quarter-hours of a local day in Vienna."""
    start = dt.datetime.combine(day, dt.time(0), VIENNA).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), VIENNA).astimezone(UTC)
    n = int((end - start) / QUARTER)
    return [start + k * QUARTER for k in range(n)]


def vienna_tariff(**kw):
    return microgrid.Tariff("0.25", "0.07", time_zone="Europe/Vienna", windows=[PEAK], **kw)


@pytest.mark.parametrize("day, quarters", [(dt.date(2026, 3, 28), 96), (dt.date(2026, 3, 29), 92), (dt.date(2026, 10, 25), 100)])
def test_a_local_window_holds_twelve_quarter_hours_on_23_24_and_25_hour_days(day, quarters):
    t = vienna_tariff()
    starts = local_day(day)
    assert len(starts) == quarters
    peak = [s for s in starts if t.grid_prices(s) == (Decimal("0.40"), Decimal("0.08"))]
    assert len(peak) == 12
    assert peak[0].astimezone(VIENNA).time() == dt.time(17)
    assert all(t.grid_prices(s) == (Decimal("0.25"), Decimal("0.07")) for s in starts if s not in peak)


def test_days_and_seasons_limit_windows():
    t = microgrid.Tariff(
        "0.25", "0.07",
        time_zone=VIENNA,  # a ZoneInfo works as well as its name
        windows=[
            {"start": dt.time(17), "end": dt.time(20), "import_price": "0.40", "export_price": "0.07", "days": "weekdays"},
            {"start": "00:00", "end": "24:00", "import_price": "0.20", "export_price": "0.07", "days": ["sat", "Sunday"]},
            {"start": "10:00", "end": "16:00", "import_price": "0.12", "export_price": "0.03", "days": [0, 1, 2, 3, 4], "months": [4, 5, 6, 7, 8, 9]},
        ],
    )
    assert t.time_zone == "Europe/Vienna"
    at = lambda *a: dt.datetime(*a, tzinfo=VIENNA).astimezone(UTC)  # noqa: E731
    assert t.grid_prices(at(2026, 7, 3, 17, 0)) == (Decimal("0.40"), Decimal("0.07"))  # a Friday
    assert t.grid_prices(at(2026, 7, 4, 17, 0)) == (Decimal("0.20"), Decimal("0.07"))  # a Saturday
    assert t.grid_prices(at(2026, 7, 3, 12, 0)) == (Decimal("0.12"), Decimal("0.03"))  # summer midday
    assert t.grid_prices(at(2026, 1, 9, 12, 0)) == (Decimal("0.25"), Decimal("0.07"))  # winter midday
    assert "Europe/Vienna" in repr(t)


def test_clearing_and_billing_use_local_prices_and_the_network_charge():
    grid = microgrid.Grid()
    grid.register("pv", "Solar roof", "household", dt.date(2026, 1, 1))
    grid.register("flat", "Flat", "household", dt.date(2026, 1, 1))
    # Monday 30 March 2026, the first working day of summer time: 17:00 in Vienna is 15:00 UTC.
    start = dt.datetime(2026, 3, 30, 14, 45, tzinfo=UTC)
    starts = [start + k * QUARTER for k in range(2)]
    grid.record([s for s in starts for _ in (0, 1)], ["pv", "flat"] * 2, [1_000, 0, 1_000, 0], [0, 3_000, 0, 3_000])
    t = vienna_tariff(grid_fee="0.04", network_charge="0.02")
    end = starts[-1] + QUARTER
    grid.clear(start, end, "mmr", t)
    bills = {b["prosumer_id"]: b for b in grid.bill(start, end, t)}
    flat = bills["flat"]
    assert flat["imports"] == Decimal("1.30")  # 2 kWh at 0.25 (16:45 local), 2 kWh at the 0.40 peak
    assert flat["bought_wh"] == 2_000
    assert flat["network_charge"] == Decimal("0.04")  # 2 kWh shared at 0.02
    assert flat["grid_fee"] == Decimal("0.16")  # 4 kWh imported at 0.04
    assert bills["pv"]["network_charge"] == 0
    for b in bills.values():
        assert b["total"] == (
            b["purchases"] - b["sales"] + b["imports"] - b["exports"]
            + b["grid_fee"] + b["network_charge"] + b["fixed_fee"] + b["operator_margin"]
        )


def test_the_fixed_fee_is_per_month_and_prorated_by_registration():
    t = microgrid.Tariff("0.30", "0.08", fixed_fee="3.00")
    june, july = dt.datetime(2026, 6, 1, tzinfo=UTC), dt.datetime(2026, 7, 1, tzinfo=UTC)
    assert t.fixed_fee == Decimal("3.00")
    assert t.fixed_fee_between(june, july) == Decimal("3")
    assert t.fixed_fee_between(dt.datetime(2026, 6, 28, tzinfo=UTC), july) == Decimal("0.3")
    weeks = [june + dt.timedelta(days=7 * k) for k in range(5)] + [july]
    assert sum(t.fixed_fee_between(a, b) for a, b in zip(weeks, weeks[1:])) == Decimal("3")

    grid = microgrid.Grid()
    grid.register("early", "Early", "household", dt.date(2026, 1, 1))
    grid.register("late", "Late", "household", dt.date(2026, 6, 28))
    # A reading per member and day at noon (the late member from the 28th on).
    starts, ids = [], []
    for d in range(30):
        for pid in ["early"] if d < 27 else ["early", "late"]:
            starts.append(june + dt.timedelta(days=d, hours=12))
            ids.append(pid)
    grid.record(starts, ids, [500] * len(ids), [100] * len(ids))
    grid.clear(june, july, "sdr", t)
    month = {b["prosumer_id"]: b["fixed_fee"] for b in grid.bill(june, july, t)}
    assert month == {"early": Decimal("3"), "late": Decimal("0.3")}
    weekly = {"early": Decimal(0), "late": Decimal(0)}
    for a, b in zip(weeks, weeks[1:]):
        for bill in grid.bill(a, b, t):
            weekly[bill["prosumer_id"]] += bill["fixed_fee"]
    assert weekly == month


@pytest.mark.parametrize(
    "kwargs, kind, argument",
    [
        ({"time_zone": "Mars/Olympus"}, "unknown_time_zone", "time_zone"),
        ({"time_zone": 1}, "invalid_type", "time_zone"),
        ({"time_zone": dt.timezone.utc}, "invalid_type", "time_zone"),
        ({"windows": [dict(PEAK, start="17:10")]}, "tariff_not_aligned", "windows[0]"),
        ({"windows": [PEAK], "timeframe_minutes": 60, "time_zone": "Asia/Kolkata"}, "tariff_not_aligned", "windows[0]"),
        ({"windows": [PEAK], "timeframe_minutes": 7}, "invalid_timeframe_length", "timeframe_minutes"),
        ({"windows": [PEAK, dict(PEAK, start="19:00", end="21:00")]}, "invalid_time_of_use", "windows[1]"),
        ({"windows": [dict(PEAK, start="20:00", end="17:00")]}, "invalid_time_of_use", "windows[0]"),
        ({"windows": [dict(PEAK, start="25:00")]}, "invalid_value", "windows[0].start"),
        ({"windows": [dict(PEAK, start="5pm")]}, "invalid_value", "windows[0].start"),
        ({"windows": [dict(PEAK, start=dt.time(17, 0, 30))]}, "invalid_value", "windows[0].start"),
        ({"windows": [dict(PEAK, start=17.0)]}, "invalid_type", "windows[0].start"),
        ({"windows": [dict(PEAK, import_price=0.4)]}, "invalid_type", "windows[0].import_price"),
        ({"windows": [dict(PEAK, days="someday")]}, "invalid_value", "windows[0].days"),
        ({"windows": [dict(PEAK, days=["mon", 7])]}, "out_of_range", "windows[0].days"),
        ({"windows": [dict(PEAK, days=[True])]}, "invalid_type", "windows[0].days"),
        ({"windows": [dict(PEAK, days=[])]}, "invalid_time_of_use", "windows[0]"),
        ({"windows": [dict(PEAK, months=[0])]}, "invalid_time_of_use", "windows[0].months"),
        ({"windows": [dict(PEAK, months="summer")]}, "invalid_type", "windows[0].months"),
        ({"windows": [dict(PEAK, frm="17:00")]}, "invalid_value", "windows[0]"),
        ({"windows": [{"start": "17:00", "end": "20:00", "import_price": "0.4"}]}, "missing_value", "windows[0]"),
        ({"windows": PEAK}, "invalid_type", "windows"),
        ({"windows": "17:00-20:00"}, "invalid_type", "windows"),
        ({"windows": [None]}, "invalid_type", "windows[0]"),
        ({"network_charge": "-0.01"}, "invalid_price", None),
        ({"network_charge": 0.01}, "invalid_type", "network_charge"),
    ],
)
def test_bad_tariffs_are_validation_errors_naming_the_argument(kwargs, kind, argument):
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.Tariff("0.25", "0.07", **kwargs)
    assert e.value.kind == kind, str(e.value)
    if argument is not None:
        assert e.value.details.get("argument") == argument, (e.value.details, str(e.value))


def test_errors_carry_their_details():
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.Tariff("0.25", "0.07", windows=[dict(PEAK, start="17:10")])
    assert e.value.details["what"] == "time-of-use window 17:10-20:00"
    assert e.value.details["minutes"] == 15
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.Tariff("0.25", "0.07", time_zone="Mars/Olympus")
    assert e.value.details["value"] == "Mars/Olympus"
    with pytest.raises(microgrid.ValidationError) as e:
        vienna_tariff().grid_prices(dt.datetime(2026, 3, 30, 15, 5, tzinfo=UTC))
    assert e.value.kind == "misaligned_timeframe"


def test_clearing_a_grid_of_other_timeframes_with_a_quarter_hour_window_is_refused():
    grid = microgrid.Grid(timeframe_minutes=60)
    t = microgrid.Tariff("0.25", "0.07", windows=[dict(PEAK, start="17:30")])
    start = dt.datetime(2026, 3, 30, tzinfo=UTC)
    with pytest.raises(microgrid.ValidationError) as e:
        grid.clear(start, start + dt.timedelta(hours=1), "sdr", t)
    assert e.value.kind == "tariff_not_aligned"
    assert e.value.details["minutes"] == 60
    # Built for hours, it clears.
    hourly = microgrid.Tariff("0.25", "0.07", timeframe_minutes=60, windows=[PEAK])
    assert grid.clear(start, start + dt.timedelta(hours=1), "sdr", hourly)["cleared"] == 1

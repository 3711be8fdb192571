"""The community battery from Python: built with exact inputs (each refusal
names its input), cleared with the members on every store, its state of
charge per timeframe as columns and as an Arrow table, its own bill, and
its timeframes cleared in time order."""

import datetime as dt
from decimal import Decimal

import microgrid
import pytest

from conftest import UTC

START = dt.datetime(2026, 6, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def battery(**kw):
    args = dict(capacity_wh=40_000, max_charge_w=12_000, max_discharge_w=10_000, round_trip_efficiency="0.9", initial_soc_wh=5_000)
    args.update(kw)
    return microgrid.Battery("battery", **args)


def books(url, with_battery=True, households=8, days=2):
    grid = microgrid.Grid(url)
    data = microgrid.simulate(households, START.date(), days, seed=5)
    for pid in sorted(set(data["prosumer_id"])):
        grid.register(pid, pid, microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1))
    grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"])
    if not with_battery:
        return grid
    grid.register("battery", "Community battery", microgrid.ProsumerKind.BATTERY, START.date())
    return grid.with_battery(battery())


def test_a_battery_takes_part_in_clearing_on_every_store(store_url):
    grid = books(store_url)
    plain = books("memory:", with_battery=False)
    end = START + 2 * DAY
    tariff = microgrid.Tariff("0.30", "0.08", network_charge="0.01")
    assert grid.clear(START, end, "sdr", tariff) == {"cleared": 192, "already_cleared": 0}
    plain.clear(START, end, "sdr", tariff)

    s = grid.battery_states(START, end)
    assert len(s["start"]) == 192 and s["start"][0] == START
    assert s["soc_start_wh"][0] == 5_000
    for k in range(192):
        assert 0 <= s["soc_end_wh"][k] <= 40_000
        assert s["charged_wh"][k] == s["stored_wh"][k] + s["loss_wh"][k]
        assert s["stored_wh"][k] == int(Decimal(s["charged_wh"][k]) * Decimal("0.9"))
        assert s["charged_wh"][k] <= 3_000 and s["discharged_wh"][k] <= 2_500  # 12 kW, 10 kW over 15 minutes
        assert s["soc_end_wh"][k] == s["soc_start_wh"][k] + s["stored_wh"][k] - s["discharged_wh"][k]
        if k:
            assert s["soc_start_wh"][k] == s["soc_end_wh"][k - 1]
    charged, discharged = sum(s["charged_wh"]), sum(s["discharged_wh"])
    assert charged > 0 and discharged > 0

    # It charges from what would be exported and discharges into what would be imported.
    with_b, without = grid.summaries(START, end), plain.summaries(START, end)
    assert sum(without["export_wh"]) - sum(with_b["export_wh"]) == charged
    assert sum(without["import_wh"]) - sum(with_b["import_wh"]) == discharged

    bills = {b["prosumer_id"]: b for b in grid.bill(START, end, tariff)}
    assert bills["battery"]["bought_wh"] == charged and bills["battery"]["sold_wh"] == discharged
    assert bills["battery"]["imported_wh"] == 0 and bills["battery"]["exported_wh"] == 0

    # The second day again: nothing to do; a later day first is refused.
    assert grid.clear(START + DAY, end, "sdr", tariff) == {"cleared": 0, "already_cleared": 96}


def test_a_battery_clears_in_time_order():
    grid = books("memory:", days=3)
    tariff = microgrid.Tariff("0.30", "0.08")
    with pytest.raises(microgrid.ConflictError) as e:
        grid.clear(START + DAY, START + 2 * DAY, "sdr", tariff)
    assert e.value.kind == "battery_history"
    assert e.value.details["id"] == "battery"
    assert e.value.details["start"] == START + DAY
    assert grid.summaries(START, START + 3 * DAY)["start"] == []
    grid.clear(START, START + DAY, "sdr", tariff)
    grid.clear(START + DAY, START + 3 * DAY, "sdr", tariff)
    # The state carries over from one clear to the next.
    first = grid.battery_states(START, START + DAY)
    second = grid.battery_states(START + DAY, START + 2 * DAY)
    assert second["soc_start_wh"][0] == first["soc_end_wh"][-1]
    # The same books opened without the battery see none.
    assert grid.battery is not None and grid.battery.id == "battery"


def test_the_states_as_an_arrow_table():
    pa = pytest.importorskip("pyarrow")
    grid = books("memory:", days=1)
    grid.clear(START, START + DAY, "mmr", microgrid.Tariff("0.30", "0.08"))
    table = pa.table(grid.battery_states_arrow(START, START + DAY))
    assert table.column_names == ["start", "soc_start_wh", "charged_wh", "stored_wh", "loss_wh", "discharged_wh", "soc_end_wh"]
    assert table.schema.field("start").type == pa.timestamp("s", tz="UTC")
    assert table.schema.field("charged_wh").type == pa.int64()
    assert table.to_pydict()["soc_end_wh"] == grid.battery_states(START, START + DAY)["soc_end_wh"]


@pytest.mark.parametrize(
    "kw, argument",
    [
        (dict(capacity_wh=0), "capacity_wh"),
        (dict(max_charge_w=-1), "max_charge_w"),
        (dict(max_discharge_w=-5), "max_discharge_w"),
        (dict(round_trip_efficiency="1.01"), "round_trip_efficiency"),
        (dict(round_trip_efficiency="0"), "round_trip_efficiency"),
        (dict(round_trip_efficiency="0.1234567"), "round_trip_efficiency"),
        (dict(initial_soc_wh=40_001), "initial_soc_wh"),
        (dict(owner="battery"), "owner"),
    ],
)
def test_each_refused_input_is_named(kw, argument):
    with pytest.raises(microgrid.ValidationError) as e:
        battery(**kw)
    assert e.value.kind == "invalid_battery"
    assert e.value.details["input"] == argument
    assert argument in str(e.value)


def test_floats_and_unregistered_batteries_are_refused():
    with pytest.raises(microgrid.ValidationError) as e:
        battery(round_trip_efficiency=0.9)
    assert e.value.details["argument"] == "round_trip_efficiency"
    b = battery(owner="house-0001")
    assert (b.owner, b.round_trip_efficiency, b.capacity_wh) == ("house-0001", Decimal("0.9"), 40_000)
    assert "Battery('battery'" in repr(b)
    grid = books("memory:", with_battery=False, days=1).with_battery(b)
    with pytest.raises(microgrid.NotFoundError):
        grid.clear(START, START + DAY, "sdr", microgrid.Tariff("0.30", "0.08"))
    grid.register("battery", "Not a battery", "household", START.date())
    with pytest.raises(microgrid.ValidationError) as e:
        grid.clear(START, START + DAY, "sdr", microgrid.Tariff("0.30", "0.08"))
    assert e.value.kind == "invalid_battery" and e.value.details["input"] == "id"
    with pytest.raises(microgrid.NotFoundError):
        microgrid.Grid().battery_states(START, START + DAY)


def test_a_grid_without_the_battery_specification_refuses_to_clear_it():
    grid = microgrid.Grid("memory:")
    data = microgrid.simulate(4, START.date(), 1, seed=5)
    for pid in sorted(set(data["prosumer_id"])):
        grid.register(pid, pid, microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1))
    grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"])
    grid.register("battery", "Community battery", microgrid.ProsumerKind.BATTERY, START.date())
    with pytest.raises(microgrid.ConflictError) as e:
        grid.clear(START, START + DAY, "sdr", microgrid.Tariff("0.30", "0.08"))
    assert e.value.kind == "battery_history"
    assert e.value.details["id"] == "battery"
    assert "with_battery" in str(e.value)
    assert grid.summaries(START, START + DAY)["start"] == []
    # With the specification it clears.
    assert grid.with_battery(battery()).clear(START, START + DAY, "sdr", microgrid.Tariff("0.30", "0.08"))["cleared"] == 96

"""The whole pipeline from Python, on every store the test command starts."""

import datetime as dt
import json
from decimal import Decimal

import microgrid
import pytest

from conftest import JUNE, UTC

OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
ADDRESSES = [
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
    "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
]


def tariff():
    return microgrid.Tariff(Decimal("0.30"), Decimal("0.08"), grid_fee=Decimal("0.02"), fixed_fee="1.50")


def populated(url, households=6, days=3):
    grid = microgrid.Grid(url)
    data = microgrid.simulate(households, dt.date(2026, 6, 1), days, seed=7)
    for i, pid in enumerate(sorted(set(data["prosumer_id"]))):
        grid.register(pid, f"Household {i}", microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1), address=ADDRESSES[i % 3])
    report = grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"])
    assert report == {"inserted": households * days * 96, "replaced": 0, "unchanged": 0}
    return grid, data


def test_a_period_runs_end_to_end_on_every_store(store_url):
    grid, data = populated(store_url)
    end = JUNE + dt.timedelta(days=3)
    assert grid.clear(JUNE, end, "sdr", tariff()) == {"cleared": 288, "already_cleared": 0}
    assert grid.clear(JUNE, end, microgrid.Mechanism.SUPPLY_DEMAND_RATIO, tariff())["already_cleared"] == 288

    summary = grid.summaries(JUNE, end)
    assert len(summary["start"]) == 288
    assert sum(summary["production_wh"]) == sum(data["produced_wh"])
    for s, d, sh, i, e in zip(summary["supply_wh"], summary["demand_wh"], summary["shared_wh"], summary["import_wh"], summary["export_wh"]):
        assert sh == min(s, d) and i - e == d - s

    one = grid.prosumer("house-0002", JUNE, end)
    assert set(one["prosumer_id"]) == {"house-0002"} and len(one["start"]) == 288
    trades = grid.trades(JUNE, end)
    assert sum(trades["energy_wh"]) == sum(summary["shared_wh"])
    mine = grid.trades(JUNE, end, prosumer_id="house-0002")
    assert all("house-0002" in (s, b) for s, b in zip(mine["seller_id"], mine["buyer_id"]))

    bills = grid.bill(JUNE, end, tariff())
    assert len(bills) == 6
    for b in bills:
        assert isinstance(b["total"], Decimal)
        assert b["total"] == b["purchases"] - b["sales"] + b["imports"] - b["exports"] + b["grid_fee"] + b["fixed_fee"] + b["operator_margin"]

    s = grid.settle(JUNE, end, tariff(), rate=Decimal("90000"), operator_address=OPERATOR)
    assert s.is_conserved()
    s.verify()
    again = grid.settle(JUNE, end, tariff(), rate=Decimal("90000"), operator_address=OPERATOR)
    assert (again.id, again.content_hash) == (s.id, s.content_hash)
    outputs = s.sendmany()
    assert json.loads(s.sendmany_json()).keys() == outputs.keys()
    assert all(isinstance(v, Decimal) and v == v.quantize(Decimal("0.00000001")) for v in outputs.values())
    for inv in s.invoices():
        assert inv["uri"].startswith(f"bitcoin:{OPERATOR}?amount=")
    paid = grid.mark_paid(s.id, "ab" * 32)
    assert grid.settlement(s.id).paid_txid == paid.paid_txid == "ab" * 32
    grid.settlement(s.id).verify()


def test_the_settlement_gives_a_psbt_and_a_fee():
    grid, _ = populated("memory:", households=3, days=1)
    end = JUNE + dt.timedelta(days=1)
    grid.clear(JUNE, end, "mmr", tariff())
    # A rate so low that members are owed money: payouts exist.
    s = grid.settle(JUNE, end, tariff(), rate=Decimal("1000"), operator_address=OPERATOR)
    fee = s.fee_estimate(3)
    assert fee["fee_sats"] == 3 * fee["vbytes"]
    paid_out = sum(int(v * 100_000_000) for v in s.sendmany().values())
    if paid_out:
        batch = s.psbt([("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0", paid_out + 50_000, OPERATOR)], OPERATOR, 3)
        assert batch["psbt"].startswith("cHNidP8")
        assert batch["fee_sats"] + batch["change_sats"] == 50_000


def test_decimals_and_datetimes_round_trip_exactly():
    grid = microgrid.Grid()
    grid.register("a", "A", "household", dt.date(2026, 1, 1))
    grid.register("b", "B", "company", dt.date(2026, 1, 1))
    berlin = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2026, 6, 1, 14, 0, tzinfo=berlin)  # 12:00 UTC
    grid.record([local, local], ["a", "b"], [1000, 0], [0, 3000])
    t = microgrid.Tariff("0.123456", "0.000001")
    grid.clear(JUNE, JUNE + dt.timedelta(days=1), "fixed:0.1", t)
    noon = JUNE + dt.timedelta(hours=12)
    s = grid.summaries(noon, noon + dt.timedelta(minutes=15))
    assert s["start"] == [noon]
    assert s["start"][0].tzinfo is not None
    assert s["buy_price_per_kwh"] == [Decimal("0.115637")]  # (0.1·1 + 0.123456·2) / 3, rounded
    one = grid.prosumer("b", noon, noon + dt.timedelta(minutes=15))
    assert one["amount"] == [Decimal("0.346912")]  # 1 kWh at 0.1 + 2 kWh at 0.123456


def test_frames_in_and_out():
    import pandas as pd  # optional for the package, installed for the tests
    data = microgrid.simulate(4, dt.date(2026, 6, 1), 1)
    frame = pd.DataFrame(data)
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    grid = microgrid.Grid()
    for pid in sorted(frame["prosumer_id"].unique()):
        grid.register(pid, pid, "household", dt.date(2026, 1, 1))
    assert microgrid.record_frame(grid, frame)["inserted"] == 4 * 96
    wide = frame.set_index(["start", "prosumer_id"])[["produced_wh", "consumed_wh"]].unstack("prosumer_id").swaplevel(axis=1)
    assert microgrid.record_frame(grid, wide)["unchanged"] == 4 * 96
    grid.clear(JUNE, JUNE + dt.timedelta(days=1), "sdr", tariff())
    out = microgrid.to_frame(grid.summaries(JUNE, JUNE + dt.timedelta(days=1)), index="start")
    assert str(out.index.dtype) == "datetime64[ns, UTC]" or str(out.index.dtype).startswith("datetime64[")
    assert out["shared_wh"].dtype == "int64"
    assert out["production_wh"].sum() == frame["produced_wh"].sum()
    naive = frame.copy()
    naive["start"] = naive["start"].dt.tz_localize(None)
    with pytest.raises(microgrid.ValidationError, match="naive"):
        microgrid.record_frame(grid, naive)


def test_a_period_is_settled_once_voided_and_settled_again_on_every_store(store_url):
    grid, _ = populated(store_url, households=3, days=1)
    end = JUNE + dt.timedelta(days=1)
    grid.clear(JUNE, end, "sdr", tariff())
    first = grid.settle(JUNE, end, tariff(), rate=Decimal("90000"), operator_address=OPERATOR)
    with pytest.raises(microgrid.ConflictError) as conflict:
        grid.settle(JUNE, end, tariff(), rate=Decimal("95000"), operator_address=OPERATOR)
    assert conflict.value.kind == "settlement_conflict"
    assert conflict.value.details["existing"] == first.id
    assert "rate" in conflict.value.details["differs"]
    with pytest.raises(microgrid.ValidationError):
        grid.void_settlement(first.id, "")
    voided = grid.void_settlement(first.id, "wrong rate")
    assert voided.void_reason == "wrong rate" and grid.settlement(first.id).void_reason == "wrong rate"
    with pytest.raises(microgrid.SettlementError) as refused:
        grid.mark_paid(first.id, "ab" * 32)
    assert refused.value.kind == "settlement_voided"
    second = grid.settle(JUNE, end, tariff(), rate=Decimal("95000"), operator_address=OPERATOR)
    assert second.id != first.id and second.void_reason is None
    grid.mark_paid(second.id, "cd" * 32)
    with pytest.raises(microgrid.ConflictError) as paid:
        grid.void_settlement(second.id, "too late")
    assert paid.value.kind == "cannot_void_paid"
    with pytest.raises(microgrid.NotFoundError):
        grid.void_settlement("nope", "x")

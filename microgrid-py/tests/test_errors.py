"""Every exception class, raised by a real bad input."""

import datetime as dt
from decimal import Decimal

import microgrid
import pytest

from conftest import JUNE, UTC

OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


def grid_with_a_cleared_day():
    g = microgrid.Grid()
    g.register("a", "A", "household", dt.date(2026, 1, 1))
    g.register("b", "B", "household", dt.date(2026, 1, 1))
    g.record([JUNE, JUNE], ["a", "b"], [500, 0], [0, 700])
    g.clear(JUNE, JUNE + dt.timedelta(days=1), "sdr", microgrid.Tariff("0.3", "0.1"))
    return g


def test_the_hierarchy():
    for cls in (microgrid.ValidationError, microgrid.ConflictError, microgrid.NotFoundError, microgrid.StorageError, microgrid.SettlementError):
        assert issubclass(cls, microgrid.MicrogridError)
    assert issubclass(microgrid.MicrogridError, Exception)


def test_validation_errors_name_the_input():
    g = microgrid.Grid()
    with pytest.raises(microgrid.ValidationError, match="naive datetime"):
        g.summaries(dt.datetime(2026, 6, 1), dt.datetime(2026, 6, 2))
    with pytest.raises(microgrid.ValidationError, match="float"):
        microgrid.Tariff(0.30, "0.1")
    with pytest.raises(microgrid.ValidationError, match="grid fee .* negative"):
        microgrid.Tariff("0.30", "0.1", grid_fee="-0.01")
    with pytest.raises(microgrid.ValidationError, match="not valid on regtest"):
        g.register("x", "X", "household", dt.date(2026, 1, 1), address="1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2")
    with pytest.raises(microgrid.ValidationError, match="invalid prosumer id"):
        g.register("two words", "X", "household", dt.date(2026, 1, 1))
    with pytest.raises(microgrid.ValidationError, match="unknown prosumer kind"):
        g.register("x", "X", "castle", dt.date(2026, 1, 1))
    g.register("x", "X", "household", dt.date(2026, 1, 1))
    with pytest.raises(microgrid.ValidationError, match="not aligned"):
        g.record([JUNE + dt.timedelta(minutes=7)], ["x"], [1], [1])
    with pytest.raises(microgrid.ValidationError, match="negative"):
        g.record([JUNE], ["x"], [-1], [1])
    with pytest.raises(microgrid.ValidationError, match="pricing mechanism"):
        g.clear(JUNE, JUNE + dt.timedelta(hours=1), "auction", microgrid.Tariff("0.3", "0.1"))


def test_conflicts():
    g = grid_with_a_cleared_day()
    with pytest.raises(microgrid.ConflictError, match="already registered"):
        g.register("a", "again", "household", dt.date(2026, 1, 1))
    with pytest.raises(microgrid.ConflictError, match="already cleared"):
        g.record([JUNE], ["a"], [501], [0])
    assert g.record([JUNE], ["a"], [500], [0])["unchanged"] == 1
    # A new reading for a cleared timeframe would never be billed.
    later = JUNE + dt.timedelta(hours=1)
    with pytest.raises(microgrid.ConflictError, match="after that timeframe was cleared"):
        g.record([later], ["a"], [5], [0])


def test_a_timeframe_that_has_not_ended_cannot_be_cleared():
    g = microgrid.Grid()
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0, minute=0)
    with pytest.raises(microgrid.ValidationError, match="has not ended"):
        g.clear(now, now + dt.timedelta(days=1), "sdr", microgrid.Tariff("0.3", "0.1"))


def test_not_found():
    g = grid_with_a_cleared_day()
    with pytest.raises(microgrid.NotFoundError, match="unknown prosumer nobody"):
        g.record([JUNE], ["nobody"], [1], [1])
    with pytest.raises(microgrid.NotFoundError, match="not fully cleared"):
        g.bill(JUNE, JUNE + dt.timedelta(days=2), microgrid.Tariff("0.3", "0.1"))
    with pytest.raises(microgrid.NotFoundError, match="settlement nope"):
        g.mark_paid("nope", "ab" * 32)


def test_storage_errors(tmp_path):
    with pytest.raises(microgrid.StorageError):
        microgrid.Grid(f"sqlite:{tmp_path / 'no' / 'such' / 'dir' / 'books.db'}")


def test_settlement_errors():
    g = grid_with_a_cleared_day()
    t = microgrid.Tariff("0.3", "0.1")
    day = (JUNE, JUNE + dt.timedelta(days=1))
    with pytest.raises(microgrid.SettlementError, match="not positive"):
        g.settle(*day, t, rate=Decimal(0), operator_address=OPERATOR)
    s = g.settle(*day, t, rate=Decimal(1000), operator_address=OPERATOR)
    with pytest.raises(microgrid.SettlementError, match="transaction id"):
        g.mark_paid(s.id, "xyz")
    with pytest.raises(microgrid.SettlementError, match="fee rate"):
        s.fee_estimate(0)

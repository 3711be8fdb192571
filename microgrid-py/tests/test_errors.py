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
    # A rate of zero is outside (0, 10^15] (RateOutOfRange in the core).
    with pytest.raises(microgrid.SettlementError, match=r"outside \(0, ") as e:
        g.settle(*day, t, rate=Decimal(0), operator_address=OPERATOR)
    assert e.value.kind == "rate_out_of_range"
    assert e.value.details["rate"] == Decimal(0)
    s = g.settle(*day, t, rate=Decimal(1000), operator_address=OPERATOR)
    with pytest.raises(microgrid.SettlementError, match="transaction id"):
        g.mark_paid(s.id, "xyz")
    with pytest.raises(microgrid.SettlementError, match="fee rate"):
        s.fee_estimate(0)


# Machine-readable errors: every exception has `kind` (a stable snake-case
# name) and `details` (a dict: "message" and the offending values).


def _check(e, kind):
    assert isinstance(e, microgrid.MicrogridError)
    assert e.kind == kind, (e.kind, str(e))
    assert isinstance(e.details, dict)
    assert e.details["message"] == str(e)


def test_domain_errors_carry_kind_and_details():
    g = grid_with_a_cleared_day()
    later = JUNE + dt.timedelta(hours=1)
    with pytest.raises(microgrid.ConflictError) as e:
        g.record([later], ["a"], [5], [0])
    _check(e.value, "late_reading")
    assert e.value.details["id"] == "a" and e.value.details["start"] == later

    with pytest.raises(microgrid.ConflictError) as e:
        g.record([JUNE], ["a"], [501], [0])
    _check(e.value, "conflicting_reading")
    assert e.value.details["id"] == "a" and e.value.details["start"] == JUNE

    with pytest.raises(microgrid.ConflictError) as e:
        g.register("a", "again", "household", dt.date(2026, 1, 1))
    _check(e.value, "duplicate_prosumer")
    assert e.value.details["id"] == "a"

    with pytest.raises(microgrid.NotFoundError) as e:
        g.record([JUNE], ["nobody"], [1], [1])
    _check(e.value, "unknown_prosumer")
    assert e.value.details["id"] == "nobody" and e.value.details["argument"] == "prosumer_id"

    with pytest.raises(microgrid.NotFoundError) as e:
        g.bill(JUNE, JUNE + dt.timedelta(days=2), microgrid.Tariff("0.3", "0.1"))
    _check(e.value, "period_not_cleared")
    assert e.value.details["start"] == JUNE + dt.timedelta(days=1)

    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.Tariff("0.1", "0.3")
    _check(e.value, "invalid_price")
    assert e.value.details["value"] == Decimal("0.1") and "what" in e.value.details and "reason" in e.value.details

    with pytest.raises(microgrid.ValidationError) as e:
        g.register("x", "X", "castle", dt.date(2026, 1, 1))
    _check(e.value, "unknown_prosumer_kind")
    assert e.value.details["value"] == "castle"


def test_settlement_errors_carry_kind_and_details():
    g = grid_with_a_cleared_day()
    t = microgrid.Tariff("0.3", "0.1")
    day = (JUNE, JUNE + dt.timedelta(days=1))
    s = g.settle(*day, t, rate=Decimal(1000), operator_address=OPERATOR)
    with pytest.raises(microgrid.ConflictError) as e:
        g.settle(*day, t, rate=Decimal(2000), operator_address=OPERATOR)
    _check(e.value, "settlement_conflict")
    assert e.value.details["existing"] == s.id
    assert e.value.details["start"] == day[0] and e.value.details["end"] == day[1]
    assert "rate" in e.value.details["differs"]

    g.mark_paid(s.id, "ab" * 32)
    with pytest.raises(microgrid.ConflictError) as e:
        g.mark_paid(s.id, "cd" * 32)
    _check(e.value, "already_paid")
    assert e.value.details == {"message": str(e.value), "id": s.id, "paid": "ab" * 32, "txid": "cd" * 32}

    with pytest.raises(microgrid.SettlementError) as e:
        s.fee_estimate(0)
    _check(e.value, "invalid_fee_rate")
    assert e.value.details["sat_per_vb"] == 0 and e.value.details["argument"] == "sat_per_vb"

    with pytest.raises(microgrid.NotFoundError) as e:
        g.mark_paid("nope", "ab" * 32)
    _check(e.value, "not_found")
    assert e.value.details["key"] == "nope"


def test_store_errors_carry_kind_and_details(tmp_path):
    with pytest.raises(microgrid.StorageError) as e:
        microgrid.Grid(f"sqlite:{tmp_path / 'no' / 'such' / 'dir' / 'books.db'}")
    _check(e.value, "database")
    assert "operation" in e.value.details and "reason" in e.value.details
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.Grid("ftp://ann:hunter2@example.invalid/x")
    _check(e.value, "url")
    assert "hunter2" not in str(e.value) and "hunter2" not in e.value.details["url"]


# Exact types: each refusal is a ValidationError naming the argument and
# the offending value or type, and nothing is stored.


def _refused(call, kind, argument):
    with pytest.raises(microgrid.ValidationError) as e:
        call()
    _check(e.value, kind)
    assert e.value.details["argument"] == argument, e.value.details
    assert argument in str(e.value)
    return e.value


def _grid():
    g = microgrid.Grid()
    g.register("a", "A", "household", dt.date(2026, 1, 1))
    return g


def _nothing_stored(g):
    assert g.record([JUNE], ["a"], [100], [0]) == {"inserted": 1, "replaced": 0, "unchanged": 0}


def test_bool_energies_are_refused():
    np = pytest.importorskip("numpy")
    g = _grid()
    e = _refused(lambda: g.record([JUNE], ["a"], [True], [0]), "invalid_type", "produced_wh")
    assert e.details["value"] is True and e.details["type"] == "bool" and e.details["row"] == 0
    e = _refused(lambda: g.record([JUNE], ["a"], [0], [np.True_]), "invalid_type", "consumed_wh")
    assert e.details["type"] == "numpy.bool"
    e = _refused(lambda: g.record([JUNE], ["a"], np.array([True]), np.array([0])), "invalid_type", "produced_wh")
    assert e.details["type"] == "bool"
    _nothing_stored(g)


def test_float_energies_are_refused_even_whole_ones():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    g = _grid()
    long = {"start": [JUNE], "prosumer_id": ["a"], "produced_wh": [100.9], "consumed_wh": [0]}
    whole = dict(long, produced_wh=[100.0])
    for frame in (long, whole):
        _refused(lambda: g.record(pd.DataFrame(frame)), "invalid_type", "produced_wh")
        _refused(lambda: g.record(pl.DataFrame(frame)), "invalid_type", "produced_wh")
        _refused(lambda: g.record(pa.table(frame)), "invalid_type", "produced_wh")
    for column in ([100.9], [100.0], [np.float64(100)], [np.float32(100)], [np.float16(100)], [Decimal(100)], [float("nan")]):
        e = _refused(lambda: g.record([JUNE], ["a"], column, [0]), e_kind(column[0]), "produced_wh")
        assert e.details["row"] == 0
    for array in (np.array([100.9]), np.array([100.0]), np.array([100], dtype=np.float32)):
        e = _refused(lambda: g.record([JUNE], ["a"], array, np.array([0])), "invalid_type", "produced_wh")
        assert e.details["type"] == str(array.dtype)
    e = _refused(lambda: g.record(pd.Series([JUNE]), pd.Series(["a"]), pd.Series([100.9]), pd.Series([0])), "invalid_type", "produced_wh")
    produced = pd.DataFrame({"a": [100.9]}, index=pd.DatetimeIndex([JUNE], name="start"))
    consumed = pd.DataFrame({"a": [0]}, index=produced.index)
    _refused(lambda: g.record_wide(produced, consumed), "invalid_type", "produced_wh")
    _nothing_stored(g)


def e_kind(value):
    """The kind a non-integer energy gets: NaN is a missing value."""
    return "missing_value" if value != value else "invalid_type"


def test_float_and_bool_money_is_refused():
    np = pytest.importorskip("numpy")
    g = grid_with_a_cleared_day()
    for value in (0.3, np.float64(0.3), np.float32(0.3), np.float16(0.3), True, np.True_):
        e = _refused(lambda: microgrid.Tariff(value, "0.1"), "invalid_type", "import_price")
        assert e.details["value"] is value
        assert e.details["type"] == type(value).__name__ if type(value).__module__ == "builtins" else f"numpy.{type(value).__name__}"
        _refused(lambda: microgrid.Tariff("0.3", value), "invalid_type", "export_price")
        _refused(lambda: microgrid.Tariff("0.3", "0.1", grid_fee=value), "invalid_type", "grid_fee")
        _refused(lambda: microgrid.Tariff("0.3", "0.1", fixed_fee=value), "invalid_type", "fixed_fee")
        _refused(lambda: microgrid.Tariff("0.3", "0.1", operator_margin=value), "invalid_type", "operator_margin")
        _refused(
            lambda: g.settle(JUNE, JUNE + dt.timedelta(days=1), microgrid.Tariff("0.3", "0.1"), rate=value, operator_address=OPERATOR),
            "invalid_type",
            "rate",
        )
    for value in (Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")):
        _refused(lambda: microgrid.Tariff(value, "0.1"), "invalid_value", "import_price")
    for value in (Decimal("1E+100000"), 10**40, Decimal("1E-40")):
        _refused(lambda: microgrid.Tariff(value, "0.1"), "out_of_range", "import_price")
    # Exact values of every accepted type.
    for value in (Decimal("0.3"), "0.3", Decimal("3E-1"), 1, np.int64(1)):
        assert microgrid.Tariff(value, "0.1").currency == "EUR"


def test_times_must_be_aware_whole_seconds():
    pd = pytest.importorskip("pandas")
    g = _grid()
    end = JUNE + dt.timedelta(days=1)
    sub = JUNE + dt.timedelta(microseconds=1)
    e = _refused(lambda: g.summaries(sub, end), "subsecond_time", "start")
    assert e.details["value"] == sub
    _refused(lambda: g.summaries(JUNE, end - dt.timedelta(microseconds=500)), "subsecond_time", "end")
    _refused(lambda: g.clear(sub, end, "sdr", microgrid.Tariff("0.3", "0.1")), "subsecond_time", "start")
    e = _refused(lambda: g.record([sub], ["a"], [1], [0]), "subsecond_time", "start")
    assert e.details["row"] == 0
    nanos = pd.Timestamp("2026-06-01T00:00:00.000000001Z")
    _refused(lambda: g.record([nanos], ["a"], [1], [0]), "subsecond_time", "start")
    _refused(lambda: g.record(pd.Series([nanos]), ["a"], [1], [0]), "subsecond_time", "start")
    e = _refused(lambda: g.summaries(dt.datetime(2026, 6, 1), end), "naive_datetime", "start")
    assert e.details["value"] == dt.datetime(2026, 6, 1)
    e = _refused(lambda: g.summaries(dt.date(2026, 6, 1), end), "invalid_type", "start")
    assert e.details["type"] == "datetime.date"
    _nothing_stored(g)


def test_wrong_types_are_validation_errors_not_type_errors():
    g = _grid()
    _refused(lambda: microgrid.Grid(5), "invalid_type", "url")
    _refused(lambda: microgrid.Grid(timeframe_minutes=True), "invalid_type", "timeframe_minutes")
    _refused(lambda: microgrid.Grid(timeframe_minutes=2**64), "out_of_range", "timeframe_minutes")
    _refused(lambda: microgrid.Grid(timeframe_minutes=7), "invalid_timeframe_length", "timeframe_minutes")
    _refused(lambda: g.register(1, "X", "household", dt.date(2026, 1, 1)), "invalid_type", "id")
    _refused(lambda: g.register("x", "X", "household", "2026-01-01"), "invalid_type", "joined")
    _refused(lambda: g.record([JUNE], ["a"], [1], [0], assume_utc=1), "invalid_type", "assume_utc")
    _refused(lambda: g.allocations_arrow(JUNE, JUNE + dt.timedelta(days=1), "a"), "invalid_type", "prosumer_ids")
    _refused(lambda: g.bill(JUNE, JUNE + dt.timedelta(days=1), "tariff"), "invalid_type", "tariff")
    _refused(lambda: microgrid.simulate(-1, dt.date(2026, 6, 1), 1), "out_of_range", "households")
    _refused(lambda: microgrid.simulate(1, dt.date.max, 2), "out_of_range", "days")


def test_python_errors_while_reading_become_validation_errors():
    class Broken:
        def __iter__(self):
            yield 1
            raise RuntimeError("boom")

    g = _grid()
    e = _refused(lambda: g.record([JUNE], ["a"], Broken(), [0]), "invalid_value", "produced_wh")
    assert isinstance(e.__cause__, RuntimeError) and e.details["error"] == "RuntimeError"


def test_too_large_ranges_name_the_bound():
    g = _grid()
    with pytest.raises(microgrid.ValidationError) as e:
        g.summaries(dt.datetime(1900, 1, 1, tzinfo=UTC), JUNE)
    _check(e.value, "too_large")
    assert e.value.details["max"] == 36525 and e.value.details["found"] > 36525 and "what" in e.value.details


def test_the_python_helpers_raise_only_microgrid_errors():
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pytest.importorskip("polars")
    for helper in (microgrid.to_frame, microgrid.to_arrow, microgrid.to_polars):
        # The library's TypeError or ValueError, as the cause.
        with pytest.raises(microgrid.ValidationError) as e:
            helper(5)
        assert e.value.kind in ("invalid_type", "invalid_value") and e.value.details["message"] == str(e.value)
        assert e.value.details["argument"] == "view" and e.value.details["error"] == type(e.value.__cause__).__name__
    _refused(lambda: microgrid.record_frame("not a grid", {}), "invalid_type", "grid")


def test_missing_values_are_missing_value():
    pd = pytest.importorskip("pandas")
    g = _grid()
    for missing in (None, pd.NaT, pd.NA, float("nan")):
        e = _refused(lambda: g.record([JUNE], ["a"], [missing], [0]), "missing_value", "produced_wh")
        assert e.details["row"] == 0
        if not isinstance(missing, float):
            _refused(lambda: g.record([missing], ["a"], [1], [0]), "missing_value", "start")
    _nothing_stored(g)


def test_money_strings_are_plain_decimals_and_dates_have_no_time_of_day():
    for text in ["1_000", "1e3", "0x10", "1.2.3", "", "-", "1 000"]:
        with pytest.raises(microgrid.ValidationError, match="not a decimal number"):
            microgrid.Tariff(text, "0.1")
    assert microgrid.Tariff(" 0.30 ", "-0") is not None
    g = microgrid.Grid()
    with pytest.raises(microgrid.ValidationError, match="time of day") as e:
        g.register("x", "X", "household", dt.datetime(2026, 1, 1, 10, 30))
    assert e.value.kind == "invalid_value"
    g.register("x", "X", "household", dt.datetime(2026, 1, 1))
    assert g.prosumers()[0]["joined"] == dt.date(2026, 1, 1)

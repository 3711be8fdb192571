"""Columns in and out: readings from pandas, polars, pyarrow, numpy and the
Arrow PyCapsule interface; refusals that store nothing; Arrow views that
carry the same numbers as the dict views."""

import datetime as dt
import uuid
from decimal import Decimal

import microgrid
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from conftest import JUNE, UTC

DAY = (JUNE, JUNE + dt.timedelta(days=1))
HOUSEHOLDS = 5


def tariff():
    return microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))


@pytest.fixture(scope="module")
def data():
    return microgrid.simulate(HOUSEHOLDS, dt.date(2026, 6, 1), 1, seed=11)


@pytest.fixture()
def frame(data):
    f = pd.DataFrame(data)
    f["start"] = pd.to_datetime(f["start"], utc=True)
    return f


def fresh(data, url="memory:"):
    grid = microgrid.Grid(url)
    ids = sorted(set(data["prosumer_id"]))
    assert grid.register_all([{"id": i, "name": f"Home {i}", "kind": "household", "joined": dt.date(2026, 1, 1)} for i in ids]) == len(ids)
    return grid


def assert_stored_as(grid, data):
    """The grid holds exactly `data`: sending it again changes nothing."""
    n = len(data["start"])
    assert grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"]) == {"inserted": 0, "replaced": 0, "unchanged": n}


def assert_nothing_stored(grid, data):
    n = len(data["start"])
    assert grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"])["inserted"] == n


class OnlyStream:
    """Exposes nothing but the Arrow C stream interface."""

    def __init__(self, table):
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


def sources(frame):
    """Every kind of long frame, by name (see SOURCES)."""
    categorical = frame.assign(prosumer_id=frame["prosumer_id"].astype("category"))
    table = pa.Table.from_pandas(categorical, preserve_index=False)
    plain = pa.Table.from_pandas(frame.assign(prosumer_id=frame["prosumer_id"].astype(object)), preserve_index=False)
    cases = {
        "pandas categorical": categorical,
        "pandas object strings": frame.assign(prosumer_id=frame["prosumer_id"].astype(object)),
        "pandas default strings": frame,
        "pandas int32 energies": categorical.astype({"produced_wh": "int32", "consumed_wh": "uint16"}),
        "pandas ns starts": categorical.assign(start=categorical["start"].astype("datetime64[ns, UTC]")),
        "pandas Berlin starts": categorical.assign(start=categorical["start"].dt.tz_convert("Europe/Berlin")),
        "pandas pyarrow dtypes": table.to_pandas(types_mapper=pd.ArrowDtype),
        "pyarrow table": table,
        "pyarrow table, plain strings": plain,
        "pyarrow chunked": pa.concat_tables([table.slice(0, 100), table.slice(100)]),
        "pyarrow record batch": table.combine_chunks().to_batches()[0],
        "pyarrow string_view": plain.cast(pa.schema([*plain.schema][:1] + [pa.field("prosumer_id", pa.string_view())] + [*plain.schema][2:])),
        "polars categorical": pl.from_pandas(categorical),
        "polars strings": pl.from_pandas(frame),
        "capsule only": OnlyStream(table),
    }
    assert list(cases) == SOURCES
    return cases


SOURCES = [
    "pandas categorical",
    "pandas object strings",
    "pandas default strings",
    "pandas int32 energies",
    "pandas ns starts",
    "pandas Berlin starts",
    "pandas pyarrow dtypes",
    "pyarrow table",
    "pyarrow table, plain strings",
    "pyarrow chunked",
    "pyarrow record batch",
    "pyarrow string_view",
    "polars categorical",
    "polars strings",
    "capsule only",
]


@pytest.mark.parametrize("kind", SOURCES)
def test_long_frames_of_every_kind(data, frame, kind):
    grid = fresh(data)
    source = sources(frame)[kind]
    assert grid.record(source) == {"inserted": len(frame), "replaced": 0, "unchanged": 0}
    assert_stored_as(grid, data)


def test_four_columns_of_every_kind(data, frame):
    n = len(frame)
    grid = fresh(data)
    cat = frame["prosumer_id"].astype("category")
    # pandas Series
    assert grid.record(frame["start"], cat, frame["produced_wh"], frame["consumed_wh"])["inserted"] == n
    # numpy: datetime64 has no time zone, so it is taken as UTC only when asked
    starts = frame["start"].dt.tz_convert(None).to_numpy()
    produced, consumed = frame["produced_wh"].to_numpy(), frame["consumed_wh"].to_numpy()
    ids = np.array(data["prosumer_id"], dtype=object)
    with pytest.raises(microgrid.ValidationError, match="naive"):
        grid.record(starts, ids, produced, consumed)
    assert grid.record(starts, ids, produced, consumed, assume_utc=True)["unchanged"] == n
    assert grid.record(starts, np.array(data["prosumer_id"]), produced, consumed, assume_utc=True)["unchanged"] == n
    # a pandas Categorical (codes and categories) with numpy energies
    assert grid.record(pd.DatetimeIndex(frame["start"]), pd.Categorical(data["prosumer_id"]), produced.astype("int32"), consumed)["unchanged"] == n
    # Arrow arrays
    table = pa.Table.from_pandas(frame.assign(prosumer_id=cat), preserve_index=False)
    assert grid.record(*[table.column(c) for c in ("start", "prosumer_id", "produced_wh", "consumed_wh")])["unchanged"] == n
    assert grid.record(*[table.column(c).combine_chunks() for c in ("start", "prosumer_id", "produced_wh", "consumed_wh")])["unchanged"] == n
    # polars Series
    pf = pl.from_pandas(frame)
    assert grid.record(pf["start"], pf["prosumer_id"].cast(pl.Categorical), pf["produced_wh"], pf["consumed_wh"])["unchanged"] == n
    assert_stored_as(grid, data)


def test_wide_frames(data, frame):
    grid = fresh(data)
    produced = frame.pivot(index="start", columns="prosumer_id", values="produced_wh")
    consumed = frame.pivot(index="start", columns="prosumer_id", values="consumed_wh")
    assert isinstance(produced.index, pd.DatetimeIndex) and str(produced.index.tz) == "UTC"
    assert grid.record_wide(produced, consumed)["inserted"] == len(frame)
    assert_stored_as(grid, data)
    # the columns may come in another order in the second frame; a start column works as the index
    assert grid.record_wide(produced.reset_index(), consumed[consumed.columns[::-1]])["unchanged"] == len(frame)
    # Arrow tables: a start column and a column per prosumer
    assert grid.record_wide(pa.Table.from_pandas(produced.reset_index()), pl.from_pandas(consumed.reset_index()))["unchanged"] == len(frame)
    # the two-level header of record_frame
    both = pd.concat({"produced_wh": produced, "consumed_wh": consumed}, axis=1).swaplevel(axis=1)
    assert microgrid.record_frame(grid, both)["unchanged"] == len(frame)
    assert microgrid.record_frame(grid, frame)["unchanged"] == len(frame)


def test_wide_refusals_store_nothing(data, frame):
    grid = fresh(data)
    produced = frame.pivot(index="start", columns="prosumer_id", values="produced_wh")
    consumed = frame.pivot(index="start", columns="prosumer_id", values="consumed_wh")
    with pytest.raises(microgrid.ValidationError, match="float"):
        grid.record_wide(produced.astype(float), consumed)
    with pytest.raises(microgrid.ValidationError, match="naive"):
        grid.record_wide(produced.tz_convert(None), consumed.tz_convert(None))
    with pytest.raises(microgrid.ValidationError, match="different starts"):
        grid.record_wide(produced, consumed.iloc[1:])
    with pytest.raises(microgrid.ValidationError, match="different prosumer columns"):
        grid.record_wide(produced, consumed.iloc[:, 1:])
    with pytest.raises(microgrid.NotFoundError, match="unknown prosumer stranger"):
        grid.record_wide(produced.assign(stranger=1), consumed.assign(stranger=1))
    assert_nothing_stored(grid, data)


def bad_frames(frame):
    later = frame["start"] + pd.Timedelta(milliseconds=500)
    one_late = frame["start"].copy()
    one_late.iloc[7] += pd.Timedelta(milliseconds=500)
    cases = {
        "float energies": (frame.assign(produced_wh=frame["produced_wh"].astype(float)), microgrid.ValidationError, "float"),
        "float energies, Arrow": (pa.table(frame.assign(consumed_wh=frame["consumed_wh"] * 1.0)), microgrid.ValidationError, "float"),
        "float energies, polars": (pl.from_pandas(frame).with_columns(pl.col("produced_wh").cast(pl.Float64)), microgrid.ValidationError, "float"),
        "bool energies": (frame.assign(produced_wh=frame["produced_wh"] > 0), microgrid.ValidationError, "bool"),
        "bool energies, Arrow": (pa.table(frame.assign(produced_wh=frame["produced_wh"] > 0)), microgrid.ValidationError, "boolean"),
        "missing energy": (frame.assign(produced_wh=pd.array([None] + [1] * (len(frame) - 1), dtype="Int64")), microgrid.ValidationError, "row 0"),
        "naive starts": (frame.assign(start=frame["start"].dt.tz_convert(None)), microgrid.ValidationError, "naive"),
        "naive starts, Arrow": (pa.table(frame.assign(start=frame["start"].dt.tz_convert(None))), microgrid.ValidationError, "naive"),
        "naive starts, polars": (pl.from_pandas(frame).with_columns(pl.col("start").dt.replace_time_zone(None)), microgrid.ValidationError, "naive"),
        "sub-second start": (frame.assign(start=one_late), microgrid.ValidationError, r"row 7: start \S+\.500Z is not a whole second"),
        "sub-second start, Arrow": (pa.table(frame.assign(start=later)), microgrid.ValidationError, r"row 0: start 2026-06-01T00:00:00.500Z is not a whole second"),
        "unknown id": (frame.assign(prosumer_id=["nobody"] + list(frame["prosumer_id"][1:])), microgrid.NotFoundError, "unknown prosumer nobody"),
        "unknown id, categorical": (frame.assign(prosumer_id=pd.Categorical(list(frame["prosumer_id"][:-1]) + ["nobody"])), microgrid.NotFoundError, "unknown prosumer nobody"),
        "unknown id, Arrow dictionary": (pa.table(frame.assign(prosumer_id=pd.Categorical(["nobody"] + list(frame["prosumer_id"][1:])))), microgrid.NotFoundError, "unknown prosumer nobody"),
        "missing column": (frame.drop(columns="consumed_wh"), microgrid.ValidationError, "consumed_wh"),
    }
    assert list(cases) == BAD
    return cases


BAD = [
    "float energies",
    "float energies, Arrow",
    "float energies, polars",
    "bool energies",
    "bool energies, Arrow",
    "missing energy",
    "naive starts",
    "naive starts, Arrow",
    "naive starts, polars",
    "sub-second start",
    "sub-second start, Arrow",
    "unknown id",
    "unknown id, categorical",
    "unknown id, Arrow dictionary",
    "missing column",
]


@pytest.mark.parametrize("kind", BAD)
def test_refusals_store_nothing(data, frame, kind):
    grid = fresh(data)
    bad, error, message = bad_frames(frame)[kind]
    with pytest.raises(error, match=message):
        grid.record(bad)
    assert_nothing_stored(grid, data)


def test_refusals_of_plain_columns(data):
    grid = fresh(data)
    one = [JUNE], ["house-0001"]
    with pytest.raises(microgrid.ValidationError, match="not an integer"):
        grid.record(*one, [1.5], [0])
    with pytest.raises(microgrid.ValidationError, match="not an integer"):
        grid.record(*one, [True], [0])
    with pytest.raises(microgrid.ValidationError, match="naive datetime"):
        grid.record([dt.datetime(2026, 6, 1)], ["house-0001"], [1], [0])
    with pytest.raises(microgrid.ValidationError, match="not a whole second"):
        grid.record([JUNE + dt.timedelta(microseconds=1)], ["house-0001"], [1], [0])
    with pytest.raises(microgrid.ValidationError, match="differ in length"):
        grid.record(*one, [1, 2], [0])
    with pytest.raises(microgrid.ValidationError, match="four columns"):
        grid.record(*one, [1])
    with pytest.raises(microgrid.ValidationError, match="float64 values are refused"):
        grid.record(*one, np.array([1.0]), np.array([0]))
    assert_nothing_stored(grid, data)


def test_register_all_takes_frames_and_is_all_or_none():
    grid = microgrid.Grid()
    people = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "name": ["A", "B", "C"],
            "kind": ["household", "company", "public"],
            "joined": [dt.date(2026, 1, 1)] * 3,
            "left": [None, dt.date(2026, 7, 1), None],
            "address": ["bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", None, None],
        }
    )
    assert grid.register_all(people) == 3
    rows = {p["id"]: p for p in grid.prosumers()}
    assert rows["b"]["left"] == dt.date(2026, 7, 1) and rows["a"]["network"] == "regtest" and rows["c"]["address"] is None
    more = pl.DataFrame({"id": ["d", "a"], "name": ["D", "again"], "kind": ["other", "household"], "joined": [dt.date(2026, 1, 1)] * 2})
    with pytest.raises(microgrid.ConflictError, match="already registered"):
        grid.register_all(more)
    assert [p["id"] for p in grid.prosumers()] == ["a", "b", "c"]
    assert grid.register_all(pa.table(more.slice(0, 1).to_arrow())) == 1
    with pytest.raises(microgrid.ValidationError, match="unknown prosumer kind"):
        grid.register_all([{"id": "e", "name": "E", "kind": "castle", "joined": dt.date(2026, 1, 1)}])


def decimals(values):
    return [None if v is None else Decimal(v) for v in values]


@pytest.mark.parametrize("mechanism", ["sdr", "mmr", "bill_sharing"])
def test_arrow_views_carry_the_numbers_of_the_dict_views(data, frame, mechanism):
    grid = fresh(data)
    grid.record(frame)
    grid.clear(*DAY, mechanism, tariff())

    summaries = pa.table(grid.summaries_arrow(*DAY))
    assert summaries.schema.field("start").type == pa.timestamp("s", tz="UTC")
    assert summaries.schema.field("buy_price_per_kwh").type == pa.decimal128(38, 6)
    assert summaries.schema.field("buy_price_per_kwh").nullable and not summaries.schema.field("shared_wh").nullable
    listed = grid.summaries(*DAY)
    arrow = summaries.to_pydict()
    assert arrow["start"] == listed["start"]
    for name, values in listed.items():
        if name.endswith("_wh"):
            assert arrow[name] == values, name
        elif name.endswith("_per_kwh"):
            assert decimals(arrow[name]) == decimals(values), name
    if mechanism == "bill_sharing":
        assert set(arrow["community_price_per_kwh"]) == {None}

    allocations = pa.table(grid.allocations_arrow(*DAY))
    field = allocations.schema.field("prosumer_id")
    assert field.type == pa.dictionary(pa.int32(), pa.string())
    assert allocations.column("prosumer_id").chunk(0).dictionary.to_pylist() == [p["id"] for p in grid.prosumers()]
    assert allocations.schema.field("amount").type == pa.decimal128(38, 9)
    assert allocations.num_rows == len(frame)
    for pid in sorted(set(data["prosumer_id"]))[:2]:
        one = pa.table(grid.allocations_arrow(*DAY, prosumer_ids=[pid])).to_pydict()
        listed = grid.prosumer(pid, *DAY)
        assert one["start"] == listed["start"] and set(one["prosumer_id"]) == {pid}
        for name in ("produced_wh", "consumed_wh", "sold_wh", "bought_wh", "imported_wh", "exported_wh"):
            assert one[name] == listed[name], name
        assert decimals(one["amount"]) == decimals(listed["amount"])

    trades = pa.table(grid.trades_arrow(*DAY)).to_pydict()
    listed = grid.trades(*DAY)
    assert trades["start"] == listed["start"]
    assert trades["seller_id"] == listed["seller_id"] and trades["buyer_id"] == listed["buyer_id"]
    assert trades["energy_wh"] == listed["energy_wh"]
    assert decimals(trades["price_per_kwh"]) == decimals(listed["price_per_kwh"])
    mine = pa.table(grid.trades_arrow(*DAY, prosumer_id="house-0002")).to_pydict()
    assert mine["energy_wh"] == grid.trades(*DAY, prosumer_id="house-0002")["energy_wh"]


def test_frames_out(data, frame):
    grid = fresh(data)
    grid.record(frame)
    grid.clear(*DAY, "sdr", tariff())
    out = microgrid.to_frame(grid.summaries_arrow(*DAY), index="start")
    assert str(out.index.dtype) == "datetime64[s, UTC]"
    assert out["shared_wh"].dtype == "int64"
    assert out["production_wh"].sum() == frame["produced_wh"].sum()
    assert isinstance(out["grid_import_price_per_kwh"].iloc[0], Decimal)
    allocations = microgrid.to_frame(grid.allocations_arrow(*DAY))
    assert isinstance(allocations["prosumer_id"].dtype, pd.CategoricalDtype)
    assert allocations.groupby("prosumer_id", observed=True)["produced_wh"].sum().to_dict() == frame.groupby("prosumer_id")["produced_wh"].sum().to_dict()
    polars = microgrid.to_polars(grid.trades_arrow(*DAY))
    assert polars["energy_wh"].sum() == sum(grid.summaries(*DAY)["shared_wh"])
    assert microgrid.to_arrow(grid.summaries(*DAY)).num_rows == 96


def test_the_columnar_path_on_every_store(store_url):
    # The PostgreSQL database is shared by the tests of a run: ids and days
    # of their own.
    tag = uuid.uuid4().hex[:8]
    data = microgrid.simulate(HOUSEHOLDS, dt.date(2026, 2, 1), 1, seed=5)
    data["prosumer_id"] = [f"{tag}-{p}" for p in data["prosumer_id"]]
    frame = pd.DataFrame(data)
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    day = (dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 2, 2, tzinfo=UTC))
    grid = fresh(data, store_url)
    table = pa.Table.from_pandas(frame.assign(prosumer_id=frame["prosumer_id"].astype("category")), preserve_index=False)
    assert grid.record(table)["inserted"] == len(frame)
    with pytest.raises(microgrid.ValidationError, match="float"):
        grid.record(pa.table(frame.assign(produced_wh=frame["produced_wh"] * 1.0)))
    assert grid.record(table)["unchanged"] == len(frame)
    grid.clear(*day, "sdr", tariff())
    summaries = pa.table(grid.summaries_arrow(*day)).to_pydict()
    assert summaries["shared_wh"] == grid.summaries(*day)["shared_wh"]
    mine = pa.table(grid.allocations_arrow(*day, prosumer_ids=sorted(set(data["prosumer_id"]))))
    assert mine.num_rows == len(frame)
    assert sum(mine.column("produced_wh").to_pylist()) == frame["produced_wh"].sum()


def test_a_few_readings_in_a_large_registry():
    # Few ids against many prosumers are looked up in the registry itself,
    # not through a map of all of it.
    grid = microgrid.Grid()
    grid.register_all([{"id": f"p{i:03d}", "name": "P", "kind": "other", "joined": dt.date(2026, 1, 1)} for i in range(100)])
    assert grid.record([JUNE], ["p042"], [5], [0])["inserted"] == 1
    assert grid.record([JUNE, JUNE], pd.Categorical(["p007", "p042"]), [1, 5], [0, 0]) == {"inserted": 1, "replaced": 0, "unchanged": 1}
    with pytest.raises(microgrid.NotFoundError, match="unknown prosumer p100"):
        grid.record([JUNE], ["p100"], [1], [0])
    with pytest.raises(microgrid.NotFoundError, match="unknown prosumer two words"):
        grid.record([JUNE], ["two words"], [1], [0])
    assert pa.table(grid.allocations_arrow(JUNE, JUNE + dt.timedelta(minutes=15))).num_rows == 0

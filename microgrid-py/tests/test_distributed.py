"""A period across a month boundary, cleared and billed on a Dask
LocalCluster of worker processes from Parquet, equals one Grid("memory:")
holding all of it: every timeframe's summary, every bill, the settlement's
content hash, and the views written back as Parquet."""

import datetime as dt
import pickle
from decimal import Decimal

import microgrid
import pyarrow as pa
import pytest
from microgrid import distributed, parquet

from conftest import UTC

START = dt.datetime(2026, 6, 22, tzinfo=UTC)
END = dt.datetime(2026, 7, 13, tzinfo=UTC)  # three weeks, across June/July
HOUSEHOLDS = 30
LATE = dt.date(2026, 7, 2)  # two members join inside the period (prorated fixed fee)
OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
TARIFF = dict(
    import_price=Decimal("0.30"),
    export_price=Decimal("0.08"),
    grid_fee=Decimal("0.02"),
    fixed_fee=Decimal("3.00"),
    operator_margin=Decimal("0.01"),
)


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    """Readings written to Parquet a day at a time, and the registry."""
    root = str(tmp_path_factory.mktemp("readings"))
    ids = None
    late = set()
    day = START
    while day < END:
        data = microgrid.simulate(HOUSEHOLDS, day.date(), 1, seed=day.toordinal())
        if ids is None:
            ids = sorted(set(data["prosumer_id"]))
            late = set(ids[3:5])
        table = parquet.readings_table(data)
        if day.date() < LATE:
            keep = pa.array([p not in late for p in table.column("prosumer_id").to_pylist()])
            table = table.filter(keep)
        assert parquet.write_readings(table, root, name=day.strftime("%Y-%m-%d")) == table.num_rows
        day += dt.timedelta(days=1)
    prosumers = [
        {
            "id": p,
            "name": f"Home {k}",
            "kind": "household",
            "joined": LATE if p in late else dt.date(2026, 1, 1),
            "address": OPERATOR if k % 3 == 0 else None,
        }
        for k, p in enumerate(ids)
    ]
    return root, prosumers


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def rows(table):
    return pa.table(table).to_pylist()


@pytest.mark.parametrize("mechanism", ["sdr", "bill_sharing", "mmr"])
def test_the_cluster_run_equals_one_machine(community, client, mechanism, tmp_path):
    root, prosumers = community
    assert parquet.months(root) == ["2026-06", "2026-07"]
    books_dir = str(tmp_path / "books")
    books = distributed.run(client, root, prosumers, START, END, TARIFF, mechanism, days_per_task=2, books=books_dir)
    single = distributed.single_machine(root, prosumers, START, END, TARIFF, mechanism)
    tariff = microgrid.Tariff(**TARIFF)

    # 21 days in 2-day tasks, cut at the month boundary: 11 tasks.
    assert books.tasks == 11
    assert books.part.start == START and books.part.end == END and books.part.timeframes == 21 * 96
    # Every timeframe's summary.
    expected = pa.table(single.summaries_arrow(START, END))
    assert books.summaries.num_rows == 21 * 96
    assert books.summaries.equals(expected)
    # Every bill, to the last decimal.
    bills = single.bill(START, END, tariff)
    assert len(bills) == HOUSEHOLDS
    assert books.bills == bills
    late = [b for b in bills if b["prosumer_id"] in {p["id"] for p in prosumers if p["joined"] == LATE}]
    assert len(late) == 2 and all(b["fixed_fee"] < bills[0]["fixed_fee"] for b in late)
    # The settlement, made once on the client.
    rate = Decimal("87654.32")
    s = books.settle(rate=rate, operator_address=OPERATOR)
    expected_s = single.settle(START, END, tariff, rate=rate, operator_address=OPERATOR)
    assert s.content_hash == expected_s.content_hash
    assert s.id == expected_s.id
    assert s.canonical_json() == expected_s.canonical_json()
    s.verify()
    # Settling again returns the stored settlement.
    assert books.settle(rate=rate, operator_address=OPERATOR).id == s.id

    # The books as Parquet, by month.
    for table in ("summaries", "allocations", "trades", "bills"):
        assert parquet.months(f"{books_dir}/{table}") == (["2026-06"] if table == "bills" else ["2026-06", "2026-07"])
    by = lambda r: (r["start"], r.get("prosumer_id", ""), r.get("seller_id", ""), r.get("buyer_id", ""))  # noqa: E731
    written = sorted(rows(parquet.read_books(books_dir, "summaries")), key=by)
    assert written == rows(expected)
    written = sorted(rows(parquet.read_books(books_dir, "allocations")), key=by)
    assert written == sorted(rows(single.allocations_arrow(START, END)), key=by)
    written = rows(parquet.read_books(books_dir, "trades"))
    assert len(written) == len(rows(single.trades_arrow(START, END)))
    july = rows(parquet.read_books(books_dir, "summaries", "2026-07"))
    assert len(july) == 12 * 96 and all(r["start"] >= dt.datetime(2026, 7, 1, tzinfo=UTC) for r in july)
    billed = rows(parquet.read_books(books_dir, "bills"))
    assert [b["total"] for b in billed] == [b["total"] for b in bills]


def test_parts_pickle_merge_and_refuse_gaps_overlaps_and_other_registries(community):
    root, prosumers = community
    mid = dt.datetime(2026, 7, 1, tzinfo=UTC)
    first, _ = distributed.bill_range(root, prosumers, START, mid, TARIFF, "sdr")
    second, _ = distributed.bill_range(root, prosumers, mid, END, TARIFF, "sdr")
    again = pickle.loads(pickle.dumps(second))
    assert again.to_bytes() == second.to_bytes()
    assert "timeframes=1152" in repr(again)
    assert microgrid.BillingPart.merge_all([again, first]).to_bytes() == first.merge(second).to_bytes()

    with pytest.raises(microgrid.ValidationError) as e:
        second.merge(first)  # first starts before second ends: an overlap
    assert e.value.kind == "duplicate_clearing" and e.value.details["start"] == START
    short, _ = distributed.bill_range(root, prosumers, START, mid - dt.timedelta(days=1), TARIFF, "sdr")
    with pytest.raises(microgrid.NotFoundError) as e:
        short.merge(second)  # a day missing: a gap
    assert e.value.kind == "period_not_cleared" and e.value.details["start"] == mid - dt.timedelta(days=1)
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.BillingPart.from_bytes(b"not a part")
    assert e.value.kind == "parse"
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.BillingPart.merge_all([first, "a part"])
    assert e.value.kind == "invalid_type"

    # Parts laid out by another registry (one member fewer) are refused.
    others, _ = distributed.bill_range(root, prosumers + [
        {"id": "zz-new", "name": "New", "kind": "household", "joined": dt.date(2026, 1, 1)}
    ], mid, END, TARIFF, "sdr")
    with pytest.raises(microgrid.ValidationError) as e:
        first.merge(others)
    assert e.value.kind == "shape_mismatch"
    grid = microgrid.Grid()
    grid.register_all(prosumers)
    with pytest.raises(microgrid.MicrogridError) as e:
        grid.bill_parts([others], microgrid.Tariff(**TARIFF))
    assert e.value.kind == "shape_mismatch"
    # Half a period bills that half; no parts at all is refused.
    assert len(grid.bill_parts([first], microgrid.Tariff(**TARIFF))) == HOUSEHOLDS - 2
    with pytest.raises(microgrid.MicrogridError):
        grid.settle_parts([], microgrid.Tariff(**TARIFF), rate=Decimal("90000"), operator_address=OPERATOR)


def test_ranges_never_cross_a_month():
    cut = distributed.ranges(dt.datetime(2026, 12, 30, 12, tzinfo=UTC), dt.datetime(2027, 1, 2, tzinfo=UTC), 1)
    assert [(a.isoformat(), b.isoformat()) for a, b in cut] == [
        ("2026-12-30T12:00:00+00:00", "2026-12-31T12:00:00+00:00"),
        ("2026-12-31T12:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("2027-01-01T00:00:00+00:00", "2027-01-02T00:00:00+00:00"),
    ]

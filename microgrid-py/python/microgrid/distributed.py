"""Clearing and billing a long period on a Dask cluster, equal to one machine.

Clearing is independent per timeframe and billing is a sum per member, so
a period partitions by time. :func:`run` cuts ``[start, end)`` into ranges
of whole days and submits one task per range to a ``distributed.Client``.
Each task, in a worker process:

1. builds an in-memory ``Grid`` with the community's registry (the same
   members in the same order everywhere),
2. reads its range's readings from the Parquet directory
   (:mod:`microgrid.parquet`) and records them,
3. clears the range with the library,
4. writes its views (summaries, allocations, trades) as Parquet by month,
   if a ``books`` directory is given,
5. returns its ``BillingPart`` (each member's sums over the range, in
   integer units) and the range's summaries.

The parts are merged pairwise on the workers (a tree, so no process holds
more than two) and the merged part comes back to the client, where the
bills are finished once (fixed fees, bill sharing's per-period prices,
totals) and the period is settled once, in a ``Grid`` holding the registry.
The bills, every timeframe's summary and the settlement's content hash are
those of one ``Grid("memory:")`` holding the whole period
(``microgrid-py/tests/test_distributed.py`` checks it on a ``LocalCluster``).

The tariff crosses process boundaries as the keyword arguments of
``microgrid.Tariff`` (a dict), the community as the rows ``register_all``
takes (a pyarrow table, a pandas frame or a list of dicts).

>>> import datetime as dt, tempfile
>>> from decimal import Decimal
>>> from distributed import Client, LocalCluster        # doctest: +SKIP
>>> from microgrid import distributed, parquet
>>> UTC = dt.timezone.utc
>>> start, end = dt.datetime(2026, 6, 1, tzinfo=UTC), dt.datetime(2026, 7, 1, tzinfo=UTC)
>>> tariff = dict(import_price=Decimal("0.30"), export_price=Decimal("0.08"), fixed_fee=Decimal("2"))
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:  # doctest: +SKIP
...     books = distributed.run(client, "readings/", prosumers, start, end, tariff, "sdr", books="books/")
...     settlement = books.settle(rate=Decimal("90000"), operator_address="bcrt1q...")
>>> books.bills[0]["total"]                              # doctest: +SKIP
Decimal('12.345678901')

Needs ``dask[distributed]`` and ``pyarrow`` (imported when called).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._microgrid import BillingPart, Grid, Settlement, Tariff
from . import parquet

__all__ = ["Books", "bill_range", "merge_parts", "ranges", "run", "single_machine"]

UTC = dt.timezone.utc
VIEWS = ("summaries", "allocations", "trades")


def ranges(start: dt.datetime, end: dt.datetime, days: int = 1) -> List[Tuple[dt.datetime, dt.datetime]]:
    """``[start, end)`` cut into consecutive ranges of ``days`` days (the
    last one shorter), never across a UTC month boundary, so each range's
    readings are in one month's folder.

    >>> [(a.day, b.day) for a, b in ranges(dt.datetime(2026, 6, 28, tzinfo=UTC), dt.datetime(2026, 7, 3, tzinfo=UTC), 2)]
    [(28, 30), (30, 1), (1, 3)]
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    out: List[Tuple[dt.datetime, dt.datetime]] = []
    a = start.astimezone(UTC)
    while a < end:
        month_end = dt.datetime(a.year + (a.month == 12), a.month % 12 + 1, 1, tzinfo=UTC)
        b = min(a + dt.timedelta(days=days), end, month_end)
        out.append((a, b))
        a = b
    return out


def _grid(prosumers: Any, timeframe_minutes: int) -> Grid:
    grid = Grid(timeframe_minutes=timeframe_minutes)
    grid.register_all(prosumers)
    return grid


def bill_range(
    readings: str,
    prosumers: Any,
    start: dt.datetime,
    end: dt.datetime,
    tariff: Mapping[str, Any],
    mechanism: Any,
    *,
    timeframe_minutes: int = 15,
    books: Optional[str] = None,
    views: Sequence[str] = VIEWS,
) -> Tuple[BillingPart, Any]:
    """One task: clears ``[start, end)`` from the readings under
    ``readings`` on a fresh in-memory ``Grid`` with the registry
    ``prosumers``, writes its ``views`` under ``books`` (if given) and
    returns its ``BillingPart`` and its summaries (a pyarrow table)."""
    import pyarrow as pa  # type: ignore[import-untyped]

    grid = _grid(prosumers, timeframe_minutes)
    table = parquet.read_readings(readings, start, end)
    if table.num_rows:
        grid.record(table)
    del table
    t = Tariff(**tariff)
    grid.clear(start, end, mechanism, t)
    summaries = pa.table(grid.summaries_arrow(start, end))
    if books is not None:
        name = start.astimezone(UTC).strftime("%Y%m%dT%H%M")
        for view in views:
            if view == "summaries":
                table = summaries
            elif view == "allocations":
                table = pa.table(grid.allocations_arrow(start, end))
            elif view == "trades":
                table = pa.table(grid.trades_arrow(start, end))
            else:
                raise ValueError(f"unknown view {view!r}: expected one of {VIEWS}")
            parquet.write_by_month(table, os.path.join(books, view), name)
            del table
    return grid.bill_part(start, end, t), summaries


def merge_parts(a: BillingPart, b: BillingPart) -> BillingPart:
    """``a`` followed by ``b`` (one step of the reduction)."""
    return a.merge(b)


def _first(pair: Tuple[BillingPart, Any]) -> BillingPart:
    return pair[0]


def _second(pair: Tuple[BillingPart, Any]) -> Any:
    return pair[1]


@dataclass
class Books:
    """The result of :func:`run`: the period's merged billing part, its
    bills and summaries, and the client-side ``Grid`` (registry only) that
    finished the bills and settles the period."""

    grid: Grid
    """The client's books: the registry, and the settlements made here."""
    tariff: Tariff
    part: BillingPart
    """Every member's sums over the whole period."""
    bills: List[Dict[str, Any]]
    """One dict per member, as ``Grid.bill`` gives them."""
    summaries: Any
    """Every timeframe's summary, a pyarrow table in time order."""
    tasks: int
    """How many ranges were cleared as tasks."""
    timings: Dict[str, float] = field(default_factory=dict)

    def settle(
        self, *, rate: Any, operator_address: str, network: str = "regtest", rate_source: str = "manual"
    ) -> Settlement:
        """Settles the period once, on the client (``Grid.settle_parts``)."""
        return self.grid.settle_parts(
            [self.part],
            self.tariff,
            rate=rate,
            operator_address=operator_address,
            network=network,
            rate_source=rate_source,
        )


def run(
    client: Any,
    readings: str,
    prosumers: Any,
    start: dt.datetime,
    end: dt.datetime,
    tariff: Mapping[str, Any],
    mechanism: Any,
    *,
    days_per_task: int = 1,
    timeframe_minutes: int = 15,
    books: Optional[str] = None,
    views: Sequence[str] = VIEWS,
    grid: Optional[Grid] = None,
) -> Books:
    """Clears and bills ``[start, end)`` on the Dask cluster of ``client``
    (a ``distributed.Client``) from the readings under ``readings`` (a
    directory written by :func:`microgrid.parquet.write_readings`, on a file
    system every worker sees), one task per ``days_per_task`` days.

    ``prosumers`` is the community as ``Grid.register_all`` takes it, sent
    to every worker once; ``tariff`` the keyword arguments of
    ``microgrid.Tariff``; ``mechanism`` a ``Mechanism`` or its name. With
    ``books`` the ``views`` are written there as Parquet by month (by
    default all of ``summaries``, ``allocations``, ``trades``) and the bills as
    ``bills/month=YYYY-MM/<start>_<end>.parquet``. ``grid`` is the client's
    books (with the same registry); by default a new in-memory one.
    """
    import time

    import pyarrow as pa

    t0 = time.perf_counter()
    timings: Dict[str, float] = {}
    if grid is None:
        grid = _grid(prosumers, timeframe_minutes)
    t = Tariff(**tariff)
    # One copy of the community per worker (a list would be scattered item by item).
    community = client.scatter([prosumers], broadcast=True)[0]
    run_id = uuid.uuid4().hex
    tasks = ranges(start, end, days_per_task)
    pairs = [
        client.submit(
            bill_range,
            readings,
            community,
            a,
            b,
            dict(tariff),
            mechanism,
            timeframe_minutes=timeframe_minutes,
            books=books,
            views=tuple(views),
            # A key of its own per run: two runs of one range (another
            # mechanism, say) must never share a result.
            key=f"microgrid-bill-range-{a:%Y%m%dT%H%M}-{run_id}",
            pure=False,
        )
        for a, b in tasks
    ]
    parts = [client.submit(_first, p, pure=False) for p in pairs]
    summaries = [client.submit(_second, p, pure=False) for p in pairs]
    # A tree of merges on the workers: neighbours pairwise, in time order.
    while len(parts) > 1:
        merged = [client.submit(merge_parts, a, b, pure=False) for a, b in zip(parts[0::2], parts[1::2])]
        if len(parts) % 2:
            merged.append(parts[-1])
        parts = merged
    part = parts[0].result()
    summary = pa.concat_tables(client.gather(summaries))
    del pairs
    timings["cluster"] = time.perf_counter() - t0
    bills = grid.bill_parts([part], t)
    if books is not None:
        table = pa.Table.from_pylist(bills)
        table = table.append_column("period_start", pa.array([start] * table.num_rows, pa.timestamp("us", tz="UTC")))
        table = table.append_column("period_end", pa.array([end] * table.num_rows, pa.timestamp("us", tz="UTC")))
        name = f"{start.astimezone(UTC):%Y%m%dT%H%M}_{end.astimezone(UTC):%Y%m%dT%H%M}"
        folder = os.path.join(books, "bills", f"month={parquet.month_of(start)}")
        os.makedirs(folder, exist_ok=True)
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        pq.write_table(table, os.path.join(folder, f"{name}.parquet"))
    timings["total"] = time.perf_counter() - t0
    return Books(grid=grid, tariff=t, part=part, bills=bills, summaries=summary, tasks=len(tasks), timings=timings)


def single_machine(
    readings: str,
    prosumers: Any,
    start: dt.datetime,
    end: dt.datetime,
    tariff: Mapping[str, Any],
    mechanism: Any,
    *,
    timeframe_minutes: int = 15,
    days_per_batch: int = 7,
) -> Grid:
    """The same period on one in-memory ``Grid``, recorded from the same
    Parquet files a batch of days at a time and cleared at once: the
    yardstick :func:`run` must equal."""
    grid = _grid(prosumers, timeframe_minutes)
    for a, b in ranges(start, end, days_per_batch):
        table = parquet.read_readings(readings, a, b)
        if table.num_rows:
            grid.record(table)
    grid.clear(start, end, mechanism, Tariff(**tariff))
    return grid


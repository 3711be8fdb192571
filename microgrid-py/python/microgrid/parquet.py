"""Readings and books as Parquet files partitioned by month (pyarrow).

A directory of readings holds one folder per UTC month, Hive style
(``month=2026-06/``), and in it any number of files written by
:func:`write_readings`, each in the long form ``Grid.record`` takes fastest:

========== ======================================== ======================
column     type                                     what
========== ======================================== ======================
start      ``timestamp[us, tz=UTC]``                start of the timeframe
prosumer_id ``dictionary<int32, string>``            the prosumer
produced_wh ``int64``                                watt-hours produced
consumed_wh ``int64``                                watt-hours consumed
========== ======================================== ======================

Files are sorted by ``start``, so :func:`read_readings` of a range reads
only the files (and row groups) that hold it. The books (the views of
cleared timeframes and the bills) go out the same way, one folder per
table and month: :func:`write_by_month`.

>>> import datetime as dt, tempfile
>>> import pyarrow as pa
>>> from microgrid import parquet
>>> UTC = dt.timezone.utc
>>> t0 = dt.datetime(2026, 6, 30, 23, 45, tzinfo=UTC)
>>> root = tempfile.mkdtemp()
>>> table = pa.table({"start": [t0, t0 + dt.timedelta(minutes=15)], "prosumer_id": ["a", "a"],
...                   "produced_wh": [10, 20], "consumed_wh": [0, 5]})
>>> parquet.write_readings(table, root, name="day")
2
>>> sorted(parquet.months(root))
['2026-06', '2026-07']
>>> parquet.read_readings(root, t0 + dt.timedelta(minutes=15), t0 + dt.timedelta(minutes=30)).num_rows
1

pyarrow is needed (``pip install pyarrow``); it is imported when called.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, List, Optional

__all__ = [
    "month_of",
    "months",
    "months_between",
    "read_books",
    "read_readings",
    "readings_schema",
    "readings_table",
    "write_by_month",
    "write_readings",
]

UTC = dt.timezone.utc


def _pa() -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    return pa


def readings_schema() -> Any:
    """The schema of a readings file (see the module docs)."""
    pa = _pa()
    return pa.schema(
        [
            ("start", pa.timestamp("us", tz="UTC")),
            ("prosumer_id", pa.dictionary(pa.int32(), pa.string())),
            ("produced_wh", pa.int64()),
            ("consumed_wh", pa.int64()),
        ]
    )


def month_of(t: dt.datetime) -> str:
    """The UTC month of ``t`` as ``YYYY-MM``."""
    return t.astimezone(UTC).strftime("%Y-%m")


def months_between(start: dt.datetime, end: dt.datetime) -> List[str]:
    """The UTC months ``[start, end)`` touches, as ``YYYY-MM``, in order.

    >>> months_between(dt.datetime(2026, 6, 29, tzinfo=UTC), dt.datetime(2026, 8, 1, tzinfo=UTC))
    ['2026-06', '2026-07']
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    out: List[str] = []
    y, m = start.year, start.month
    while dt.datetime(y, m, 1, tzinfo=UTC) < end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def readings_table(data: Any) -> Any:
    """``data`` (a pyarrow table, a pandas frame, or a dict of columns with
    ``start``, ``prosumer_id``, ``produced_wh``, ``consumed_wh``) as a
    pyarrow table of :func:`readings_schema`, sorted by start then id."""
    pa = _pa()
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    if isinstance(data, dict):
        table = pa.table({k: data[k] for k in ("start", "prosumer_id", "produced_wh", "consumed_wh")})
    elif isinstance(data, pa.Table):
        table = data
    else:
        table = pa.Table.from_pandas(data, preserve_index=False)
    table = table.select(["start", "prosumer_id", "produced_wh", "consumed_wh"])
    ids = table.column("prosumer_id")
    if not pa.types.is_dictionary(ids.type):
        ids = pc.dictionary_encode(ids)
    ids = ids.cast(pa.dictionary(pa.int32(), pa.string()))
    start = table.column("start").cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        [start, ids, table.column("produced_wh").cast(pa.int64()), table.column("consumed_wh").cast(pa.int64())],
        schema=readings_schema(),
    )
    return table.sort_by([("start", "ascending")])


def write_by_month(table: Any, root: str, name: str, *, time_column: str = "start") -> int:
    """Writes ``table`` under ``root`` split by the UTC month of
    ``time_column``: ``root/month=YYYY-MM/<name>.parquet`` (an existing file
    of that name is replaced). Returns the rows written."""
    pa = _pa()
    import pyarrow.compute as pc
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    if table.num_rows == 0:
        return 0
    times = table.column(time_column)
    if times.type.tz is None or times.type.tz.upper() != "UTC":
        times = times.cast(pa.timestamp(times.type.unit, tz="UTC"))
    first, last = pc.min(times).as_py(), pc.max(times).as_py()
    written = 0
    for month in months_between(first, last + dt.timedelta(microseconds=1)):
        y, m = (int(x) for x in month.split("-"))
        lo = dt.datetime(y, m, 1, tzinfo=UTC)
        hi = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        mask = pc.and_(pc.greater_equal(times, pa.scalar(lo, times.type)), pc.less(times, pa.scalar(hi, times.type)))
        part = table.filter(mask)
        if part.num_rows:
            folder = os.path.join(root, f"month={month}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{name}.parquet")
            tmp = path + ".tmp"
            pq.write_table(part, tmp, compression="zstd", row_group_size=1 << 20)
            os.replace(tmp, path)
            written += part.num_rows
    return written


def write_readings(data: Any, root: str, *, name: str) -> int:
    """Writes readings (see :func:`readings_table` for what ``data`` may be)
    under ``root``, one file ``<name>.parquet`` per UTC month they touch.
    Call it once per batch (a day, say) with a distinct ``name``, so a long
    period is never in memory whole. Returns the rows written."""
    return write_by_month(readings_table(data), root, name)


def _dataset(root: str) -> Any:
    pa = _pa()
    import pyarrow.dataset as ds  # type: ignore[import-untyped]

    partitioning = ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive")
    return ds.dataset(root, format="parquet", partitioning=partitioning)


def months(root: str) -> List[str]:
    """The months (``YYYY-MM``) a directory of readings or books holds."""
    return sorted(d[len("month="):] for d in os.listdir(root) if d.startswith("month="))


def read_readings(root: str, start: dt.datetime, end: dt.datetime, *, unify: bool = True) -> Any:
    """The readings of ``[start, end)`` under ``root`` as a pyarrow table of
    :func:`readings_schema` (only the months' folders and row groups that can
    hold the range are read). With ``unify`` the id dictionaries of the
    files are unified into one."""
    pa = _pa()
    import pyarrow.dataset as ds

    wanted = [m for m in months_between(start, end) if os.path.isdir(os.path.join(root, f"month={m}"))]
    if not wanted:
        return readings_schema().empty_table()
    ts = pa.timestamp("us", tz="UTC")
    condition = (
        ds.field("month").isin(wanted)
        & (ds.field("start") >= pa.scalar(start.astimezone(UTC), ts))
        & (ds.field("start") < pa.scalar(end.astimezone(UTC), ts))
    )
    table = _dataset(root).to_table(columns=["start", "prosumer_id", "produced_wh", "consumed_wh"], filter=condition)
    if unify:
        table = table.unify_dictionaries()
    return table


def read_books(root: str, table: str, month: Optional[str] = None) -> Any:
    """A table of the books written under ``root`` (``"summaries"``,
    ``"allocations"``, ``"trades"``, ``"bills"``), of one month or all, as
    pyarrow, sorted by its time column."""
    import pyarrow.dataset as ds

    pa = _pa()
    path = os.path.join(root, table)
    partitioning = ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive")
    data = ds.dataset(path, format="parquet", partitioning=partitioning)
    condition = ds.field("month") == month if month is not None else None
    out = data.to_table(filter=condition)
    return out.drop_columns(["month"])

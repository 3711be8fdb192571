"""microgrid: the books of a community microgrid, from meter readings to a
bitcoin payout batch.

    >>> import microgrid
    >>> grid = microgrid.Grid()          # in memory; or "sqlite:books.db", "postgres://...", "mongodb://..."

Money is ``decimal.Decimal`` (floats are refused), times are timezone-aware
``datetime`` (naive ones are refused), energies are ``int`` watt-hours.

Columnar data goes in and out without a Python object per row:

* ``Grid.record(frame)`` takes a long frame with columns ``start``,
  ``prosumer_id``, ``produced_wh``, ``consumed_wh``: a pandas or polars
  DataFrame, a pyarrow Table or RecordBatch, or anything with
  ``__arrow_c_stream__`` / ``__arrow_c_array__``; ``Grid.record(start,
  prosumer_id, produced_wh, consumed_wh)`` takes the four columns as lists,
  numpy arrays, pandas Series or Arrow arrays.
* ``Grid.record_wide(produced_wh, consumed_wh)`` takes two wide frames:
  a row per ``start`` (a pandas DataFrame indexed by tz-aware ``start``, or
  an Arrow table with a ``start`` column), a column per prosumer id.
* ``start`` is a timestamp with a time zone (any unit; Arrow timestamps
  with a zone hold UTC instants); naive timestamps (numpy ``datetime64``,
  pandas without tz, Arrow without tz) are refused unless
  ``assume_utc=True``; fractions of a second are refused, not rounded.
* ``prosumer_id`` as a categorical (pandas ``category``, polars
  ``Categorical``, an Arrow dictionary) is looked up once per distinct id;
  plain strings are looked up row by row (the slower path).
* Energies must be integer columns; floats and booleans are refused.
* ``Grid.summaries_arrow``, ``Grid.allocations_arrow`` and
  ``Grid.trades_arrow`` return Arrow tables (the PyCapsule interface, so
  ``pyarrow.table(t)`` and ``polars.DataFrame(t)`` take them as they are);
  :func:`to_frame`, :func:`to_polars` and :func:`to_arrow` convert views.

pandas, polars and pyarrow are optional; the helpers import them when
called.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, List, Optional, Union

from ._microgrid import (
    ConflictError,
    Grid,
    MicrogridError,
    NotFoundError,
    Settlement,
    SettlementError,
    StorageError,
    Tariff,
    ValidationError,
    __version__,
    simulate,
)

__all__ = [
    "ConflictError",
    "Grid",
    "Mechanism",
    "MicrogridError",
    "NotFoundError",
    "ProsumerKind",
    "Settlement",
    "SettlementError",
    "StorageError",
    "Tariff",
    "ValidationError",
    "__version__",
    "record_frame",
    "simulate",
    "to_arrow",
    "to_frame",
    "to_polars",
]


class Mechanism(str, enum.Enum):
    """Built-in pricing mechanisms; anywhere one is taken, its name works too
    (``"sdr"``), and ``"fixed:0.15"`` sets a fixed price."""

    MID_MARKET_RATE = "mmr"
    SUPPLY_DEMAND_RATIO = "sdr"
    BILL_SHARING = "bill_sharing"

    def __str__(self) -> str:
        return self.value


class ProsumerKind(str, enum.Enum):
    """Kinds of participant; their names work too (``"household"``)."""

    HOUSEHOLD = "household"
    COMPANY = "company"
    PUBLIC = "public"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


def record_frame(grid: Grid, frame: Any, *, assume_utc: bool = False) -> Dict[str, int]:
    """Record readings from a pandas DataFrame: a long frame goes to
    ``grid.record(frame)``; a wide frame with a two-level header
    ``(prosumer_id, "produced_wh" | "consumed_wh")``, indexed by ``start``,
    goes to ``grid.record_wide`` as its two halves."""
    columns = getattr(frame, "columns", None)
    if getattr(columns, "nlevels", 1) == 2:
        produced = frame.xs("produced_wh", axis=1, level=1)
        consumed = frame.xs("consumed_wh", axis=1, level=1)
        return grid.record_wide(produced, consumed, assume_utc=assume_utc)
    return grid.record(frame, assume_utc=assume_utc)


View = Union[Dict[str, List[Any]], Any]


def _is_arrow(view: Any) -> bool:
    return hasattr(view, "__arrow_c_stream__") or hasattr(view, "__arrow_c_array__")


def to_arrow(view: View) -> Any:
    """A view as a ``pyarrow.Table``: an Arrow view (``Grid.summaries_arrow``
    and the like) as it is, a dict view column by column."""
    import pyarrow as pa  # type: ignore[import-untyped]

    return pa.table(view)


def to_polars(view: View) -> Any:
    """A view as a ``polars.DataFrame`` (prosumer ids as categoricals,
    prices and amounts as exact decimals)."""
    import polars as pl  # type: ignore[import-not-found]

    return pl.DataFrame(view)


def to_frame(view: View, index: Optional[str] = None) -> Any:
    """A view as a pandas DataFrame: ``start`` as a tz-aware UTC datetime
    column, energies as int64; from an Arrow view (needs pyarrow) prosumer
    ids are categoricals and prices and amounts ``decimal.Decimal``
    objects; from a dict view (``Grid.summaries``, ``Grid.prosumer``,
    ``Grid.trades``) prices and amounts are the ``decimal.Decimal`` objects
    it holds. Indexed by ``index`` if given."""
    import pandas as pd  # type: ignore[import-untyped]

    if _is_arrow(view):
        frame = to_arrow(view).to_pandas()
    else:
        frame = pd.DataFrame(view)
        if "start" in frame:
            frame["start"] = pd.to_datetime(frame["start"], utc=True)
        for name in frame.columns:
            if name.endswith("_wh"):
                frame[name] = frame[name].astype("int64")
    return frame.set_index(index) if index else frame

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

Inputs are checked at the door, by exact type:

* energies (``*_wh``) are ``int`` or integer columns; ``bool``, ``float``
  (even a whole one: ``100.9`` is never recorded as ``100``), NaN and
  ``Decimal`` are refused, in columns too (numpy, pandas, polars, Arrow);
* money (prices, fees, margins, rates) is ``decimal.Decimal``, ``str`` or
  ``int``; floats of any width (``float``, ``numpy.float16`` to
  ``numpy.float64``), ``bool`` and non-finite decimals are refused;
* times are timezone-aware ``datetime`` of whole seconds: naive ones and
  fractions of a second are refused, not rounded;
* names, ids, addresses and URLs are ``str``; counts are ``int``.

Errors
------

Every exception the package raises for any argument value is a
:class:`MicrogridError`::

    MicrogridError
    ├── ValidationError   bad input: types, ids, readings, prices, addresses, times
    ├── ConflictError     a reading that differs from a cleared one, a duplicate id,
    │                     a period settled or paid otherwise, a paid settlement voided,
    │                     a write into a month archived (detached) in PostgreSQL,
    │                     a wallet address another settlement gave out
    ├── NotFoundError     an unknown prosumer, settlement or period not cleared
    ├── StorageError      the database failed
    └── SettlementError   rates, networks, fees, inputs that do not cover a batch,
                          a voided settlement paid

(Calling with missing or unknown arguments is still Python's ``TypeError``.)
Each carries two attributes, for code that branches without parsing
messages:

* ``kind``: a stable snake-case name. A refusal of the domain or of a
  store has the Rust error's kind (``"late_reading"``,
  ``"settlement_conflict"``, ``"duplicate_prosumer"``, ``"invalid_price"``,
  ``"period_not_cleared"``, ``"database"``, ...); the binding's own
  refusals are ``"invalid_type"``, ``"invalid_value"``, ``"out_of_range"``,
  ``"naive_datetime"``, ``"subsecond_time"``, ``"missing_value"`` and
  ``"shape_mismatch"``.
* ``details``: a dict with ``"message"`` (``str(e)``) and the offending
  values by name, as Python values (``{"id": "a", "start": datetime(...)}``
  for a late reading); a refused argument adds ``"argument"`` (the
  parameter or column), and where known ``"row"``, ``"value"`` (the value
  passed) and ``"type"`` (its type's name). A Python error raised while
  reading an input becomes a ``ValidationError`` whose ``__cause__`` is the
  original and whose ``details["error"]`` is its type's name.

    >>> from datetime import datetime
    >>> try:
    ...     grid.summaries(datetime(2026, 6, 1), datetime(2026, 6, 2))
    ... except microgrid.MicrogridError as e:
    ...     e.kind, e.details["argument"]
    ('naive_datetime', 'start')
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Dict, List, Optional, TypeVar, Union

from ._microgrid import (
    Battery,
    BillingPart,
    ConflictError,
    Grid,
    MicrogridError,
    NotFoundError,
    OperatorWallet,
    Settlement,
    SettlementError,
    StorageError,
    Tariff,
    ValidationError,
    __version__,
    _refused,
    check_bolt11,
    check_offer,
    invoice_uri_with_lightning,
    regtest_address,
    simulate,
)

__all__ = [
    "Battery",
    "BillingPart",
    "ConflictError",
    "Grid",
    "Mechanism",
    "MicrogridError",
    "NotFoundError",
    "OperatorWallet",
    "ProsumerKind",
    "Settlement",
    "SettlementError",
    "StorageError",
    "Tariff",
    "ValidationError",
    "__version__",
    "check_bolt11",
    "check_offer",
    "invoice_uri_with_lightning",
    "record_frame",
    "regtest_address",
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
    BATTERY = "battery"

    def __str__(self) -> str:
        return self.value


_T = TypeVar("_T")


def _reading(argument: str, read: Callable[[], _T]) -> _T:
    """``read()``; an error of the libraries it calls on the caller's value
    becomes the ``ValidationError`` naming ``argument`` (the package's
    own errors and a missing optional library pass as they are)."""
    try:
        return read()
    except (MicrogridError, ImportError, KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
        raise
    except BaseException as e:  # noqa: BLE001 - PanicException of polars or pyarrow too
        raise _refused(argument, e) from e


def record_frame(grid: Grid, frame: Any, *, assume_utc: bool = False) -> Dict[str, int]:
    """Record readings from a pandas DataFrame: a long frame goes to
    ``grid.record(frame)``; a wide frame with a two-level header
    ``(prosumer_id, "produced_wh" | "consumed_wh")``, indexed by ``start``,
    goes to ``grid.record_wide`` as its two halves."""

    if not isinstance(grid, Grid):
        raise _refused("grid", TypeError(f"expected a microgrid.Grid, got {type(grid).__name__}"))

    def halves() -> Any:
        columns = getattr(frame, "columns", None)
        if getattr(columns, "nlevels", 1) == 2:
            return frame.xs("produced_wh", axis=1, level=1), frame.xs("consumed_wh", axis=1, level=1)
        return None

    wide = _reading("frame", halves)
    if wide is not None:
        return grid.record_wide(wide[0], wide[1], assume_utc=assume_utc)
    return grid.record(frame, assume_utc=assume_utc)


View = Union[Dict[str, List[Any]], Any]


def _is_arrow(view: Any) -> bool:
    return hasattr(view, "__arrow_c_stream__") or hasattr(view, "__arrow_c_array__")


def to_arrow(view: View) -> Any:
    """A view as a ``pyarrow.Table``: an Arrow view (``Grid.summaries_arrow``
    and the like) as it is, a dict view column by column."""
    import pyarrow as pa  # type: ignore[import-untyped]

    return _reading("view", lambda: pa.table(view))


def to_polars(view: View) -> Any:
    """A view as a ``polars.DataFrame`` (prosumer ids as categoricals,
    prices and amounts as exact decimals)."""
    import polars as pl  # type: ignore[import-not-found]

    return _reading("view", lambda: pl.DataFrame(view))


def to_frame(view: View, index: Optional[str] = None) -> Any:
    """A view as a pandas DataFrame: ``start`` as a tz-aware UTC datetime
    column, energies as int64; from an Arrow view (needs pyarrow) prosumer
    ids are categoricals and prices and amounts ``decimal.Decimal``
    objects; from a dict view (``Grid.summaries``, ``Grid.prosumer``,
    ``Grid.trades``) prices and amounts are the ``decimal.Decimal`` objects
    it holds. Indexed by ``index`` if given."""
    import pandas as pd  # type: ignore[import-untyped]

    if _is_arrow(view):
        frame = _reading("view", lambda: to_arrow(view).to_pandas())
    else:

        def build() -> Any:
            frame = pd.DataFrame(view)
            if "start" in frame:
                frame["start"] = pd.to_datetime(frame["start"], utc=True)
            for name in frame.columns:
                if isinstance(name, str) and name.endswith("_wh"):
                    frame[name] = frame[name].astype("int64")
            return frame

        frame = _reading("view", build)
    return _reading("index", lambda: frame.set_index(index)) if index else frame

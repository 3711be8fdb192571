"""microgrid: the books of a community microgrid, from meter readings to a
bitcoin payout batch.

    >>> import microgrid
    >>> grid = microgrid.Grid()          # in memory; or "sqlite:books.db", "postgres://...", "mongodb://..."

Money is ``decimal.Decimal`` (floats are refused), times are timezone-aware
``datetime`` (naive ones are refused), energies are ``int`` watt-hours.
pandas is optional: :func:`record_frame` and :func:`to_frame` use it when it
is installed.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, List, Optional

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
    "to_frame",
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


def record_frame(grid: Grid, frame: Any) -> Dict[str, int]:
    """Record readings from a pandas DataFrame without a Python loop per row.

    The long form has columns ``start`` (tz-aware datetimes), ``prosumer_id``,
    ``produced_wh`` and ``consumed_wh``. A wide form, indexed by ``start``
    with a column pair per prosumer under a two-level header
    ``(prosumer_id, "produced_wh" | "consumed_wh")``, is stacked first.
    """
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.stack(level=0, future_stack=True).rename_axis(["start", "prosumer_id"]).reset_index()
    missing = {"start", "prosumer_id", "produced_wh", "consumed_wh"} - set(frame.columns)
    if missing:
        raise ValidationError(f"the frame has no column(s) {sorted(missing)}")
    start = frame["start"]
    if getattr(start.dt, "tz", None) is None:
        raise ValidationError("the start column is naive; localize it, e.g. frame['start'].dt.tz_localize('UTC')")
    # Whole seconds since the epoch, whatever the column's resolution.
    seconds = (start.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    codes, ids = pd.factorize(frame["prosumer_id"], sort=False)
    return grid.record_columns(
        seconds.to_numpy().tolist(),
        codes.tolist(),
        [str(i) for i in ids],
        frame["produced_wh"].astype("int64").to_numpy().tolist(),
        frame["consumed_wh"].astype("int64").to_numpy().tolist(),
    )


def to_frame(columns: Dict[str, List[Any]], index: Optional[List[str]] = None) -> Any:
    """A view (the dict of columns that ``Grid.summaries``, ``Grid.prosumer``
    and ``Grid.trades`` return) as a pandas DataFrame: ``start`` as a
    tz-aware UTC datetime column, energies as int64, prices and amounts as
    ``decimal.Decimal`` objects; indexed by ``index`` if given."""
    import pandas as pd  # type: ignore[import-untyped]

    frame = pd.DataFrame(columns)
    if "start" in frame:
        frame["start"] = pd.to_datetime(frame["start"], utc=True)
    for name in frame.columns:
        if name.endswith("_wh"):
            frame[name] = frame[name].astype("int64")
    return frame.set_index(index) if index else frame

"""Type stubs of the native module ``microgrid._microgrid``."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple, Union

from typing_extensions import final

__version__: str
__all__ = [
    "ConflictError",
    "Grid",
    "MicrogridError",
    "NotFoundError",
    "Settlement",
    "SettlementError",
    "StorageError",
    "Tariff",
    "ValidationError",
    "__version__",
    "simulate",
]

_Amount = Union[Decimal, int, str]

class MicrogridError(Exception):
    """Base class of every microgrid error."""

class ValidationError(MicrogridError):
    """An input was rejected; nothing was stored."""

class ConflictError(MicrogridError):
    """An input conflicts with what is stored."""

class NotFoundError(MicrogridError):
    """Something looked up does not exist."""

class StorageError(MicrogridError):
    """The database failed."""

class SettlementError(MicrogridError):
    """A settlement cannot be made or paid."""

@final
class Tariff:
    """Grid prices per kWh, fees and operator margin; exact decimals only."""

    def __new__(
        cls,
        import_price: _Amount,
        export_price: _Amount,
        *,
        currency: str = "EUR",
        grid_fee: Optional[_Amount] = None,
        fixed_fee: Optional[_Amount] = None,
        operator_margin: Optional[_Amount] = None,
    ) -> "Tariff": ...
    @property
    def currency(self) -> str: ...

@final
class Settlement:
    """A settlement in bitcoin of one billing period."""

    @property
    def id(self) -> str: ...
    @property
    def content_hash(self) -> str: ...
    @property
    def paid_txid(self) -> Optional[str]: ...
    @property
    def network(self) -> str: ...
    @property
    def grid_sats(self) -> int: ...
    @property
    def operator_sats(self) -> int: ...
    def canonical_json(self) -> str: ...
    def is_conserved(self) -> bool: ...
    def sendmany(self) -> Dict[str, Decimal]: ...
    def sendmany_json(self) -> str: ...
    def entries(self) -> List[Dict[str, Any]]: ...
    def invoices(self) -> List[Dict[str, Any]]: ...
    def fee_estimate(self, sat_per_vb: int) -> Dict[str, int]: ...
    def psbt(self, utxos: List[Tuple[str, int, str]], change_address: str, sat_per_vb: int) -> Dict[str, Any]: ...

@final
class Grid:
    """The books of one microgrid on a store opened by URL."""

    def __new__(cls, url: str = "memory:", *, timeframe_minutes: int = 15) -> "Grid": ...
    @property
    def timeframe_minutes(self) -> int: ...
    def register(
        self,
        id: str,
        name: str,
        kind: Any,
        joined: date,
        *,
        left: Optional[date] = None,
        address: Optional[str] = None,
        network: str = "regtest",
    ) -> None: ...
    def prosumers(self) -> List[Dict[str, Any]]: ...
    def record(
        self, start: List[datetime], prosumer_id: List[str], produced_wh: List[int], consumed_wh: List[int]
    ) -> Dict[str, int]: ...
    def record_columns(
        self,
        start_s: List[int],
        codes: List[int],
        prosumer_ids: List[str],
        produced_wh: List[int],
        consumed_wh: List[int],
    ) -> Dict[str, int]: ...
    def clear(self, start: datetime, end: datetime, mechanism: Any, tariff: Tariff) -> Dict[str, int]: ...
    def summaries(self, start: datetime, end: datetime) -> Dict[str, List[Any]]: ...
    def prosumer(self, id: str, start: datetime, end: datetime) -> Dict[str, List[Any]]: ...
    def trades(self, start: datetime, end: datetime, prosumer_id: Optional[str] = None) -> Dict[str, List[Any]]: ...
    def bill(self, start: datetime, end: datetime, tariff: Tariff) -> List[Dict[str, Any]]: ...
    def settle(
        self,
        start: datetime,
        end: datetime,
        tariff: Tariff,
        *,
        rate: _Amount,
        operator_address: str,
        network: str = "regtest",
        rate_source: str = "manual",
    ) -> Settlement: ...
    def settlement(self, id: str) -> Optional[Settlement]: ...
    def mark_paid(self, id: str, txid: str) -> Settlement: ...

def simulate(
    households: int, start: date, days: int, *, seed: int = 42, timeframe_minutes: int = 15
) -> Dict[str, List[Any]]: ...

"""Type stubs of the native module ``microgrid._microgrid``."""

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, Union

from typing_extensions import TypedDict, final
from zoneinfo import ZoneInfo

__version__: str
__all__ = [
    "Battery",
    "BillingPart",
    "ConflictError",
    "Grid",
    "MicrogridError",
    "NotFoundError",
    "OperatorWallet",
    "Settlement",
    "SettlementError",
    "StorageError",
    "Tariff",
    "ValidationError",
    "__version__",
    "_refused",
    "simulate",
    "regtest_address",
    "check_offer",
    "check_bolt11",
    "invoice_uri_with_lightning",
]

_Amount = Union[Decimal, int, str]

class _ArrowStream(Protocol):
    """An Arrow table through the PyCapsule interface (``pyarrow.table(t)``,
    ``polars.DataFrame(t)``)."""

    def __arrow_c_stream__(self, requested_schema: object = None) -> object: ...

# A column: a list, a numpy array, a pandas Series or Index, or an Arrow
# array or chunked array (anything with __arrow_c_array__ / __arrow_c_stream__).
_Column = Any
# A frame: a pandas or polars DataFrame, a pyarrow Table or RecordBatch, or
# anything with __arrow_c_stream__ / __arrow_c_array__.
_Frame = Any

class MicrogridError(Exception):
    """Base class of every microgrid error; ``kind`` names what went wrong,
    ``details`` holds the values.

    Every instance the package raises has:

    * ``kind``: a stable snake-case name: the Rust error's kind for refusals
      of the domain or a store (``"late_reading"``, ``"settlement_conflict"``,
      ``"duplicate_prosumer"``, ``"invalid_price"``, ``"database"``, ...), or
      one of the binding's own: ``"invalid_type"``, ``"invalid_value"``,
      ``"out_of_range"``, ``"naive_datetime"``, ``"subsecond_time"``,
      ``"missing_value"``, ``"shape_mismatch"``.
    * ``details``: a dict with ``"message"`` (``str(e)``) and the offending
      values by name (``{"id": "a", "start": datetime(...)}``); for a refused
      argument also ``"argument"`` and, where known, ``"row"``, ``"value"``
      and ``"type"``.
    """

    kind: str
    details: Dict[str, Any]

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

_TimeOfDay = Union[str, time]
_Days = Union[str, Sequence[Union[str, int]]]

class _Window(TypedDict, total=False):
    """A time-of-use window: local times of day ("HH:MM", "24:00" for the
    end of the day, or datetime.time), its grid prices, and optionally the
    days ("weekdays", "weekend", "all" or a list of names or numbers, 0 =
    Monday) and months (1 to 12) it applies on."""

    start: _TimeOfDay
    end: _TimeOfDay
    import_price: _Amount
    export_price: _Amount
    days: _Days
    months: Sequence[int]

@final
class Tariff:
    """Grid prices per kWh (by time of use in a local time zone), fees,
    a network charge on shared energy and operator margin; exact decimals
    only. The fixed fee is per member and calendar month, prorated by the
    time a member is registered in each billing period."""

    def __new__(
        cls,
        import_price: _Amount,
        export_price: _Amount,
        *,
        currency: str = "EUR",
        grid_fee: Optional[_Amount] = None,
        fixed_fee: Optional[_Amount] = None,
        operator_margin: Optional[_Amount] = None,
        network_charge: Optional[_Amount] = None,
        time_zone: Union[str, ZoneInfo] = "UTC",
        timeframe_minutes: int = 15,
        windows: Optional[Sequence[_Window]] = None,
    ) -> "Tariff": ...
    @property
    def currency(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def timeframe_minutes(self) -> int: ...
    @property
    def network_charge(self) -> Decimal: ...
    @property
    def fixed_fee(self) -> Decimal: ...
    def grid_prices(self, start: datetime) -> Tuple[Decimal, Decimal]: ...
    def fixed_fee_between(self, start: datetime, end: datetime) -> Decimal: ...

@final
class Battery:
    """A community battery taking part in clearing as a member of its own
    (kind ``"battery"``): charges from the community's surplus before
    export, discharges into its deficit before import; the loss is taken
    at charge, ``stored = floor(charged * round_trip_efficiency)``."""

    def __new__(
        cls,
        id: str,
        *,
        capacity_wh: int,
        max_charge_w: int,
        max_discharge_w: int,
        round_trip_efficiency: Union[Decimal, int, str],
        initial_soc_wh: int = 0,
        owner: Optional[str] = None,
    ) -> "Battery": ...
    @property
    def id(self) -> str: ...
    @property
    def capacity_wh(self) -> int: ...
    @property
    def max_charge_w(self) -> int: ...
    @property
    def max_discharge_w(self) -> int: ...
    @property
    def round_trip_efficiency(self) -> Decimal: ...
    @property
    def initial_soc_wh(self) -> int: ...
    @property
    def owner(self) -> Optional[str]: ...

@final
class OperatorWallet:
    """The operator's wallet: a public output descriptor (BIP380) and its
    change chain, for one network."""

    def __new__(
        cls,
        descriptor: str,
        change_descriptor: Optional[str] = None,
        network: Optional[str] = None,
    ) -> "OperatorWallet": ...
    @property
    def id(self) -> str: ...
    @property
    def descriptor(self) -> str: ...
    @property
    def change_descriptor(self) -> str: ...
    @property
    def network(self) -> str: ...
    def receive_address(self, index: int) -> str: ...
    def change_address(self, index: int) -> str: ...

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
    def void_reason(self) -> Optional[str]: ...
    @property
    def network(self) -> str: ...
    @property
    def grid_sats(self) -> int: ...
    @property
    def operator_sats(self) -> int: ...
    def canonical_json(self) -> str: ...
    def is_conserved(self) -> bool: ...
    def verify(self) -> None: ...
    def sendmany(self) -> Dict[str, Decimal]: ...
    def sendmany_json(self) -> str: ...
    def entries(self) -> List[Dict[str, Any]]: ...
    def lightning_payouts(self) -> List[Dict[str, Any]]: ...
    def invoices(self) -> List[Dict[str, Any]]: ...
    @property
    def wallet(self) -> Optional[Dict[str, Any]]: ...
    def wallet_psbt(
        self,
        wallet: OperatorWallet,
        index: int,
        utxos: List[Tuple[str, int, str, int]],
        sat_per_vb: _Amount,
        *,
        max_vbytes: Optional[int] = None,
        fee_payer: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def fee_estimate(self, sat_per_vb: _Amount) -> Dict[str, int]: ...
    def psbt(self, utxos: List[Tuple[str, int, str]], change_address: str, sat_per_vb: _Amount) -> Dict[str, Any]: ...
    def batches(
        self,
        sat_per_vb: _Amount,
        *,
        max_vbytes: Optional[int] = None,
        fee_payer: Optional[str] = None,
        change_address: Optional[str] = None,
    ) -> List[Dict[str, Any]]: ...
    def batch_psbt(
        self,
        index: int,
        utxos: List[Tuple[str, int, str]],
        change_address: str,
        sat_per_vb: _Amount,
        *,
        max_vbytes: Optional[int] = None,
        fee_payer: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def reconcile(
        self,
        raw_tx_hex: str,
        *,
        sat_per_vb: Optional[_Amount] = None,
        max_vbytes: Optional[int] = None,
        fee_payer: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def check_payment(
        self,
        raw_tx_hex: str,
        *,
        sat_per_vb: Optional[_Amount] = None,
        max_vbytes: Optional[int] = None,
        fee_payer: Optional[str] = None,
    ) -> str: ...
    @staticmethod
    def parse_uri(uri: str) -> Dict[str, Any]: ...

@final
class BillingPart:
    """The billing sums of a range of timeframes, not finished into bills;
    picklable."""

    @staticmethod
    def from_bytes(data: bytes) -> "BillingPart": ...
    def to_bytes(self) -> bytes: ...
    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def timeframes(self) -> int: ...
    @property
    def members(self) -> int: ...
    def merge(self, other: "BillingPart") -> "BillingPart": ...
    @staticmethod
    def merge_all(parts: Sequence["BillingPart"]) -> "BillingPart": ...

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
        offer: Optional[str] = None,
    ) -> None: ...
    def prosumers(self) -> List[Dict[str, Any]]: ...
    def lightning_split(
        self,
        settlement: Settlement,
        *,
        lightning_below_sats: int,
        at: Optional[datetime] = None,
        sat_per_vb: Optional[_Amount] = None,
        max_vbytes: Optional[int] = None,
        fee_payer: str = "operator",
    ) -> Dict[str, Any]: ...
    def register_all(self, prosumers: Union[_Frame, Sequence[Dict[str, Any]]]) -> int: ...
    def record(
        self,
        start: Union[_Frame, _Column],
        prosumer_id: Optional[_Column] = None,
        produced_wh: Optional[_Column] = None,
        consumed_wh: Optional[_Column] = None,
        *,
        assume_utc: bool = False,
    ) -> Dict[str, int]: ...
    def record_wide(self, produced_wh: _Frame, consumed_wh: _Frame, *, assume_utc: bool = False) -> Dict[str, int]: ...
    def clear(self, start: datetime, end: datetime, mechanism: Any, tariff: Tariff) -> Dict[str, int]: ...
    def summaries(self, start: datetime, end: datetime) -> Dict[str, List[Any]]: ...
    def summaries_arrow(self, start: datetime, end: datetime) -> _ArrowStream: ...
    def allocations_arrow(
        self, start: datetime, end: datetime, prosumer_ids: Optional[Sequence[str]] = None
    ) -> _ArrowStream: ...
    def trades_arrow(self, start: datetime, end: datetime, prosumer_id: Optional[str] = None) -> _ArrowStream: ...
    def prosumer(self, id: str, start: datetime, end: datetime) -> Dict[str, List[Any]]: ...
    def trades(self, start: datetime, end: datetime, prosumer_id: Optional[str] = None) -> Dict[str, List[Any]]: ...
    def bill(self, start: datetime, end: datetime, tariff: Tariff) -> List[Dict[str, Any]]: ...
    def bill_part(self, start: datetime, end: datetime, tariff: Tariff) -> BillingPart: ...
    def bill_parts(self, parts: Sequence[BillingPart], tariff: Tariff) -> List[Dict[str, Any]]: ...
    def settle_parts(
        self,
        parts: Sequence[BillingPart],
        tariff: Tariff,
        *,
        rate: _Amount,
        operator_address: str,
        network: str = "regtest",
        rate_source: str = "manual",
        minimum_payout_sats: Optional[int] = None,
        lightning_below_sats: Optional[int] = None,
    ) -> Settlement: ...
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
        minimum_payout_sats: Optional[int] = None,
        lightning_below_sats: Optional[int] = None,
    ) -> Settlement: ...
    def settle_with_wallet(
        self,
        start: datetime,
        end: datetime,
        tariff: Tariff,
        *,
        rate: _Amount,
        wallet: OperatorWallet,
        rate_source: str = "manual",
        minimum_payout_sats: Optional[int] = None,
        first_index: Optional[int] = None,
        first_change_index: Optional[int] = None,
        lightning_below_sats: Optional[int] = None,
    ) -> Settlement: ...
    def next_wallet_indices(self, wallet: OperatorWallet) -> Dict[str, int]: ...
    def settlement(self, id: str) -> Optional[Settlement]: ...
    def mark_paid(self, id: str, txid: str) -> Settlement: ...
    def void_settlement(self, id: str, reason: str) -> Settlement: ...
    def with_battery(self, battery: Battery) -> "Grid": ...
    @property
    def battery(self) -> Optional[Battery]: ...
    def battery_states(self, start: datetime, end: datetime) -> Dict[str, List[Any]]: ...
    def battery_states_arrow(self, start: datetime, end: datetime) -> _ArrowStream: ...

def _refused(argument: str, error: BaseException) -> MicrogridError:
    """The MicrogridError that ``error``, raised reading ``argument``, becomes
    (for the package's Python helpers)."""
def simulate(
    households: int, start: date, days: int, *, seed: int = 42, timeframe_minutes: int = 15
) -> Dict[str, List[Any]]: ...

def regtest_address(seed: int, output_type: str = "p2wpkh") -> str: ...
def check_offer(
    offer: str, *, network: str = "regtest", at: Optional[datetime] = None
) -> Dict[str, Any]: ...
def check_bolt11(
    invoice: str, *, sats: int, network: str = "regtest", at: Optional[datetime] = None
) -> Dict[str, Any]: ...
def invoice_uri_with_lightning(
    settlement: Settlement, prosumer: str, bolt11: str, *, at: Optional[datetime] = None
) -> str: ...

"""A catalogue of bad inputs, each tried on every store (memory, SQLite,
PostgreSQL, MongoDB): each must raise exactly its exception class and
leave the store as it was.

Every test builds the same small books first (``baseline``): three
prosumers (two with regtest payout addresses, one that joins on the day and
leaves two days later, without one), readings in six timeframes of a
two-hour window ``[W, W+2h)`` and one after it, the window cleared, its
first hour settled and paid (S1), the next half hour settled and unpaid
(S2), the last half hour cleared and not settled. Then it takes a
fingerprint of the store, gives it one bad input, and takes the
fingerprint again (see ``fingerprint.py``):

* the database's own view: every table (SQLite, PostgreSQL) or collection
  (MongoDB), read with sqlite3, psycopg and pymongo past the library;
* the public API's view, on every store: ``prosumers()``, summaries,
  trades and allocations over ``[W-2d, W+4d)``, the bill of the window and
  S1 and S2 looked up by id.

The memory store has no view of its own, and the API shows neither the
readings of a timeframe not cleared nor a settlement whose id is not known.
So on memory the test also builds a twin of the books that gets no bad
input, and then probes both the same way (clears ``[W-2d, W+4d)``, takes
the API view, settles the rest of the day): the two must agree.

Each PostgreSQL test has a schema of its own (conftest's ``schema=``
parameter), each MongoDB test a database of its own; the fingerprint covers
every table of that schema or collection of that database. In case a
schema is shared all the same (a URL given without one), each test also
has prosumer ids of its own (a random prefix) and a day of its own (a
counter per store from 2026-07-01), so that its clearings and settlements
do not meet another test's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

import microgrid
import pytest

import fingerprint
from conftest import UTC

V = microgrid.ValidationError
C = microgrid.ConflictError
N = microgrid.NotFoundError
S = microgrid.SettlementError

M15 = dt.timedelta(minutes=15)
DAY = dt.timedelta(days=1)
JOINED = dt.date(2026, 1, 1)
FIRST_DAY = dt.date(2026, 7, 1)
RATE = Decimal(1000)  # EUR per BTC: low, so every euro is 100,000 sat, far above dust
TXID = "ab" * 32


def tariff(**kw):
    return microgrid.Tariff("0.30", "0.08", grid_fee="0.02", fixed_fee="0.10", **kw)


# --- addresses (BIP 173 bech32, BIP 350 bech32m) -------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32, _BECH32M = 1, 0x2BC830A3


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _convertbits(data, frombits, tobits):
    acc = bits = 0
    out = []
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & ((1 << tobits) - 1))
    if bits:
        out.append((acc << (tobits - bits)) & ((1 << tobits) - 1))
    return out


def segwit(label: str, *, hrp="bcrt", version=0, size=20, const=None) -> str:
    """A segwit address with a program derived from `label`; bech32 for
    version 0, bech32m above, unless `const` says otherwise."""
    program = hashlib.sha256(label.encode()).digest()[:size]
    data = [version] + _convertbits(program, 8, 5)
    if const is None:
        const = _BECH32 if version == 0 else _BECH32M
    values = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp] + data
    pm = _polymod(values + [0] * 6) ^ const
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


OPERATOR = segwit("operator")
A_ADDRESS = segwit("member a")
B_ADDRESS = segwit("member b", version=1, size=32)  # taproot
MAINNET = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
TESTNET = segwit("testnet", hrp="tb")
WITNESS_V2 = segwit("v2", version=2, size=20)
V0_AS_BECH32M = segwit("v0m", const=_BECH32M)
BAD_CHECKSUM = A_ADDRESS[:-1] + ("q" if A_ADDRESS[-1] != "q" else "p")


# --- the books every test starts from -------------------------------------------

_days = {kind: itertools.count() for kind in ("memory", "sqlite", "postgres", "mongodb")}


def store_kind(url: str) -> str:
    for kind, prefix in (("memory", "memory:"), ("sqlite", "sqlite:"), ("postgres", "postgres"), ("mongodb", "mongodb:")):
        if url.startswith(prefix):
            return kind
    raise ValueError(url)


@dataclass
class Books:
    url: str
    grid: microgrid.Grid
    prefix: str
    day: dt.date
    a: str
    b: str
    c: str
    s1: microgrid.Settlement
    s2: microgrid.Settlement

    @property
    def w(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(), tzinfo=UTC)

    def at(self, minutes: int) -> dt.datetime:
        return self.w + dt.timedelta(minutes=minutes)

    def new_id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def row(self, name: str, **kw) -> dict:
        return {"id": self.new_id(name), "name": name.upper(), "kind": "household", "joined": JOINED, **kw}

    @property
    def window(self):
        return self.w - 2 * DAY, self.w + 4 * DAY


def baseline(url: str, prefix: str, day: dt.date) -> Books:
    grid = microgrid.Grid(url)
    a, b, c = (f"{prefix}-{x}" for x in "abc")
    assert grid.register_all(
        [
            {"id": a, "name": "Anna", "kind": "household", "joined": JOINED, "address": A_ADDRESS},
            {"id": b, "name": "Bäckerei Böhm", "kind": "company", "joined": JOINED, "address": B_ADDRESS, "network": "regtest"},
            {"id": c, "name": "Town hall", "kind": "public", "joined": day, "left": day + 2 * DAY},
        ]
    ) == 3
    w = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    rows = [  # minutes after W, prosumer, produced, consumed
        (0, a, 3000, 0), (0, b, 0, 2000), (0, c, 0, 500),
        (15, a, 1000, 100), (15, b, 0, 1500),
        (60, a, 2000, 0), (60, b, 0, 2500), (60, c, 0, 0),
        (90, a, 4000, 0), (90, b, 0, 4000),
        (105, a, 500, 500), (105, c, 200, 0),
        (120, a, 100, 0), (120, b, 0, 50),  # after the window: stored, not cleared
    ]
    report = grid.record([w + dt.timedelta(minutes=m) for m, *_ in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    assert report == {"inserted": len(rows), "replaced": 0, "unchanged": 0}
    assert grid.clear(w, w + 8 * M15, "sdr", tariff())["cleared"] == 8
    s1 = grid.settle(w, w + 4 * M15, tariff(), rate=RATE, operator_address=OPERATOR)
    grid.mark_paid(s1.id, TXID)
    s2 = grid.settle(w + 4 * M15, w + 6 * M15, tariff(), rate=RATE, operator_address=OPERATOR)
    return Books(url, grid, prefix, day, a, b, c, grid.settlement(s1.id), s2)


def snapshot(books: Books) -> fingerprint.Fingerprint:
    start, end = books.window
    return {
        **fingerprint.tables(books.url),
        **fingerprint.api(
            books.grid, start, end, bill=(books.w, books.at(120)), tariff=tariff(), settlement_ids=[books.s1.id, books.s2.id]
        ),
    }


def probe(books: Books) -> fingerprint.Fingerprint:
    """Clears the whole window, looks at it and settles the rest of the
    day: shows what a snapshot cannot (readings not cleared, settlements
    nobody knows the id of). Changes the books."""

    def attempt(f):
        try:
            return [repr(f())]
        except Exception as e:
            return [f"raised {type(e).__name__}: {e}"]

    start, end = books.window
    out = {"probe:clear": fingerprint.Part.of(attempt(lambda: books.grid.clear(start, end, "sdr", tariff())))}
    out.update(fingerprint.api(books.grid, start, end, bill=(start, end), tariff=tariff(), settlement_ids=[books.s1.id, books.s2.id]))

    # Settling each timeframe of the window at another rate meets every
    # settlement that ends in it (a conflict naming it), then the rest of
    # the day settles on what is carried out of the last one.
    settled = []
    for m in [*range(0, 120, 15), 120]:
        end = books.at(m + 15) if m < 120 else books.w + DAY
        rate = Decimal(7777) if m < 120 else RATE
        settled += attempt(lambda: books.grid.settle(books.at(m), end, tariff(), rate=rate, operator_address=OPERATOR).canonical_json())
    out["probe:settle"] = fingerprint.Part.of([f"{i:02} {r}" for i, r in enumerate(settled)])
    return out


# --- the catalogue -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    expected: type
    run: Callable[[Books], object]


def record(books: Books, rows, **kw):
    """Records (minutes after W or a datetime, prosumer, produced, consumed) rows."""
    starts = [m if isinstance(m, dt.datetime) else books.at(m) for m, *_ in rows]
    return books.grid.record(starts, [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], **kw)


def settle(books: Books, start_min: int, end_min: int, **kw):
    args = {"rate": RATE, "operator_address": OPERATOR, **kw}
    t = args.pop("tariff", None) or tariff()
    return books.grid.settle(books.at(start_min), books.at(end_min), t, **args)


def clear(books: Books, mechanism="sdr", t=None, start=None, end=None):
    return books.grid.clear(books.w if start is None else start, books.at(240) if end is None else end, mechanism, t or tariff())


def wide(books: Books, produced: dict, consumed: dict, produced_starts=(120,), consumed_starts=(120,)):
    import pandas as pd

    def frame(columns, starts):
        index = pd.DatetimeIndex([books.at(m) for m in starts], name="start")
        return pd.DataFrame(columns, index=index)

    return books.grid.record_wide(frame(produced, produced_starts), frame(consumed, consumed_starts))


def frame_without_consumed(books: Books):
    import pandas as pd

    return books.grid.record(pd.DataFrame({"start": [books.at(120)], "prosumer_id": [books.a], "produced_wh": [100]}))


def _until_tomorrow():
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now + DAY


CASES = [
    # registering
    Case("register-id-taken", C, lambda b: b.grid.register(b.a, "Again", "household", JOINED)),
    Case("register-all-id-twice-in-batch", C, lambda b: b.grid.register_all([b.row("x"), b.row("y"), b.row("x")])),
    Case("register-all-one-id-taken", C, lambda b: b.grid.register_all([b.row("x"), {**b.row("y"), "id": b.b}])),
    Case("register-id-with-space", V, lambda b: b.grid.register(b.new_id("two words"), "X", "household", JOINED)),
    Case("register-id-non-ascii", V, lambda b: b.grid.register(b.new_id("häuschen"), "X", "household", JOINED)),
    Case("register-id-empty", V, lambda b: b.grid.register("", "X", "household", JOINED)),
    Case("register-id-65-chars", V, lambda b: b.grid.register(b.new_id("x" * (64 - len(b.prefix))), "X", "household", JOINED)),
    Case("register-name-nul", V, lambda b: b.grid.register(b.new_id("x"), "Anna\x00Evil", "household", JOINED)),
    Case("register-name-bidi-override", V, lambda b: b.grid.register(b.new_id("x"), "Anna \u202egpj.exe", "household", JOINED)),
    Case("register-name-blank", V, lambda b: b.grid.register(b.new_id("x"), "   ", "household", JOINED)),
    Case("register-name-201-chars", V, lambda b: b.grid.register(b.new_id("x"), "n" * 201, "household", JOINED)),
    Case("register-unknown-kind", V, lambda b: b.grid.register(b.new_id("x"), "X", "castle", JOINED)),
    Case("register-left-before-joined", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, left=JOINED - DAY)),
    Case("register-mainnet-address-on-regtest", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=MAINNET)),
    Case("register-testnet-address-on-regtest", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=TESTNET)),
    Case("register-witness-v2-address", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=WITNESS_V2)),
    Case("register-v0-address-in-bech32m", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=V0_AS_BECH32M)),
    Case("register-address-bad-checksum", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=BAD_CHECKSUM)),
    Case("register-unknown-network", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", JOINED, address=A_ADDRESS, network="litecoin")),
    Case("register-all-one-bad-address", V, lambda b: b.grid.register_all([b.row("x", address=A_ADDRESS), b.row("y", address=BAD_CHECKSUM)])),
    Case("register-all-one-without-joined", V, lambda b: b.grid.register_all([b.row("x"), {"id": b.new_id("y"), "name": "Y", "kind": "household"}])),
    Case("register-all-one-unknown-kind", V, lambda b: b.grid.register_all([b.row("x"), b.row("y", kind="castle")])),
    Case("register-joined-as-string", V, lambda b: b.grid.register(b.new_id("x"), "X", "household", "2026-01-01")),
    Case("register-id-as-int", V, lambda b: b.grid.register(12345, "X", "household", JOINED)),
    Case("register-all-joined-as-string", V, lambda b: b.grid.register_all([b.row("x"), b.row("y", joined="2026-01-01")])),
    # recording readings
    Case("record-negative-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, -1, 0)])),
    Case("record-implausible-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, 0, 2_500_001)])),
    Case("record-misaligned-start", V, lambda b: record(b, [(120, b.a, 100, 0), (127, b.b, 0, 1)])),
    Case("record-sub-second-start", V, lambda b: record(b, [(120, b.a, 100, 0), (b.at(135) + dt.timedelta(milliseconds=500), b.b, 0, 1)])),
    Case("record-naive-start", V, lambda b: record(b, [(b.at(135).replace(tzinfo=None), b.b, 0, 1)])),
    Case("record-float-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, 0, 1.5)])),
    Case("record-bool-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, True, 0)])),
    Case("record-decimal-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, 0, Decimal(5))])),
    Case("record-missing-energy", V, lambda b: record(b, [(120, b.a, 100, 0), (135, b.b, None, 0)])),
    Case("record-columns-of-different-lengths", V, lambda b: b.grid.record([b.at(135), b.at(150)], [b.a], [1, 2], [0, 0])),
    Case("record-two-of-four-columns", V, lambda b: b.grid.record([b.at(135)], [b.a])),
    Case("record-id-column-is-a-string", V, lambda b: b.grid.record([b.at(135)], b.a, [1], [0])),
    Case("record-unknown-prosumer-among-good-rows", N, lambda b: record(b, [(120, b.a, 100, 0), (135, b.a, 5, 0), (135, b.new_id("nobody"), 1, 1)])),
    Case("record-two-readings-one-timeframe", C, lambda b: record(b, [(135, b.a, 5, 0), (150, b.b, 0, 5), (135, b.a, 6, 0)])),
    Case("record-other-value-for-cleared", C, lambda b: record(b, [(0, b.a, 3001, 0)])),
    Case("record-new-reading-for-cleared", C, lambda b: record(b, [(15, b.c, 0, 40)])),
    Case("record-good-rows-and-one-late", C, lambda b: record(b, [(120, b.a, 111, 0), (135, b.b, 0, 7), (30, b.c, 0, 3)])),
    Case("record-before-joined", V, lambda b: record(b, [(135, b.a, 1, 0), (-15, b.c, 0, 3)])),
    Case("record-after-left", V, lambda b: record(b, [(135, b.a, 1, 0), (2 * 24 * 60, b.c, 0, 3)])),
    Case("record-frame-without-consumed", V, frame_without_consumed),
    Case("record-wide-different-starts", V, lambda b: wide(b, {b.a: [1]}, {b.a: [2]}, consumed_starts=(135,))),
    Case("record-wide-unknown-column", N, lambda b: wide(b, {b.a: [1], "stranger": [1]}, {b.a: [2], "stranger": [1]})),
    Case("record-wide-float-cells", V, lambda b: wide(b, {b.a: [1.5]}, {b.a: [2]})),
    # clearing
    Case("clear-unknown-mechanism", V, lambda b: clear(b, "auction")),
    Case("clear-fixed-negative-price", V, lambda b: clear(b, "fixed:-1")),
    Case("clear-fixed-7-decimals", V, lambda b: clear(b, "fixed:0.1234567")),
    Case("clear-fixed-not-a-number", V, lambda b: clear(b, "fixed:cheap")),
    Case("clear-year-2100", V, lambda b: clear(b, start=dt.datetime(2100, 1, 1, tzinfo=UTC), end=dt.datetime(2100, 1, 2, tzinfo=UTC))),
    Case("clear-past-into-future", V, lambda b: clear(b, start=b.at(120), end=_until_tomorrow())),
    Case("clear-end-before-start", V, lambda b: clear(b, start=b.at(240), end=b.at(120))),
    Case("clear-empty-range", V, lambda b: clear(b, start=b.at(120), end=b.at(120))),
    Case("clear-misaligned-end", V, lambda b: clear(b, start=b.at(120), end=b.at(247))),
    Case("clear-naive-start", V, lambda b: clear(b, start=b.at(120).replace(tzinfo=None))),
    Case("clear-dates-not-datetimes", V, lambda b: clear(b, start=b.day, end=b.day + DAY)),
    Case("clear-not-a-tariff", V, lambda b: b.grid.clear(b.at(120), b.at(240), "sdr", {"import": "0.3"})),
    Case("tariff-negative-export-price", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "-0.01"))),
    Case("tariff-import-below-export", V, lambda b: clear(b, t=microgrid.Tariff("0.05", "0.08"))),
    Case("tariff-price-1e20", V, lambda b: clear(b, t=microgrid.Tariff(str(10**20), "0.08"))),
    Case("tariff-price-7-decimals", V, lambda b: clear(b, t=microgrid.Tariff("0.3000001", "0.08"))),
    Case("tariff-float-price", V, lambda b: clear(b, t=microgrid.Tariff(0.30, "0.08"))),
    Case("tariff-bool-price", V, lambda b: clear(b, t=microgrid.Tariff(True, "0.08"))),
    Case("tariff-negative-grid-fee", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "0.08", grid_fee="-0.01"))),
    Case("tariff-negative-margin", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "0.08", operator_margin="-0.01"))),
    Case("tariff-fixed-fee-5e28", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "0.08", fixed_fee=Decimal(5 * 10**28)))),
    Case("tariff-negative-fixed-fee", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "0.08", fixed_fee="-1"))),
    Case("tariff-lowercase-currency", V, lambda b: clear(b, t=microgrid.Tariff("0.30", "0.08", currency="eur"))),
    # billing
    Case("bill-period-not-cleared", N, lambda b: b.grid.bill(b.w, b.at(180), tariff())),
    Case("bill-other-currency", C, lambda b: b.grid.bill(b.w, b.at(120), tariff(currency="USD"))),
    # settling
    Case("settle-rate-zero", S, lambda b: settle(b, 90, 120, rate=Decimal(0))),
    Case("settle-rate-negative", S, lambda b: settle(b, 90, 120, rate=Decimal(-1000))),
    Case("settle-rate-1e20", S, lambda b: settle(b, 90, 120, rate=Decimal(10**20))),
    Case("settle-rate-float", V, lambda b: settle(b, 90, 120, rate=1000.0)),
    Case("settle-rate-bool", V, lambda b: settle(b, 90, 120, rate=True)),
    Case("settle-rate-not-a-number", V, lambda b: settle(b, 90, 120, rate="lots")),
    Case("settle-other-currency", C, lambda b: settle(b, 90, 120, tariff=tariff(currency="USD"))),
    Case("settle-operator-mainnet-address", V, lambda b: settle(b, 90, 120, operator_address=MAINNET)),
    Case("settle-operator-bad-checksum", V, lambda b: settle(b, 90, 120, operator_address=BAD_CHECKSUM)),
    Case("settle-unknown-network", V, lambda b: settle(b, 90, 120, network="dogecoin")),
    Case("settle-testnet-members-on-regtest", S, lambda b: settle(b, 90, 120, operator_address=TESTNET, network="testnet")),
    Case("settle-period-not-cleared", N, lambda b: settle(b, 120, 180)),
    Case("settle-settled-period-other-rate", C, lambda b: settle(b, 60, 90, rate=Decimal(2000))),
    Case("settle-settled-period-other-source", C, lambda b: settle(b, 0, 60, rate_source="exchange")),
    Case("settle-period-covering-two-settlements", C, lambda b: settle(b, 0, 120)),
    Case("settle-period-straddling-a-settlement", C, lambda b: settle(b, 75, 120)),
    Case("settle-period-ending-with-a-settlement", C, lambda b: settle(b, 30, 60)),
    Case("settle-period-inside-a-settlement", C, lambda b: settle(b, 0, 30)),
    # paying
    Case("mark-paid-txid-not-hex", S, lambda b: b.grid.mark_paid(b.s2.id, "xyz")),
    Case("mark-paid-txid-63-chars", S, lambda b: b.grid.mark_paid(b.s2.id, "a" * 63)),
    Case("mark-paid-txid-as-int", V, lambda b: b.grid.mark_paid(b.s2.id, 12345)),
    Case("mark-paid-unknown-settlement", N, lambda b: b.grid.mark_paid("0" * 64, TXID)),
    Case("mark-paid-paid-with-other-txid", C, lambda b: b.grid.mark_paid(b.s1.id, "cd" * 32)),
    Case("mark-paid-paid-with-bad-txid", S, lambda b: b.grid.mark_paid(b.s1.id, "cd" * 31 + "zz")),
    # opening and looking
    Case("grid-unknown-url-scheme", V, lambda b: microgrid.Grid("ftp://example.org/books")),
    Case("grid-7-minute-timeframes", V, lambda b: microgrid.Grid(b.url, timeframe_minutes=7)),
    Case("grid-timeframe-minutes-as-string", V, lambda b: microgrid.Grid(b.url, timeframe_minutes="15")),
    Case("grid-0-minute-timeframes", V, lambda b: microgrid.Grid(b.url, timeframe_minutes=0)),
    Case("view-unknown-prosumer", N, lambda b: b.grid.prosumer(b.new_id("nobody"), b.w, b.at(120))),
    Case("view-invalid-prosumer-id", V, lambda b: b.grid.trades(b.w, b.at(120), prosumer_id="two words")),
]

assert len({c.id for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_and_nothing_changed(store_url, case):
    kind = store_kind(store_url)
    prefix = f"k{uuid.uuid4().hex[:8]}"
    day = FIRST_DAY + dt.timedelta(days=next(_days[kind]))
    books = baseline(store_url, prefix, day)
    before = snapshot(books)

    raised = None
    try:
        case.run(books)
    except Exception as e:
        raised = e

    after = snapshot(books)
    problems = []
    if raised is None:
        problems.append(f"nothing raised (expected {case.expected.__name__})")
    elif type(raised) is not case.expected:
        problems.append(f"raised {type(raised).__name__}: {raised} (expected {case.expected.__name__})")
    problems += [f"store changed: {d}" for d in fingerprint.differences(before, after)]
    if kind == "memory":
        twin = baseline(store_url, prefix, day)
        problems += [f"differs from the untouched twin after probing: {d}" for d in fingerprint.differences(probe(twin), probe(books))]
    assert not problems, f"{case.id} on {kind}:\n" + "\n".join(problems)

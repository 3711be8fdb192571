"""Settlements too large for one transaction: batches under the standard
size, a PSBT per batch, fractional fee rates, reconciliation of a raw
transaction, and BIP21 URIs read back."""

import datetime as dt
import hashlib
from decimal import Decimal

import microgrid
import pytest

from conftest import JUNE

OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
OPERATOR_PROGRAM = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def p2wpkh(program: bytes) -> str:
    """The regtest bech32 (BIP173) address of a 20-byte witness v0 program."""
    data, acc, bits = [0], 0, 0
    for b in program:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrp = "bcrt"
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod(expanded + data + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def program(i: int) -> bytes:
    return hashlib.sha256(f"member {i}".encode()).digest()[:20]


def script(prog: bytes) -> bytes:
    return bytes([0, 20]) + prog


def raw_tx(outputs):
    """A legacy-serialized transaction with one input and `outputs`
    (script, sats); returns (hex, txid)."""
    out = bytearray((2).to_bytes(4, "little"))
    out += b"\x01" + bytes(32) + (0).to_bytes(4, "little") + b"\x00" + b"\xfd\xff\xff\xff"
    n = len(outputs)
    out += bytes([n]) if n < 0xFD else b"\xfd" + n.to_bytes(2, "little")
    for s, sats in outputs:
        out += sats.to_bytes(8, "little") + bytes([len(s)]) + s
    out += bytes(4)
    txid = hashlib.sha256(hashlib.sha256(out).digest()).digest()[::-1].hex()
    return out.hex(), txid


def settled(members, consumers=()):
    """One timeframe: every member produces 2 kWh and more, except
    `consumers`, who use 10 kWh; settled at 1,000 EUR/BTC so payouts are
    large."""
    grid = microgrid.Grid()
    ids = [f"m{i:05}" for i in range(members)]
    for i, pid in enumerate(ids):
        grid.register(pid, pid, "household", dt.date(2026, 1, 1), address=p2wpkh(program(i)))
    noon = JUNE + dt.timedelta(hours=12)
    produced = [0 if i in consumers else 2_000 + i for i in range(members)]
    consumed = [10_000 if i in consumers else 0 for i in range(members)]
    grid.record([noon] * members, ids, produced, consumed)
    end = JUNE + dt.timedelta(days=1)
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))
    grid.clear(JUNE, end, "mmr", tariff)
    s = grid.settle(JUNE, end, tariff, rate=Decimal("1000"), operator_address=OPERATOR)
    return grid, s


def sats(btc: Decimal) -> int:
    return int(btc * 100_000_000)


@pytest.fixture(scope="module")
def large():
    return settled(4_000, consumers={7, 11, 13})[1]


def test_a_large_settlement_splits_into_standard_transactions(large):
    s = large
    payouts = {a: sats(v) for a, v in s.sendmany().items()}
    assert len(payouts) == 3_997
    one = s.fee_estimate(1)
    assert one["vbytes"] > 100_000
    batches = s.batches(Decimal("1.5"))
    assert [len(b["outputs"]) for b in batches] == [3_222, 775]
    assert s.batches("1.5") == batches, "deterministic, a str rate is the same decimal"
    seen = {}
    for b in batches:
        assert b["vbytes"] <= 100_000 and b["weight"] <= 400_000
        assert b["fee_sats"] == -(-b["vbytes"] * 1_500 // 1_000)
        assert b["sat_per_vb"] == Decimal("1.5")
        assert b["payouts_sats"] == b["outputs_sats"] == sum(o["sats"] for o in b["outputs"])
        assert {a: sats(v) for a, v in b["sendmany"].items()} == {o["address"]: o["sats"] for o in b["outputs"]}
        for o in b["outputs"]:
            seen[o["address"]] = o["payout_sats"]
    assert seen == payouts

    members = s.batches(Decimal("0.5"), fee_payer="members", max_vbytes=30_000)
    assert len(members) == 5 and all(b["vbytes"] <= 30_000 for b in members)
    for b in members:
        assert sum(o["fee_share_sats"] for o in b["outputs"]) == b["fee_sats"]
        assert all(o["sats"] + o["fee_share_sats"] == o["payout_sats"] for o in b["outputs"])
    assert sum(b["payouts_sats"] for b in members) == sum(payouts.values())


def test_a_psbt_per_batch(large):
    s = large
    b = s.batches(2)[1]
    utxo = ("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:1", b["outputs_sats"] + b["fee_sats"] + 10_000, OPERATOR)
    psbt = s.batch_psbt(1, [utxo], OPERATOR, 2)
    assert psbt["psbt"].startswith("cHNidP8")
    assert (psbt["vbytes"], psbt["fee_sats"], psbt["change_sats"]) == (b["vbytes"], b["fee_sats"], 10_000)
    with pytest.raises(microgrid.ValidationError) as e:
        s.batch_psbt(2, [utxo], OPERATOR, 2)
    assert e.value.kind == "out_of_range" and e.value.details["argument"] == "index"
    # Many small inputs push the first batch over the cap.
    many = [(f"{i:064x}:0", 1_000_000, OPERATOR) for i in range(400)]
    with pytest.raises(microgrid.ValidationError) as e:
        s.batch_psbt(0, many, OPERATOR, 2)
    assert e.value.kind == "too_large"


@pytest.mark.parametrize(
    "rate, kind",
    [(0, "invalid_fee_rate"), (Decimal("0.05"), "invalid_fee_rate"), ("1.0005", "invalid_fee_rate"), (10_001, "invalid_fee_rate"), (1.5, "invalid_type")],
)
def test_fee_rates_are_exact_decimals_checked_where_made(rate, kind):
    _, s = settled(3)
    with pytest.raises(microgrid.MicrogridError) as e:
        s.batches(rate)
    assert e.value.kind == kind, str(e.value)
    assert e.value.details["argument"] == "sat_per_vb"


def test_batch_options_are_checked():
    _, s = settled(3)
    with pytest.raises(microgrid.ValidationError) as e:
        s.batches(1, max_vbytes=100_001)
    assert e.value.kind == "too_large" and e.value.details["argument"] == "max_vbytes"
    with pytest.raises(microgrid.ValidationError) as e:
        s.batches(1, fee_payer="miner")
    assert e.value.details["argument"] == "fee_payer"
    with pytest.raises(microgrid.ValidationError):
        s.reconcile("00", fee_payer="members")
    assert s.fee_estimate(Decimal("0.5"))["fee_sats"] == -(-s.fee_estimate(1)["vbytes"] // 2)


def test_reconciliation_reports_what_a_transaction_pays():
    consumers = {1, 2, 3}
    grid, s = settled(6, consumers=consumers)
    invoices = s.invoices()
    assert [i["prosumer_id"] for i in invoices] == ["m00001", "m00002", "m00003"]
    amounts = [i["sats"] for i in invoices]
    assert len(set(amounts)) == 1, "three equal consumers owe the same"
    payouts = sorted(s.sendmany().items())
    op = script(OPERATOR_PROGRAM)
    by_address = {p2wpkh(program(i)): script(program(i)) for i in range(6)}
    hex_, txid = raw_tx(
        [
            (by_address[payouts[0][0]], sats(payouts[0][1])),
            (by_address[payouts[1][0]], sats(payouts[1][1]) + 5),
            (op, amounts[0]),
            (op, amounts[0] // 3),
            (op, amounts[0]),
            (op, amounts[0]),
            (op, amounts[0]),
            (script(bytes(20)), 12_345),
        ]
    )
    r = s.reconcile(hex_)
    assert r["txid"] == txid
    assert [p["address"] for p in r["payouts"]] == [payouts[0][0]]
    assert [(i["prosumer_id"], i["vout"]) for i in r["invoices"]] == [("m00001", 2), ("m00002", 4), ("m00003", 5)]
    kinds = [(p["kind"], p["vout"]) for p in r["problems"]]
    assert kinds == [("payout_wrong_amount", 1), ("invoice_partly", 3), ("invoice_twice", 6)]
    assert r["problems"][0]["expected_sats"] + 5 == r["problems"][0]["sats"]
    assert r["problems"][1]["candidates"] == ["m00002", "m00003"]
    assert r["problems"][2]["prosumer_id"] == "m00003"
    assert all(p["message"] for p in r["problems"])
    assert r["other_outputs"] == [{"address": p2wpkh(bytes(20)), "sats": 12_345, "vout": 7}]
    with pytest.raises(microgrid.ValidationError) as e:
        s.reconcile("not hex")
    assert e.value.kind == "parse" and e.value.details["argument"] == "raw_tx_hex"

    # The operator's own batch: checked, then marked paid by its txid.
    outputs = [(by_address[a], sats(v)) for a, v in payouts]
    hex_, txid = raw_tx(outputs + [(op, 70_000)])
    assert s.check_payment(hex_) == txid
    assert grid.mark_paid(s.id, txid).paid_txid == txid
    short, _ = raw_tx(outputs[1:])
    with pytest.raises(microgrid.SettlementError) as e:
        s.check_payment(short)
    assert e.value.kind == "transaction_mismatch"


def test_the_members_pay_the_fee_of_a_checked_payment():
    _, s = settled(4)
    [b] = s.batches(1, fee_payer="members")
    outputs = [(script(next(program(i) for i in range(4) if p2wpkh(program(i)) == o["address"])), o["sats"]) for o in b["outputs"]]
    hex_, txid = raw_tx(outputs)
    assert s.check_payment(hex_, sat_per_vb=1, fee_payer="members") == txid
    with pytest.raises(microgrid.SettlementError):
        s.check_payment(hex_)
    r = s.reconcile(hex_, sat_per_vb=1, fee_payer="members")
    assert len(r["payouts"]) == 4 and r["problems"] == []


def test_bip21_uris_parse_back():
    _, s = settled(6, consumers={1, 2})
    for inv in s.invoices():
        r = microgrid.Settlement.parse_uri(inv["uri"])
        assert r["address"] == OPERATOR
        assert r["amount_sats"] == inv["sats"]
        assert r["label"] == inv["prosumer_id"]
        assert r["message"] == "Energy bill 2026-06-01 to 2026-06-02"
        assert r["other"] == {}
    wallet = "BITCOIN:BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080?AMOUNT=0.0005&label=B%C3%A4ckerei%20%26%20Co&lightning=lnbcrt1"
    r = microgrid.Settlement.parse_uri(wallet)
    assert (r["address"], r["amount_sats"], r["label"], r["other"]) == (OPERATOR, 50_000, "Bäckerei & Co", {"lightning": "lnbcrt1"})
    for bad in [OPERATOR, f"bitcoin:{OPERATOR}?req-pop=1", f"bitcoin:{OPERATOR}?amount=1e-3", f"bitcoin:{OPERATOR}?label=%E2"]:
        with pytest.raises(microgrid.SettlementError) as e:
            microgrid.Settlement.parse_uri(bad)
        assert e.value.kind == "invalid_payment_uri"
        assert e.value.details["argument"] == "uri"


def test_bip321_uris_without_an_address_parse():
    # BIP321's examples of URIs without an address.
    r = microgrid.Settlement.parse_uri("bitcoin:?lightning=lnbc420bogusinvoice")
    assert r["address"] is None
    assert (r["lightning"], r["offer"], r["amount_sats"]) == ("lnbc420bogusinvoice", None, None)
    assert r["params"] == [("lightning", "lnbc420bogusinvoice")]
    r = microgrid.Settlement.parse_uri("bitcoin:?lno=lno1bogusoffer&sp=sp1qsilentpayment")
    assert (r["address"], r["lightning"], r["offer"]) == (None, None, "lno1bogusoffer")
    assert r["other"] == {"lno": "lno1bogusoffer", "sp": "sp1qsilentpayment"}
    # Payment instructions may repeat (BIP321): offer and other keep the first, params all.
    r = microgrid.Settlement.parse_uri("BITCOIN:?LNO=lno1a&amount=0.0001&lno=lno1b&label=Caf%C3%A9")
    assert (r["offer"], r["amount_sats"], r["label"]) == ("lno1a", 10_000, "Café")
    assert r["other"] == {"lno": "lno1a"}
    assert r["params"] == [("lno", "lno1a"), ("lno", "lno1b")]
    # With an address, it is there as before, and the keys are the same.
    r = microgrid.Settlement.parse_uri(f"bitcoin:{OPERATOR}?lno=lno1a")
    assert r["address"] == OPERATOR and r["offer"] == "lno1a" and r["lightning"] is None
    assert set(r) == {"address", "amount_sats", "label", "message", "lightning", "offer", "other", "params"}
    for bad, reason in [
        ("bitcoin:", "no address and no payment instruction"),
        ("bitcoin:?amount=0.001&label=x", "no address and no payment instruction"),
        ("bitcoin:?lightning=", "no address and no payment instruction"),
        ("bitcoin:?lno=lno1a&req-x=1", "req-x"),
        ("bitcoin:?lno=lno1a&label=a&label=b", "label appears twice"),
        ("bitcoin:?bc=tb1qghfhmd4zh7ncpmxl3qzhmq566jk8ckq4gafnmg", "starting with bc1"),
    ]:
        with pytest.raises(microgrid.SettlementError) as e:
            microgrid.Settlement.parse_uri(bad)
        assert e.value.kind == "invalid_payment_uri"
        assert e.value.details["argument"] == "uri"
        assert e.value.details["uri"] == bad
        assert reason in e.value.details["reason"], (bad, e.value.details)


def test_a_minimum_payout_carries_smaller_balances_forward():
    import datetime as dt
    from decimal import Decimal

    utc = dt.timezone.utc
    start = dt.datetime(2026, 6, 1, tzinfo=utc)
    end = start + dt.timedelta(days=7)
    data = microgrid.simulate(40, start.date(), 7, seed=3)
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))

    def settled(minimum):
        grid = microgrid.Grid()
        for i, pid in enumerate(sorted(set(data["prosumer_id"]))):
            grid.register(pid, pid, microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1),
                          address=microgrid.regtest_address(i))
        grid.record(data["start"], data["prosumer_id"], data["produced_wh"], data["consumed_wh"])
        grid.clear(start, end, microgrid.Mechanism.SUPPLY_DEMAND_RATIO, tariff)
        return grid.settle(start, end, tariff, rate=Decimal("90000"),
                           operator_address=microgrid.regtest_address(99), minimum_payout_sats=minimum)

    everyone = settled(None)
    payouts = sorted(e["due_sats"] for e in everyone.entries() if e["due_sats"] > 0)
    assert len(payouts) >= 2, payouts
    minimum = payouts[len(payouts) // 2]
    policy = settled(minimum)
    paid = {a: v for a, v in policy.sendmany().items()}
    assert all(v * 100_000_000 >= minimum for v in paid.values())
    assert len(paid) < len(everyone.sendmany())
    assert policy.id != everyone.id
    assert policy.is_conserved()
    with pytest.raises(microgrid.ValidationError) as raised:
        settled(-1)
    assert raised.value.details["argument"] == "minimum_payout_sats"

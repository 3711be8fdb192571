"""The operator's descriptor wallet from Python: what it refuses, fresh
invoice addresses across settlements read back from the store, and a PSBT
per batch whose inputs and change carry their BIP32 origins (decoded here
with a small BIP174 reader)."""

import base64
import datetime as dt
from decimal import Decimal

import microgrid
import pytest

from conftest import JUNE

# BIP84 account 0 on test networks of the seed bytes([42] * 32).
FINGERPRINT = "5159c173"
TPUB = (
    "tpubDD3WNAnESEbJ7RrrzgsTbLaViceBrnHr9pni1pfweCVuC1HrS6ffrs3BKvDDJZr6"
    "ANcUugKBYWzkwELD4wBSjN7V3wkyDZq98425NzaruAy"
)
ORIGIN = f"[{FINGERPRINT}/84'/1'/0']"
DESCRIPTOR = f"wpkh({ORIGIN}{TPUB}/<0;1>/*)"
# BIP32 test vector 1's master key: a private key.
XPRV = (
    "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUt"
    "g6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"
)
HARDENED = 0x80000000


def wallet():
    return microgrid.OperatorWallet(DESCRIPTOR)


def test_the_wallet_derives_both_chains_and_refuses_what_it_cannot_use():
    w = wallet()
    assert w.network == "regtest" and len(w.id) == 8
    assert w.descriptor.endswith("/0/*)#" + w.id)
    assert "/1/*)#" in w.change_descriptor
    # Addresses as the example prints them for the same wallet.
    assert w.receive_address(0) == "bcrt1qja6kutsd0t2fkh9pkpge44fdyw3e0zdvwwvtw5"
    assert w.change_address(0) == "bcrt1qsz4c5ak5c6d9krcu232kfwhzcmq9dl4d3q8rks"
    # Receive and change given apart are the same wallet.
    single = microgrid.OperatorWallet(
        f"wpkh({ORIGIN}{TPUB}/0/*)", change_descriptor=f"wpkh({ORIGIN}{TPUB}/1/*)"
    )
    assert single.id == w.id and single.change_address(5) == w.change_address(5)

    refusals = {
        f"wpkh({XPRV}/84'/1'/0'/0/*)": "private key",
        f"wpkh({ORIGIN}{TPUB}/0/7)": "not ranged",
        f"wpkh({ORIGIN}{TPUB}/0/*')": "hardened",
        f"pkh({ORIGIN}{TPUB}/0/*)": "unsupported script type",
        "wpkh(nonsense)": "",
    }
    for descriptor, reason in refusals.items():
        with pytest.raises(microgrid.ValidationError) as e:
            microgrid.OperatorWallet(descriptor)
        assert e.value.kind == "invalid_descriptor"
        assert e.value.details["argument"] == "descriptor"
        assert reason in e.value.details["reason"]
        assert "xprv" not in str(e.value) and "xprv" not in e.value.details["descriptor"]
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.OperatorWallet(DESCRIPTOR, network="bitcoin")
    assert e.value.kind == "invalid_descriptor" and "test networks" in e.value.details["reason"]
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.OperatorWallet(f"wpkh({ORIGIN}{TPUB}/0/*)", change_descriptor=f"wpkh({XPRV}/1/*)")
    assert e.value.kind == "invalid_descriptor" and "private key" in e.value.details["reason"]
    # A private key that does not even parse is not shown either.
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.OperatorWallet(f"wpkh({XPRV[:-1]}x/0/*)")
    assert "xprv" not in e.value.details["descriptor"]
    with pytest.raises(microgrid.ValidationError) as e:
        w.receive_address(2**31)
    assert e.value.kind == "too_large"


def community(members=40):
    """One timeframe a day for four days: every other member consumes
    (owes), the rest produce (are owed); payout addresses of the wallet's
    own change chain far out, so they are valid regtest addresses."""
    w = wallet()
    grid = microgrid.Grid()
    ids = [f"m{i:03}" for i in range(members)]
    for i, pid in enumerate(ids):
        grid.register(pid, pid, "household", dt.date(2026, 1, 1), address=w.change_address(10_000 + i))
    for day in range(4):
        noon = JUNE + dt.timedelta(days=day, hours=12)
        produced = [0 if i % 2 else 3_000 + i for i in range(members)]
        consumed = [4_000 + 10 * i if i % 2 else 0 for i in range(members)]
        grid.record([noon] * members, ids, produced, consumed)
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))
    grid.clear(JUNE, JUNE + dt.timedelta(days=4), "mmr", tariff)
    return grid, tariff, w


def test_each_settlement_hands_out_fresh_addresses():
    grid, tariff, w = community()
    assert grid.next_wallet_indices(w) == {"receive": 0, "change": 0}
    seen = set()
    settled = []
    for day in range(2):
        start = JUNE + dt.timedelta(days=day)
        s = grid.settle_with_wallet(start, start + dt.timedelta(days=1), tariff, rate=Decimal("1000"), wallet=w)
        s.verify()
        invoices = s.invoices()
        assert len(invoices) == 20
        for inv in invoices:
            assert inv["address"] not in seen
            seen.add(inv["address"])
            assert inv["address"] == w.receive_address(inv["index"])
            assert microgrid.Settlement.parse_uri(inv["uri"])["address"] == inv["address"]
        record = s.wallet
        assert record["wallet"] == w.id and record["descriptor"] == w.descriptor
        assert record["next_index"] - record["first_index"] == 20
        assert grid.next_wallet_indices(w) == {"receive": record["next_index"], "change": record["next_change_index"]}
        settled.append(s)
    assert settled[1].wallet["first_index"] == settled[0].wallet["next_index"] == 20
    # Settling the first day again returns the stored settlement.
    again = grid.settle_with_wallet(JUNE, JUNE + dt.timedelta(days=1), tariff, rate=Decimal("1000"), wallet=w)
    assert again.id == settled[0].id and again.content_hash == settled[0].content_hash
    # After voiding the second, its replacement starts past it: the store
    # keeps the voided settlement's indices.
    grid.void_settlement(settled[1].id, "wrong rate")
    assert grid.next_wallet_indices(w) == {"receive": 40, "change": settled[1].wallet["next_change_index"]}
    start = JUNE + dt.timedelta(days=1)
    replacement = grid.settle_with_wallet(start, start + dt.timedelta(days=1), tariff, rate=Decimal("1100"), wallet=w)
    assert all(inv["address"] not in seen for inv in replacement.invoices())
    assert replacement.wallet["first_index"] == 40
    # A floor given by the caller is kept when it is higher.
    start = JUNE + dt.timedelta(days=3)
    floored = grid.settle_with_wallet(start, start + dt.timedelta(days=1), tariff, rate=Decimal("1000"), wallet=w, first_index=100)
    assert floored.wallet["first_index"] == 100
    # A settlement without the wallet has none.
    plain = grid.settle(
        JUNE + dt.timedelta(days=2), JUNE + dt.timedelta(days=3), tariff, rate=Decimal("1000"), operator_address=w.receive_address(0)
    )
    assert plain.wallet is None and all(i["index"] is None for i in plain.invoices())


# --- a BIP174 reader, enough for the fields checked -------------------------


def _compact(b, i):
    n = b[i]
    if n < 0xFD:
        return n, i + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[n]
    return int.from_bytes(b[i + 1 : i + 1 + size], "little"), i + 1 + size


def _map(b, i):
    entries = []
    while True:
        n, i = _compact(b, i)
        if n == 0:
            return entries, i
        key, i = b[i : i + n], i + n
        m, i = _compact(b, i)
        entries.append((key, b[i : i + m]))
        i += m


def _tx_counts(tx):
    i = 4
    marker = tx[i] == 0
    if marker:
        i += 2
    n_in, i = _compact(tx, i)
    for _ in range(n_in):
        i += 36
        n, i = _compact(tx, i)
        i += n + 4
    n_out, i = _compact(tx, i)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(tx[i : i + 8], "little")
        n, i = _compact(tx, i + 8)
        outputs.append((value, tx[i : i + n]))
        i += n
    return n_in, outputs


def decode_psbt(text):
    b = base64.b64decode(text)
    assert b[:5] == b"psbt\xff"
    globals_, i = _map(b, 5)
    tx = dict(globals_)[b"\x00"]
    n_in, outputs = _tx_counts(tx)
    inputs, outs = [], []
    for _ in range(n_in):
        m, i = _map(b, i)
        inputs.append(m)
    for _ in outputs:
        m, i = _map(b, i)
        outs.append(m)
    return outputs, inputs, outs


def origin(value):
    """fingerprint hex and path of a BIP32 derivation value."""
    fp = value[:4].hex()
    path = [int.from_bytes(value[k : k + 4], "little") for k in range(4, len(value), 4)]
    return fp, path


def account_path(chain, index):
    return [84 + HARDENED, 1 + HARDENED, HARDENED, chain, index]


def test_a_wallet_psbt_carries_origins_and_pays_exactly_the_batch():
    grid, tariff, w = community()
    s = grid.settle_with_wallet(JUNE, JUNE + dt.timedelta(days=1), tariff, rate=Decimal("1000"), wallet=w)
    batches = s.batches(2)
    assert len(batches) == 1
    b = batches[0]
    utxos = [
        ("4a" * 32 + ":0", 100_000, "receive", 3),
        ("4a" * 32 + ":1", b["outputs_sats"] + 200_000, "change", 1),
    ]
    p = s.wallet_psbt(w, 0, utxos, 2)
    assert p["change_index"] == s.wallet["first_change_index"] == 0
    assert p["change_address"] == w.change_address(0)
    outputs, inputs, outs = decode_psbt(p["psbt"])
    # Outputs: the batch's, in order, then change.
    paid = [o["sats"] for o in b["outputs"]] + [p["change_sats"]]
    assert [v for v, _ in outputs] == paid
    assert 300_000 + b["outputs_sats"] - sum(paid) == p["fee_sats"]
    # Each input: witness_utxo (type 0x01) and one bip32_derivation (0x06)
    # whose fingerprint and path are the descriptor's.
    for m, (_, _, keychain, index) in zip(inputs, utxos):
        types = [k[0] for k, _ in m]
        assert 0x01 in types
        derivations = [v for k, v in m if k[0] == 0x06]
        assert len(derivations) == 1
        assert origin(derivations[0]) == (FINGERPRINT, account_path(0 if keychain == "receive" else 1, index))
    # The change output (last) carries its derivation (0x02); payouts none.
    change = [v for k, v in outs[-1] if k[0] == 0x02]
    assert [origin(v) for v in change] == [(FINGERPRINT, account_path(1, 0))]
    assert all(not m for m in outs[:-1])
    # The change script is the wallet's change address's (P2WPKH program).
    assert outputs[-1][1][:2] == b"\x00\x14"

    # Another wallet's settlement, a bad keychain, a bad outpoint.
    other = microgrid.OperatorWallet(f"wpkh({ORIGIN}{TPUB}/5/*)", change_descriptor=f"wpkh({ORIGIN}{TPUB}/6/*)")
    with pytest.raises(microgrid.ValidationError) as e:
        s.wallet_psbt(other, 0, utxos, 2)
    assert e.value.kind == "invalid_descriptor"
    with pytest.raises(microgrid.ValidationError) as e:
        s.wallet_psbt(w, 0, [("4a" * 32 + ":0", 100_000, "savings", 3)], 2)
    assert e.value.details["argument"] == "keychain" and e.value.details["row"] == 0
    with pytest.raises(microgrid.ValidationError) as e:
        s.wallet_psbt(w, 0, [("nope", 100_000, "receive", 3)], 2)
    assert e.value.details["argument"] == "outpoint"


def test_reconciliation_matches_an_invoice_by_its_own_address():
    grid, tariff, w = community()
    s = grid.settle_with_wallet(JUNE, JUNE + dt.timedelta(days=1), tariff, rate=Decimal("1000"), wallet=w)
    inv = s.invoices()

    def p2wpkh_script(address):
        # The script of a P2WPKH address: its bech32 data, 5 to 8 bits.
        charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
        data = [charset.index(c) for c in address[address.rindex("1") + 1 :]][:-6]
        acc, bits, out = 0, 0, bytearray()
        for v in data[1:]:
            acc = (acc << 5) | v
            bits += 5
            if bits >= 8:
                bits -= 8
                out.append((acc >> bits) & 0xFF)
        return bytes([0, 20]) + bytes(out)

    def raw(outputs):
        tx = bytearray((2).to_bytes(4, "little"))
        tx += b"\x01" + bytes(32) + (0).to_bytes(4, "little") + b"\x00" + b"\xfd\xff\xff\xff"
        tx += bytes([len(outputs)])
        for script, sats in outputs:
            tx += sats.to_bytes(8, "little") + bytes([len(script)]) + script
        tx += bytes(4)
        return tx.hex()

    r = s.reconcile(
        raw(
            [
                (p2wpkh_script(inv[0]["address"]), inv[0]["sats"]),
                (p2wpkh_script(inv[1]["address"]), inv[1]["sats"] + 7),
            ]
        )
    )
    assert [(i["prosumer_id"], i["vout"]) for i in r["invoices"]] == [(inv[0]["prosumer_id"], 0)]
    assert [p["kind"] for p in r["problems"]] == ["invoice_overpaid"]
    over = r["problems"][0]
    assert (over["prosumer_id"], over["expected_sats"], over["sats"]) == (inv[1]["prosumer_id"], inv[1]["sats"], inv[1]["sats"] + 7)

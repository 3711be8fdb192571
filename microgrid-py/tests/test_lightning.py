"""Lightning for small amounts: members registered with a BOLT12 offer,
the split of a settlement's payouts into on-chain payouts and Lightning
instructions, and invoices with a BOLT11 invoice in their BIP21 URI.

The offers and invoices were made with the `lightning` and
`lightning-invoice` crates from fixed keys (see
microgrid-core/tests/lightning.rs, `built_offer` and `bolt11`)."""

import datetime as dt
from decimal import Decimal

import microgrid
import pytest

from conftest import JUNE, UTC

# Amount-less regtest offers (OfferBuilder, keys [21; 32] and [22; 32]).
OFFER_A = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2z3cxz7t0w468xgr0vcsx6etdvfjhygpjxytzzq7hjd334aa2pecfgwwagl7qqxkdpvrjwectvecw5552eq7tqynlfg"
OFFER_B = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2z3cxz7t0w468xgr0vcsx6etdvfjhygpjxgtzzq4g89afxhcdln46dw5krrmy28h5mqrr02l5u6hjv60me80x4r7j4s"
# The same, expiring 2026-07-15 00:00 UTC (key [23; 32]).
OFFER_EXPIRING = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2z3cxz7t0w468xgr0vcsx6etdvfjhygpjxv8qg6jkekqpvggz2l4nvw84raxutjx45ueyk37ln85pdn7vtd0tzfzmerycq20eue6q"
# The `lightning` crate's test vectors: a minimal mainnet offer, one with an amount.
OFFER_MAINNET = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"
OFFER_WITH_AMOUNT = "lno1pqpzwyq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"
# Regtest BOLT11 invoices created 2026-07-01 00:00 UTC, valid 30 days
# (InvoiceBuilder, signed by the key [0x11; 32]): without an amount, and for 1,000 sat.
BOLT11_ANY = "lnbcrt1p4ygkyqdpzd45kxun0vaexjepqv4hx2un80ysxy6tvdspp5qurswpc8qurswpc8qurswpc8qurswpc8qurswpc8qurswpc8qurssp5pyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyys9qrsgqcqzysxq9z0rgq3t5c8hd9rfgrhv5kxquncgqwjkxqd9wmcsmfna7mpv6u2575qlxhlk8hyuusen4mmfnkz749ddmhsrgchfapnu2zxzd8px6ks4vq2qqqpvjjpl"
BOLT11_1000 = "lnbcrt10u1p4ygkyqdpzd45kxun0vaexjepqv4hx2un80ysxy6tvdspp5qurswpc8qurswpc8qurswpc8qurswpc8qurswpc8qurswpc8qurssp5pyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyys9qrsgqcqzysxq9z0rgq4dz8k7u94wlrxgf0rwm399qe8rcuxrsv8gyqzm0yqua36wja0smjjhwd0qgletthsmelyknt65020xv6qu5a0jhhhcpdqjtcf8f0rcqpnruspm"

OPERATOR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
JULY_2 = dt.datetime(2026, 7, 2, tzinfo=UTC)


def settled(url="memory:"):
    """m0 (with an offer) and m1 (without) produce a little, m2 (with an
    offer) a lot, m3 consumes (an invoice); one day settled at 50,000
    EUR/BTC."""
    grid = microgrid.Grid(url)
    joined = dt.date(2026, 1, 1)
    grid.register("m0", "M0", "household", joined, address=microgrid.regtest_address(0), offer=OFFER_A)
    grid.register("m1", "M1", "household", joined, address=microgrid.regtest_address(1))
    grid.register("m2", "M2", "company", joined, address=microgrid.regtest_address(2), offer=OFFER_B.upper())
    grid.register("m3", "M3", "household", joined, address=microgrid.regtest_address(3))
    noon = JUNE + dt.timedelta(hours=12)
    grid.record([noon] * 4, ["m0", "m1", "m2", "m3"], [1_000, 1_000, 9_000, 0], [0, 0, 0, 12_000])
    end = JUNE + dt.timedelta(days=1)
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))
    grid.clear(JUNE, end, "mmr", tariff)
    s = grid.settle(JUNE, end, tariff, rate=Decimal("50000"), operator_address=OPERATOR)
    return grid, s


def payouts(s):
    return {e["prosumer_id"]: e["sats"] for e in s.entries() if e["action"] == "payout"}


def test_a_member_registers_with_an_offer(store_url):
    grid = microgrid.Grid(store_url)
    grid.register("m0", "M0", "household", dt.date(2026, 1, 1), offer=f"  {OFFER_A.upper()}\n")
    grid.register("m1", "M1", "household", dt.date(2026, 1, 1), address=microgrid.regtest_address(1))
    assert {p["id"]: p["offer"] for p in grid.prosumers()} == {"m0": OFFER_A, "m1": None}
    if store_url != "memory:":
        # Read back from the database by a grid opened again.
        again = microgrid.Grid(store_url).prosumers()
        assert {p["id"]: p["offer"] for p in again} == {"m0": OFFER_A, "m1": None}


@pytest.mark.parametrize(
    "offer, network, reason",
    [
        (OFFER_MAINNET, "regtest", "is not for regtest"),
        (OFFER_A, "bitcoin", "is not for bitcoin"),
        (OFFER_WITH_AMOUNT, "bitcoin", "fixed amount"),
        ("lno1notanoffer", "regtest", "does not parse"),
    ],
)
def test_an_offer_that_cannot_take_payouts_is_refused(offer, network, reason):
    grid = microgrid.Grid()
    with pytest.raises(microgrid.ValidationError) as e:
        grid.register("m0", "M0", "household", dt.date(2026, 1, 1), network=network, offer=offer)
    assert e.value.kind == "invalid_offer"
    assert e.value.details["argument"] == "offer"
    assert reason in e.value.details["reason"]
    assert e.value.details["offer"] == offer
    assert grid.prosumers() == []


def test_check_offer():
    d = microgrid.check_offer(OFFER_EXPIRING, at=JULY_2)
    assert d["offer"] == OFFER_EXPIRING
    assert d["expires_at"] == dt.datetime(2026, 7, 15, tzinfo=UTC)
    assert d["description"] == "payouts of member 23"
    with pytest.raises(microgrid.ValidationError) as e:
        microgrid.check_offer(OFFER_EXPIRING, at=dt.datetime(2026, 7, 16, tzinfo=UTC))
    assert e.value.kind == "invalid_offer" and "expired at 2026-07-15" in str(e.value)
    assert microgrid.check_offer(OFFER_MAINNET, network="bitcoin")["expires_at"] is None


def test_small_payouts_to_members_with_an_offer_become_lightning_instructions():
    grid, s = settled()
    paid = payouts(s)
    assert set(paid) == {"m0", "m1", "m2"}
    assert paid["m0"] == paid["m1"] < paid["m2"]
    split = grid.lightning_split(s, lightning_below_sats=paid["m0"] + 1, at=JULY_2)
    assert split["settlement_id"] == s.id
    assert split["lightning"] == [
        {
            "prosumer": "m0",
            "offer": OFFER_A,
            "amount_msat": paid["m0"] * 1000,
            "payer_note": "microgrid 2026-06-01..2026-06-02 payout m0",
        }
    ]
    assert [(p["prosumer"], p["sats"]) for p in split["onchain"]] == [("m1", paid["m1"]), ("m2", paid["m2"])]
    assert split["onchain_sats"] * 1000 + split["lightning_msat"] == sum(paid.values()) * 1000
    assert split["offers_not_used"] == []

    # A threshold above every payout sends both members with an offer over Lightning.
    both = grid.lightning_split(s, lightning_below_sats=10**9, at=JULY_2, sat_per_vb=Decimal("1.5"))
    assert [l["prosumer"] for l in both["lightning"]] == ["m0", "m2"]
    assert both["lightning"][1]["offer"] == OFFER_B
    (batch,) = both["batches"]
    assert [o["address"] for o in batch["outputs"]] == [microgrid.regtest_address(1)]
    assert batch["payouts_sats"] == both["onchain_sats"] == paid["m1"]
    # No threshold: everything on-chain.
    none = grid.lightning_split(s, lightning_below_sats=0, at=JULY_2)
    assert none["lightning"] == [] and none["onchain_sats"] == sum(paid.values())


def test_split_arguments_are_checked():
    grid, s = settled()
    with pytest.raises(microgrid.ValidationError) as e:
        grid.lightning_split(s, lightning_below_sats=-1)
    assert e.value.details["argument"] == "lightning_below_sats"
    with pytest.raises(microgrid.ValidationError) as e:
        grid.lightning_split(s, lightning_below_sats=1, at=dt.datetime(2026, 7, 2))
    assert e.value.details["argument"] == "at"
    with pytest.raises(microgrid.MicrogridError) as e:
        grid.lightning_split(s, lightning_below_sats=1, sat_per_vb=0)
    assert e.value.kind == "invalid_fee_rate"


def test_bolt11_invoices_are_checked():
    d = microgrid.check_bolt11(BOLT11_1000, sats=1_000, at=JULY_2)
    assert d["amount_msat"] == 1_000_000
    assert d["expires_at"] == dt.datetime(2026, 7, 31, tzinfo=UTC)
    assert microgrid.check_bolt11(BOLT11_ANY.upper(), sats=123, at=JULY_2)["amount_msat"] is None
    for invoice, kwargs, reason in [
        (BOLT11_1000, dict(sats=999, at=JULY_2), "asks for 1000000 msat"),
        (BOLT11_ANY, dict(sats=1, at=dt.datetime(2026, 8, 1, tzinfo=UTC)), "expired at 2026-07-31"),
        (BOLT11_ANY, dict(sats=1, at=JULY_2, network="bitcoin"), "not bitcoin"),
        (BOLT11_ANY[:-1] + "q", dict(sats=1, at=JULY_2), "does not parse"),
    ]:
        with pytest.raises(microgrid.SettlementError) as e:
            microgrid.check_bolt11(invoice, **kwargs)
        assert e.value.kind == "invalid_lightning_invoice"
        assert reason in e.value.details["reason"], e.value.details
        assert e.value.details["argument"] == "invoice"


def test_an_invoice_uri_carries_a_bolt11_invoice():
    _, s = settled()
    (invoice,) = s.invoices()
    assert invoice["prosumer_id"] == "m3"
    uri = microgrid.invoice_uri_with_lightning(s, "m3", BOLT11_ANY, at=JULY_2)
    assert uri == invoice["uri"] + "&lightning=" + BOLT11_ANY
    back = microgrid.Settlement.parse_uri(uri)
    assert back["amount_sats"] == invoice["sats"]
    assert back["other"] == {"lightning": BOLT11_ANY}
    # What a QR code carries: all in capitals.
    shouted = microgrid.Settlement.parse_uri(uri.upper())
    assert shouted["other"]["lightning"] == BOLT11_ANY.upper()
    assert microgrid.check_bolt11(shouted["other"]["lightning"], sats=invoice["sats"], at=JULY_2)
    # An invoice for another amount is refused; so is a member without an invoice.
    with pytest.raises(microgrid.SettlementError) as e:
        microgrid.invoice_uri_with_lightning(s, "m3", BOLT11_1000, at=JULY_2)
    assert e.value.kind == "invalid_lightning_invoice" and e.value.details["argument"] == "bolt11"
    with pytest.raises(microgrid.NotFoundError) as e:
        microgrid.invoice_uri_with_lightning(s, "m0", BOLT11_ANY, at=JULY_2)
    assert e.value.details["argument"] == "prosumer"


def offer_only(url, lightning_below_sats=None):
    """m0 has an offer and no payout address, m1 an address, m2 consumes;
    one day settled at 50,000 EUR/BTC, with `lightning_below_sats` if given."""
    grid = microgrid.Grid(url)
    joined = dt.date(2026, 1, 1)
    grid.register("m0", "M0", "household", joined, offer=OFFER_A)
    grid.register("m1", "M1", "household", joined, address=microgrid.regtest_address(1))
    grid.register("m2", "M2", "household", joined, address=microgrid.regtest_address(2))
    noon = JUNE + dt.timedelta(hours=12)
    grid.record([noon] * 3, ["m0", "m1", "m2"], [1_000, 1_000, 0], [0, 0, 3_000])
    end = JUNE + dt.timedelta(days=1)
    tariff = microgrid.Tariff(Decimal("0.30"), Decimal("0.08"))
    grid.clear(JUNE, end, "mmr", tariff)
    s = grid.settle(
        JUNE, end, tariff, rate=Decimal("50000"), operator_address=OPERATOR, lightning_below_sats=lightning_below_sats
    )
    return grid, s


def test_a_member_with_only_an_offer_is_paid_over_lightning_when_settling(store_url):
    # Without a threshold m0's balance is carried: it has no address.
    _, plain = offer_only("memory:")
    m0 = plain.entries()[0]
    assert (m0["action"], m0["offer"], m0["carried_out_sats"] > 0) == ("carry", None, True)
    assert plain.lightning_payouts() == []

    grid, s = offer_only(store_url, lightning_below_sats=10_000)
    assert s.id != plain.id
    m0, m1 = s.entries()[0], s.entries()[1]
    assert m0["action"] == "lightning"
    assert m0["offer"] == OFFER_A
    assert m0["address"] is None
    assert m0["sats"] == m0["due_sats"] == m1["sats"] > 0
    assert m0["carried_out_sats"] == 0
    assert m1["action"] == "payout" and m1["offer"] is None
    assert s.lightning_payouts() == [{"prosumer_id": "m0", "offer": OFFER_A, "sats": m0["sats"]}]
    assert s.is_conserved()
    s.verify()
    # No on-chain output for it: sendmany pays m1 only.
    assert list(s.sendmany()) == [m1["address"]]
    # Stored and read back as it was.
    assert grid.settlement(s.id).content_hash == s.content_hash
    assert grid.settlement(s.id).entries() == s.entries()

    # The split lists it for the Lightning node, whatever the threshold given.
    split = grid.lightning_split(s, lightning_below_sats=1, at=JULY_2)
    assert split["lightning"] == [
        {
            "prosumer": "m0",
            "offer": OFFER_A,
            "amount_msat": m0["sats"] * 1000,
            "payer_note": "microgrid 2026-06-01..2026-06-02 payout m0",
        }
    ]
    assert [p["prosumer"] for p in split["onchain"]] == ["m1"]
    assert split["onchain_sats"] * 1000 + split["lightning_msat"] == (m0["sats"] + m1["sats"]) * 1000

//! Lightning for small amounts: BOLT12 payout offers (the `lightning`
//! crate's test vectors and offers built here from a fixed key), the split
//! of a settlement's payouts into on-chain and Lightning payouts (exact to
//! the millisatoshi, property-tested), and BOLT11 invoices in BIP21 URIs
//! (the BOLT11 spec's vectors and invoices signed here by a fixed key).

use std::collections::BTreeMap;
use std::time::Duration;

use ::lightning::offers::offer::{OfferBuilder, Quantity};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use lightning_invoice::{Currency as LnCurrency, InvoiceBuilder, PaymentSecret};
use microgrid_core::billing::{Bill, EnergyLines, PeriodBills};
use microgrid_core::lightning::*;
use microgrid_core::settlement::bip21;
use microgrid_core::settlement::bitcoin::Amount;
use microgrid_core::settlement::psbt::FeeRate;
use microgrid_core::settlement::*;
use microgrid_core::{
    CommunityMetrics, Error, Network, PayoutAddress, Prosumer, ProsumerId, ProsumerKind, Registry,
    Result, TimeRange, TimeframeLength,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

// ---------------------------------------------------------------- offers

/// Test vectors of the `lightning` crate (offer.rs, `bolt12_tests`).
const MINIMAL_MAINNET: &str = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese";
const WITH_DESCRIPTION: &str =
    "lno1pgx9getnwss8vetrw3hhyuckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg";
const FOR_TESTNET: &str = "lno1qgsyxjtl6luzd9t3pr62xr7eemp6awnejusgf6gw45q75vcfqqqqqqq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj";
const FOR_BITCOIN_OR_LIQUID: &str = "lno1qfqpge38tqmzyrdjj3x2qkdr5y80dlfw56ztq6yd9sme995g3gsxqqm0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq9qc4r9wd6zqan9vd6x7unnzcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese";
const WITH_AMOUNT: &str =
    "lno1pqpzwyq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj";
const WITH_CURRENCY: &str = "lno1qcp4256ypqpzwyq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj";
const WITH_EXPIRY: &str =
    "lno1pgx9getnwss8vetrw3hhyucwq3ay997czcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese";
const WITH_QUANTITY: &str =
    "lno1pgx9getnwss8vetrw3hhyuc5qyz3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs";
const UNLIMITED_QUANTITY: &str =
    "lno1pgx9getnwss8vetrw3hhyuc5qqtzzqhwcuj966ma9n9nqwqtl032xeyv6755yeflt235pmww58egx6rxry";
const FIELDS_OUT_OF_ORDER: &str =
    "lno1zcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszpgz5znzfgdzs";

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    at(2026, 7, 1)
}

/// An offer built with the crate's `OfferBuilder`, signed for by the key
/// `[seed; 32]`, on `network`, optionally expiring at `expiry`.
fn built_offer(seed: u8, network: Network, expiry: Option<DateTime<Utc>>) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[seed; 32]).unwrap();
    let mut builder = OfferBuilder::new(PublicKey::from_secret_key(&secp, &key))
        .chain(network.to_bitcoin())
        .description(format!("payouts of member {seed}"));
    if let Some(e) = expiry {
        builder = builder.absolute_expiry(Duration::from_secs(e.timestamp() as u64));
    }
    builder.build().unwrap().to_string()
}

#[test]
fn offers_of_the_crates_vectors_are_checked_for_chain_amount_and_quantity() {
    for text in [MINIMAL_MAINNET, WITH_DESCRIPTION, FOR_BITCOIN_OR_LIQUID] {
        let offer = PayoutOffer::parse(text, Network::Bitcoin, now()).unwrap();
        assert_eq!(offer.as_str(), text);
        for other in [Network::Testnet, Network::Signet, Network::Regtest] {
            let err = PayoutOffer::parse(text, other, now()).unwrap_err();
            assert_eq!(err.kind(), "invalid_offer");
            assert!(err.to_string().contains("is not for"), "{err}");
        }
    }
    assert_eq!(
        PayoutOffer::parse(WITH_DESCRIPTION, Network::Bitcoin, now())
            .unwrap()
            .description()
            .as_deref(),
        Some("Test vectors")
    );
    assert!(PayoutOffer::parse(FOR_TESTNET, Network::Testnet, now()).is_ok());
    assert!(PayoutOffer::parse(FOR_TESTNET, Network::Bitcoin, now()).is_err());
    for (text, reason) in [
        (WITH_AMOUNT, "fixed amount"),
        (WITH_CURRENCY, "fixed amount"),
        (WITH_QUANTITY, "quantity"),
        (UNLIMITED_QUANTITY, "quantity"),
        (FIELDS_OUT_OF_ORDER, "does not parse"),
        ("lnbc1", "does not parse"),
        ("", "does not parse"),
    ] {
        match text.parse::<PayoutOffer>() {
            Err(Error::InvalidOffer { offer, reason: r }) => {
                assert_eq!(offer, text);
                assert!(r.contains(reason), "{text}: {r}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // The vector's expiry is 2034-12-31 13:30:00 UTC.
    let expiring: PayoutOffer = WITH_EXPIRY.parse().unwrap();
    let expiry = Utc.with_ymd_and_hms(2034, 12, 31, 13, 30, 0).unwrap();
    assert_eq!(expiring.expires_at(), Some(expiry));
    assert!(PayoutOffer::parse(WITH_EXPIRY, Network::Bitcoin, now()).is_ok());
    let err = PayoutOffer::parse(WITH_EXPIRY, Network::Bitcoin, at(2035, 1, 1)).unwrap_err();
    assert!(
        err.to_string().contains("expired at 2034-12-31T13:30:00"),
        "{err}"
    );
}

#[test]
fn built_offers_parse_in_either_case_and_serialize_as_text() {
    let text = built_offer(7, Network::Regtest, None);
    let offer = PayoutOffer::parse(&text, Network::Regtest, now()).unwrap();
    assert!(offer.supports(Network::Regtest) && !offer.supports(Network::Bitcoin));
    assert_eq!(offer.description().as_deref(), Some("payouts of member 7"));
    assert_eq!(
        PayoutOffer::parse(&text.to_uppercase(), Network::Regtest, now()).unwrap(),
        offer
    );
    assert_eq!(
        PayoutOffer::parse(&format!("  {text}\n"), Network::Regtest, now()).unwrap(),
        offer
    );
    let json = serde_json::to_string(&offer).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<PayoutOffer>(&json).unwrap(), offer);
    assert!(serde_json::from_str::<PayoutOffer>(&format!("\"{WITH_AMOUNT}\"")).is_err());

    let expiring = built_offer(8, Network::Signet, Some(at(2026, 12, 31)));
    assert!(PayoutOffer::parse(&expiring, Network::Signet, now()).is_ok());
    assert!(PayoutOffer::parse(&expiring, Network::Signet, at(2027, 1, 1)).is_err());

    // A quantity, or an amount, is refused on an offer built here too.
    let secp = Secp256k1::new();
    let key = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).unwrap());
    let with_quantity = OfferBuilder::new(key)
        .chain(bitcoin::Network::Regtest)
        .supported_quantity(Quantity::Unbounded)
        .build()
        .unwrap()
        .to_string();
    assert!(with_quantity.parse::<PayoutOffer>().is_err());
    let with_amount = OfferBuilder::new(key)
        .chain(bitcoin::Network::Regtest)
        .amount_msats(5_000_000)
        .build()
        .unwrap()
        .to_string();
    assert!(with_amount.parse::<PayoutOffer>().is_err());
}

#[test]
fn a_prosumer_keeps_its_offer_through_serde() {
    let offer = PayoutOffer::parse(
        &built_offer(3, Network::Regtest, None),
        Network::Regtest,
        now(),
    )
    .unwrap();
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let p = Prosumer::new("house-07", "House 7", ProsumerKind::Household, joined)
        .unwrap()
        .with_offer(offer.clone());
    assert_eq!(p.offer(), Some(&offer));
    let reg: Result<Registry> = [p.clone()].into_iter().collect();
    let json = serde_json::to_string(&reg.unwrap()).unwrap();
    assert!(json.contains(offer.as_str()));
    let back: Registry = serde_json::from_str(&json).unwrap();
    assert_eq!(back.by_index(), std::slice::from_ref(&p));
    // Records written before offers existed read as without one.
    let old = r#"[{"id":"a","name":"A","kind":"household","joined":"2026-01-01","left":null,"payout":null}]"#;
    let old: Registry = serde_json::from_str(old).unwrap();
    assert_eq!(old.by_index()[0].offer(), None);
    assert_eq!(p.without_offer().offer(), None);
}

// ---------------------------------------------------------------- the split

/// Regtest addresses of several output types.
const ADDRESSES: &[&str] = &[
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
    "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
];

fn addr(i: usize) -> PayoutAddress {
    PayoutAddress::new(ADDRESSES[i % ADDRESSES.len()], Network::Regtest).unwrap()
}

fn id(i: usize) -> ProsumerId {
    format!("house-{i:02}").parse().unwrap()
}

fn period() -> TimeRange {
    TimeRange::new(at(2026, 6, 1), at(2026, 7, 1), TimeframeLength::default()).unwrap()
}

/// Members with a payout address each; those with `offers[i]` set also
/// have a regtest offer (a mainnet one when it is `Some(false)`).
fn registry(offers: &[Option<bool>]) -> Registry {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut r = Registry::default();
    for (i, o) in offers.iter().enumerate() {
        let mut p = Prosumer::new(id(i).as_str(), "member", ProsumerKind::Household, joined)
            .unwrap()
            .with_payout(addr(i));
        if let Some(regtest) = o {
            let network = if *regtest {
                Network::Regtest
            } else {
                Network::Bitcoin
            };
            let text = built_offer(i as u8 + 1, network, None);
            p = p.with_offer(text.parse().unwrap());
        }
        r.register(p).unwrap();
    }
    r
}

fn bill(i: usize, total: Decimal) -> Bill {
    Bill {
        prosumer: id(i),
        energy: EnergyLines::default(),
        purchases: Decimal::ZERO,
        sales: Decimal::ZERO,
        imports: Decimal::ZERO,
        exports: Decimal::ZERO,
        grid_fee: Decimal::ZERO,
        network_charge: Decimal::ZERO,
        fixed_fee: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        total,
        baseline: total,
        saving: Decimal::ZERO,
    }
}

/// A settlement of bills of `totals` EUR at 50,000 EUR/BTC (negative: the
/// operator owes the member; 1 EUR = 2,000 sat).
fn settlement(totals: &[Decimal], reg: &Registry) -> Settlement {
    let bills = PeriodBills {
        period: period(),
        currency: "EUR".parse().unwrap(),
        bills: totals
            .iter()
            .enumerate()
            .map(|(i, t)| bill(i, *t))
            .collect(),
        grid_leg: Decimal::ZERO,
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    };
    let rate = ExchangeRate::new(
        Decimal::from(50_000),
        "EUR".parse().unwrap(),
        "test",
        at(2026, 7, 1),
    )
    .unwrap();
    settle(
        &bills,
        reg,
        &rate,
        Network::Regtest,
        &addr(0),
        &BTreeMap::new(),
    )
    .unwrap()
}

fn eur(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[test]
fn small_payouts_to_members_with_an_offer_go_over_lightning() {
    // house-00: 4 EUR due (8,000 sat), offer      -> Lightning
    // house-01: 4 EUR due, no offer                -> on-chain
    // house-02: 30 EUR due (60,000 sat), offer     -> on-chain (not below)
    // house-03: 5 EUR due (10,000 sat), offer      -> on-chain (the threshold is exclusive)
    // house-04: 2 EUR due, mainnet offer           -> on-chain, offer not used
    // house-05: owes 3 EUR                         -> invoice
    // house-06: 0.5 EUR due (1,000 sat), offer     -> Lightning
    let reg = registry(&[
        Some(true),
        None,
        Some(true),
        Some(true),
        Some(false),
        Some(true),
        Some(true),
    ]);
    let s = settlement(
        &[
            eur("-4"),
            eur("-4"),
            eur("-30"),
            eur("-5"),
            eur("-2"),
            eur("3"),
            eur("-0.5"),
        ],
        &reg,
    );
    let policy = PayoutPolicy::default()
        .with_lightning_below(Amount::from_sat(10_000))
        .unwrap();
    let split = split_payouts(&s, &reg, &policy, now()).unwrap();
    let lightning: Vec<(&str, u64, &str)> = split
        .lightning
        .iter()
        .map(|l| (l.prosumer.as_str(), l.amount_msat, l.payer_note.as_str()))
        .collect();
    assert_eq!(
        lightning,
        [
            ("house-00", 8_000_000, "microgrid 2026-06 payout house-00"),
            ("house-06", 1_000_000, "microgrid 2026-06 payout house-06"),
        ]
    );
    assert_eq!(
        split.lightning[0].offer,
        *reg.get(&id(0)).unwrap().offer().unwrap()
    );
    assert_eq!(split.lightning[1].amount(), Amount::from_sat(1_000));
    let onchain: Vec<(&str, u64)> = split
        .onchain
        .iter()
        .map(|p| (p.prosumer.as_str(), p.amount.to_sat()))
        .collect();
    assert_eq!(
        onchain,
        [
            ("house-01", 8_000),
            ("house-02", 60_000),
            ("house-03", 10_000),
            ("house-04", 4_000)
        ]
    );
    assert_eq!(split.offers_not_used.len(), 1);
    assert_eq!(split.offers_not_used[0].prosumer, id(4));
    assert!(split.offers_not_used[0].reason.contains("not for regtest"));

    // Without a threshold everything stays on-chain.
    let none = split_payouts(&s, &reg, &PayoutPolicy::default(), now()).unwrap();
    assert!(none.lightning.is_empty());
    assert_eq!(none.onchain.len(), s.payouts().len());

    // The on-chain part is batched as the settlement's payouts are.
    let options = BatchOptions::new(FeeRate::new(2).unwrap());
    let batches = split.onchain_batches(&s, &options).unwrap();
    let paid: Vec<(PayoutAddress, Amount)> = batches.iter().flat_map(|b| b.payments()).collect();
    assert_eq!(paid, split.onchain_batch());
    assert_eq!(
        batches.iter().map(|b| b.payouts_total()).sum::<Amount>(),
        split.onchain_total()
    );
    // Another settlement: the same document under another id.
    let mut document = serde_json::to_value(&s).unwrap();
    document["id"] = "f".repeat(32).into();
    let other: Settlement = serde_json::from_value(document).unwrap();
    assert_eq!(
        split.onchain_batches(&other, &options).unwrap_err().kind(),
        "invalid_settlement"
    );
}

#[test]
fn an_offer_expired_since_registration_is_not_used() {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let offer = PayoutOffer::parse(
        &built_offer(5, Network::Regtest, Some(at(2026, 6, 15))),
        Network::Regtest,
        at(2026, 6, 1),
    )
    .unwrap();
    let mut reg = Registry::default();
    reg.register(
        Prosumer::new("house-00", "member", ProsumerKind::Household, joined)
            .unwrap()
            .with_payout(addr(0))
            .with_offer(offer),
    )
    .unwrap();
    let s = settlement(&[eur("-1")], &reg);
    let policy = PayoutPolicy::default()
        .with_lightning_below(Amount::from_sat(100_000))
        .unwrap();
    let before = split_payouts(&s, &reg, &policy, at(2026, 6, 10)).unwrap();
    assert_eq!(before.lightning.len(), 1);
    let after = split_payouts(&s, &reg, &policy, now()).unwrap();
    assert!(after.lightning.is_empty());
    assert_eq!(after.onchain.len(), 1);
    assert!(after.offers_not_used[0]
        .reason
        .contains("expired at 2026-06-15"));
}

#[test]
fn a_period_that_is_not_a_month_is_named_by_its_days() {
    let reg = registry(&[Some(true)]);
    // The same settlement over half a month (its document edited).
    let mut document = serde_json::to_value(settlement(&[eur("-1")], &reg)).unwrap();
    document["period"] = serde_json::to_value(
        TimeRange::new(at(2026, 6, 1), at(2026, 6, 15), TimeframeLength::default()).unwrap(),
    )
    .unwrap();
    let s: Settlement = serde_json::from_value(document).unwrap();
    let policy = PayoutPolicy::default()
        .with_lightning_below(Amount::from_sat(100_000))
        .unwrap();
    let split = split_payouts(&s, &reg, &policy, now()).unwrap();
    assert_eq!(
        split.lightning[0].payer_note,
        "microgrid 2026-06-01..2026-06-15 payout house-00"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every payout is on-chain or over Lightning, exactly once, and the
    /// parts add up to the settlement's payouts to the millisatoshi.
    #[test]
    fn the_parts_add_up_to_the_payouts(
        members in prop::collection::vec(
            ((-2_000_000i64..2_000_000).prop_map(|c| Decimal::new(c, 2)),
             prop::option::of(prop::bool::weighted(0.8))),
            1..60,
        ),
        threshold in 0u64..5_000_000,
    ) {
        let offers: Vec<Option<bool>> = members.iter().map(|(_, o)| *o).collect();
        let totals: Vec<Decimal> = members.iter().map(|(t, _)| *t).collect();
        let reg = registry(&offers);
        let s = settlement(&totals, &reg);
        let policy = PayoutPolicy::default().with_lightning_below(Amount::from_sat(threshold)).unwrap();
        let split = split_payouts(&s, &reg, &policy, now()).unwrap();
        let paid: u64 = s.payouts().iter().map(|(_, sats)| sats.to_sat()).sum();
        prop_assert_eq!(
            split.onchain_total().to_sat() * 1000 + split.lightning_total_msat(),
            paid * 1000
        );
        prop_assert_eq!(split.onchain.len() + split.lightning.len(), s.payouts().len());
        for l in &split.lightning {
            prop_assert!(l.amount_msat < threshold * 1000);
            prop_assert!(l.amount_msat % 1000 == 0);
            let member = reg.get(&l.prosumer).unwrap();
            prop_assert_eq!(member.offer(), Some(&l.offer));
            prop_assert!(l.offer.supports(Network::Regtest));
        }
        for p in &split.onchain {
            let member = reg.get(&p.prosumer).unwrap();
            let usable = member.offer().is_some_and(|o| o.supports(Network::Regtest));
            prop_assert!(p.amount.to_sat() >= threshold || !usable);
        }
        let batches = split.onchain_batches(&s, &BatchOptions::new(FeeRate::new(1).unwrap())).unwrap();
        let batched: Vec<(PayoutAddress, Amount)> = batches.iter().flat_map(|b| b.payments()).collect();
        prop_assert_eq!(batched, split.onchain_batch());
    }
}

// ---------------------------------------------------------------- BOLT11

/// The BOLT11 spec's "2500 uBTC for a cup of coffee, expiring in 1 minute"
/// (created 2017-06-01 10:57:38 UTC), from the `lightning-invoice` crate's
/// tests/ser_de.rs.
const COFFEE: &str = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

/// A BOLT11 invoice signed by the fixed key `[0x11; 32]`, created at
/// `created`, valid for `expiry_secs`.
fn bolt11(
    currency: LnCurrency,
    msat: Option<u64>,
    created: DateTime<Utc>,
    expiry_secs: u64,
) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    let mut builder = InvoiceBuilder::new(currency)
        .description("microgrid energy bill".into())
        .payment_hash(sha256::Hash::from_slice(&[7; 32]).unwrap())
        .payment_secret(PaymentSecret([9; 32]))
        .duration_since_epoch(Duration::from_secs(created.timestamp() as u64))
        .min_final_cltv_expiry_delta(144)
        .expiry_time(Duration::from_secs(expiry_secs));
    if let Some(m) = msat {
        builder = builder.amount_milli_satoshis(m);
    }
    builder
        .build_signed(|hash| secp.sign_ecdsa_recoverable(hash, &key))
        .unwrap()
        .to_string()
}

#[test]
fn bolt11_invoices_are_checked_for_network_amount_and_expiry() {
    let created = at(2017, 6, 1) + chrono::Duration::seconds(10 * 3600 + 57 * 60 + 38);
    let inside = created + chrono::Duration::seconds(30);
    assert!(check_bolt11(COFFEE, Network::Bitcoin, 250_000, inside).is_ok());
    assert!(check_bolt11(&COFFEE.to_uppercase(), Network::Bitcoin, 250_000, inside).is_ok());
    for (network, sats, when, reason) in [
        (
            Network::Regtest,
            250_000,
            inside,
            "it is for bitcoin, not regtest",
        ),
        (
            Network::Bitcoin,
            250_001,
            inside,
            "it asks for 250000000 msat, the payment is 250001000 msat",
        ),
        (
            Network::Bitcoin,
            250_000,
            now(),
            "it expired at 2017-06-01T10:58:38+00:00",
        ),
    ] {
        match check_bolt11(COFFEE, network, sats, when) {
            Err(Error::InvalidLightningInvoice { invoice, reason: r }) => {
                assert_eq!(invoice, &COFFEE[..200]);
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A flipped character breaks the checksum or the signature.
    let mut broken = COFFEE.to_owned();
    broken.replace_range(30..31, "q");
    assert_eq!(
        check_bolt11(&broken, Network::Bitcoin, 250_000, inside)
            .unwrap_err()
            .kind(),
        "invalid_lightning_invoice"
    );

    let regtest = bolt11(LnCurrency::Regtest, Some(16_000_000), now(), 3_600);
    assert!(regtest.starts_with("lnbcrt160u1"), "{regtest}");
    let checked = check_bolt11(&regtest, Network::Regtest, 16_000, now()).unwrap();
    assert_eq!(checked.amount_milli_satoshis(), Some(16_000_000));
    assert!(check_bolt11(
        &regtest,
        Network::Regtest,
        16_000,
        now() + chrono::Duration::hours(2)
    )
    .is_err());
    // An invoice without an amount takes any payment.
    let any = bolt11(LnCurrency::Signet, None, now(), 3_600);
    assert!(check_bolt11(&any, Network::Signet, 123, now()).is_ok());
    assert!(check_bolt11(&any, Network::Testnet, 123, now()).is_err());
}

#[test]
fn invoices_carry_a_bolt11_in_their_bip21_uri_and_parse_back() {
    let reg = registry(&[None, None]);
    let s = settlement(&[eur("8"), eur("-2")], &reg);
    let invoice = &s.invoices()[0];
    assert_eq!(invoice.sats, Amount::from_sat(16_000));
    let ln = bolt11(LnCurrency::Regtest, Some(16_000_000), now(), 86_400);
    let uri = invoice_uri_with_lightning(&s, invoice, &ln, now()).unwrap();
    assert_eq!(uri, format!("{}&lightning={ln}", invoice.uri));
    let back = bip21::parse(&uri).unwrap();
    assert_eq!(back.amount, Some(Amount::from_sat(16_000)));
    assert_eq!(back.label.as_deref(), Some("house-00"));
    assert_eq!(back.lightning(), Some(ln.as_str()));
    assert!(check_bolt11(back.lightning().unwrap(), s.network(), 16_000, now()).is_ok());
    // What a wallet's QR code carries: all in capitals.
    let shouted = bip21::parse(&uri.to_uppercase()).unwrap();
    assert_eq!(shouted.lightning(), Some(ln.to_uppercase().as_str()));
    assert!(check_bolt11(shouted.lightning().unwrap(), s.network(), 16_000, now()).is_ok());
    assert_eq!(shouted.address, back.address);

    // The wrong amount, network or an expired invoice is refused.
    for bad in [
        bolt11(LnCurrency::Regtest, Some(15_999_000), now(), 86_400),
        bolt11(LnCurrency::BitcoinTestnet, Some(16_000_000), now(), 86_400),
        bolt11(LnCurrency::Regtest, Some(16_000_000), at(2026, 6, 1), 3_600),
    ] {
        assert_eq!(
            invoice_uri_with_lightning(&s, invoice, &bad, now())
                .unwrap_err()
                .kind(),
            "invalid_lightning_invoice"
        );
    }
}

#[test]
fn every_uri_the_library_makes_parses_back() {
    let ln = bolt11(LnCurrency::Regtest, Some(2_000_000), now(), 600);
    for (i, label, message) in [
        (0, None, None),
        (
            1,
            Some("Bäckerei Müller & Söhne"),
            Some("Energy bill 2026-06-01 to 2026-07-01"),
        ),
        (2, Some("a=b&c?d#e%f+g"), Some("100% / ½ kWh")),
    ] {
        let a = addr(i);
        for sats in [0u64, 1, 2_000, 2_100_000_000_000_000] {
            for uri in [
                bip21::payment_uri(&a, sats, label, message),
                bip21::payment_uri_with_lightning(&a, sats, label, message, &ln),
            ] {
                let r = bip21::parse(&uri).unwrap();
                assert_eq!(r.address_on(Network::Regtest).unwrap(), a, "{uri}");
                assert_eq!(
                    r.amount,
                    (sats > 0).then(|| Amount::from_sat(sats)),
                    "{uri}"
                );
                assert_eq!(r.label.as_deref(), label, "{uri}");
                assert_eq!(r.message.as_deref(), message, "{uri}");
                let has_ln = uri.contains("lightning=");
                assert_eq!(r.lightning(), has_ln.then_some(ln.as_str()), "{uri}");
            }
        }
    }
    let reg = registry(&[None, None, None]);
    let s = settlement(&[eur("1"), eur("2.5"), eur("-1")], &reg);
    for inv in s.invoices() {
        let r = bip21::parse(&inv.uri).unwrap();
        assert_eq!(r.amount, Some(inv.sats));
        assert_eq!(r.label.as_deref(), Some(inv.prosumer.as_str()));
        let ln = bolt11(
            LnCurrency::Regtest,
            Some(inv.sats.to_sat() * 1000),
            now(),
            600,
        );
        let with = invoice_uri_with_lightning(&s, &inv, &ln, now()).unwrap();
        assert_eq!(bip21::parse(&with).unwrap().lightning(), Some(ln.as_str()));
    }
}

#[test]
fn what_wallets_write_parses() {
    let ln = bolt11(LnCurrency::Regtest, Some(50_000_000), now(), 600);
    let upper = format!(
        "BITCOIN:BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080?AMOUNT=0.0005&LABEL=B%C3%A4CKEREI&LIGHTNING={}",
        ln.to_uppercase()
    );
    let r = bip21::parse(&upper).unwrap();
    assert_eq!(r.amount, Some(Amount::from_sat(50_000)));
    assert_eq!(r.label.as_deref(), Some("BäCKEREI"));
    assert_eq!(r.address_on(Network::Regtest).unwrap(), addr(0));
    assert!(check_bolt11(r.lightning().unwrap(), Network::Regtest, 50_000, now()).is_ok());
    // Lower-case percent escapes and a `+` (not a space in BIP21) are kept apart.
    let r =
        bip21::parse("bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?label=caf%c3%a9+bar")
            .unwrap();
    assert_eq!(r.label.as_deref(), Some("café+bar"));
    // An unknown optional parameter is kept; an unknown required one refuses the URI.
    let r = bip21::parse(
        "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?pj=https%3A%2F%2Fexample.com",
    )
    .unwrap();
    assert_eq!(
        r.other,
        [("pj".to_owned(), "https://example.com".to_owned())]
    );
    assert!(r.lightning().is_none());
    // BIP321 lets a payment instruction appear more than once; `lightning()`
    // is the first.
    let r = bip21::parse(
        "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?lightning=a&LIGHTNING=b",
    )
    .unwrap();
    assert_eq!(r.lightning(), Some("a"));
    assert_eq!(r.values("lightning").collect::<Vec<_>>(), ["a", "b"]);
    for bad in [
        "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?req-pop=x",
        "BITCOIN:BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080?REQ-LIGHTNING=x",
        "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?label=a&LABEL=b",
    ] {
        assert_eq!(
            bip21::parse(bad).unwrap_err().kind(),
            "invalid_payment_uri",
            "{bad}"
        );
    }
}

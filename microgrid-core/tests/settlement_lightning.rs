//! Lightning chosen when settling: a balance on-chain cannot pay (no
//! address, below dust, below the minimum payout) goes to the member's
//! BOLT12 offer when the policy has a Lightning threshold. Conservation,
//! the rule itself and "without a threshold nothing changes" are
//! property-tested with random offers, addresses, dust, minimum and
//! threshold.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use ::lightning::offers::offer::OfferBuilder;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use microgrid_core::billing::{Bill, EnergyLines, PeriodBills};
use microgrid_core::lightning::{split_payouts, PayoutOffer};
use microgrid_core::settlement::bitcoin::{Amount, SignedAmount};
use microgrid_core::settlement::*;
use microgrid_core::{
    CommunityMetrics, Network, PayoutAddress, Prosumer, ProsumerId, ProsumerKind, Registry,
    TimeRange, TimeframeLength,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// The rate snapshot's time: the end of June 2026.
fn rate_time() -> DateTime<Utc> {
    at(2026, 7, 1)
}

/// An offer signed for by the key `[seed; 32]` on `network`, optionally
/// expiring at `expiry`.
fn built_offer(seed: u8, network: Network, expiry: Option<DateTime<Utc>>) -> PayoutOffer {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[seed; 32]).unwrap();
    let mut builder = OfferBuilder::new(PublicKey::from_secret_key(&secp, &key))
        .chain(network.to_bitcoin())
        .description(format!("payouts of member {seed}"));
    if let Some(e) = expiry {
        builder = builder.absolute_expiry(Duration::from_secs(e.timestamp() as u64));
    }
    builder.build().unwrap().to_string().parse().unwrap()
}

/// The kinds of offer a member may have registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferKind {
    /// For regtest, no expiry: usable.
    Regtest,
    /// For mainnet only: not usable on regtest.
    Mainnet,
    /// For regtest, expired on 2026-06-15, before the rate's time.
    Expired,
    /// For regtest, expiring on 2026-07-15: usable at the rate's time, but
    /// not when split on 2026-08-01.
    ExpiresLater,
}

impl OfferKind {
    fn usable(self) -> bool {
        matches!(self, OfferKind::Regtest | OfferKind::ExpiresLater)
    }
}

/// The offers of `seed` (1..=40), built once.
fn offer(seed: usize, kind: OfferKind) -> PayoutOffer {
    static OFFERS: OnceLock<Vec<[PayoutOffer; 4]>> = OnceLock::new();
    let all = OFFERS.get_or_init(|| {
        (1..=40u8)
            .map(|s| {
                [
                    built_offer(s, Network::Regtest, None),
                    built_offer(s, Network::Bitcoin, None),
                    built_offer(s, Network::Regtest, Some(at(2026, 6, 15))),
                    built_offer(s, Network::Regtest, Some(at(2026, 7, 15))),
                ]
            })
            .collect()
    });
    let i = match kind {
        OfferKind::Regtest => 0,
        OfferKind::Mainnet => 1,
        OfferKind::Expired => 2,
        OfferKind::ExpiresLater => 3,
    };
    all[seed - 1][i].clone()
}

/// Regtest addresses: P2WPKH (dust 294), P2PKH (546), P2SH (540).
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

/// One member: a payout address or not, an offer or not.
#[derive(Debug, Clone, Copy)]
struct Member {
    address: bool,
    offer: Option<OfferKind>,
}

fn registry(members: &[Member]) -> Registry {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut r = Registry::default();
    for (i, m) in members.iter().enumerate() {
        let mut p =
            Prosumer::new(id(i).as_str(), "member", ProsumerKind::Household, joined).unwrap();
        if m.address {
            p = p.with_payout(addr(i));
        }
        if let Some(kind) = m.offer {
            p = p.with_offer(offer(i + 1, kind));
        }
        r.register(p).unwrap();
    }
    r
}

/// The registry without any offer.
fn without_offers(members: &[Member]) -> Registry {
    let plain: Vec<Member> = members
        .iter()
        .map(|m| Member {
            address: m.address,
            offer: None,
        })
        .collect();
    registry(&plain)
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

fn bills(totals: &[Decimal]) -> PeriodBills {
    PeriodBills {
        period: TimeRange::new(at(2026, 6, 1), rate_time(), TimeframeLength::default()).unwrap(),
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
    }
}

/// 50,000 EUR/BTC at the end of June: 1 EUR = 2,000 sat.
fn rate() -> ExchangeRate {
    ExchangeRate::new(
        Decimal::from(50_000),
        "EUR".parse().unwrap(),
        "test",
        rate_time(),
    )
    .unwrap()
}

fn settle_by(
    totals: &[Decimal],
    reg: &Registry,
    policy: &PayoutPolicy,
    carried: &BTreeMap<ProsumerId, SignedAmount>,
) -> Settlement {
    settle_with_policy(
        &bills(totals),
        reg,
        &rate(),
        Network::Regtest,
        &addr(0),
        carried,
        policy,
    )
    .unwrap()
}

fn eur(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn sat(n: u64) -> Amount {
    Amount::from_sat(n)
}

/// Minimum 5,000 sat, Lightning below 10,000 sat.
fn policy() -> PayoutPolicy {
    PayoutPolicy::with_minimum_payout(sat(5_000))
        .unwrap()
        .with_lightning_below(sat(10_000))
        .unwrap()
}

/// What the community of the first test is.
fn community() -> Vec<Member> {
    let m = |address, offer| Member { address, offer };
    vec![
        m(false, Some(OfferKind::Regtest)), // 00: offer only, 5,000 sat
        m(true, Some(OfferKind::Regtest)),  // 01: 200 sat, below P2PKH's dust
        m(true, Some(OfferKind::Regtest)),  // 02: 2,000 sat, below the minimum
        m(true, Some(OfferKind::Regtest)),  // 03: 8,000 sat: on-chain payout
        m(false, Some(OfferKind::Mainnet)), // 04: offer for another chain
        m(false, Some(OfferKind::Expired)), // 05: offer expired before the rate's time
        m(false, None),                     // 06: neither
        m(true, Some(OfferKind::Regtest)),  // 07: owes 3 EUR
        m(true, Some(OfferKind::Regtest)),  // 08: 400,000 sat: on-chain
    ]
}

fn community_totals() -> Vec<Decimal> {
    [
        "-2.5", "-0.1", "-1", "-4", "-2.5", "-2.5", "-2.5", "3", "-200",
    ]
    .map(eur)
    .to_vec()
}

#[test]
fn balances_on_chain_cannot_pay_are_paid_over_lightning_when_settling() {
    let members = community();
    let reg = registry(&members);
    let s = settle_by(&community_totals(), &reg, &policy(), &BTreeMap::new());
    s.verify().unwrap();
    assert!(s.is_conserved());
    let actions: Vec<(&str, String)> = s
        .entries()
        .iter()
        .map(|e| {
            let what = match &e.action {
                Action::Lightning { offer: o, sats } => {
                    assert_eq!(Some(&**o), reg.get(&e.prosumer).unwrap().offer());
                    format!("lightning {}", sats.to_sat())
                }
                Action::Payout { sats, .. } => format!("payout {}", sats.to_sat()),
                Action::Invoice { sats } => format!("invoice {}", sats.to_sat()),
                Action::Carry { reason } => format!("carry {reason:?}"),
                Action::Nothing => "nothing".into(),
            };
            (e.prosumer.as_str(), what)
        })
        .collect();
    let expected = [
        ("house-00", "lightning 5000"),
        ("house-01", "lightning 200"),
        ("house-02", "lightning 2000"),
        ("house-03", "payout 8000"),
        ("house-04", "carry NoAddress"),
        ("house-05", "carry NoAddress"),
        ("house-06", "carry NoAddress"),
        ("house-07", "invoice 6000"),
        ("house-08", "payout 400000"),
    ];
    assert_eq!(
        actions,
        expected
            .iter()
            .map(|(p, a)| (*p, a.to_string()))
            .collect::<Vec<_>>()
    );
    for e in s.entries() {
        if matches!(e.action, Action::Lightning { .. }) {
            assert_eq!(e.carried_out, SignedAmount::ZERO);
        }
    }
    assert_eq!(
        s.lightning_payouts()
            .iter()
            .map(|(p, _, sats)| (p.as_str(), sats.to_sat()))
            .collect::<Vec<_>>(),
        [("house-00", 5_000), ("house-01", 200), ("house-02", 2_000)]
    );
    // No on-chain output for them: the payouts, the sendmany object and
    // the batches pay house-03 and house-08 only.
    assert_eq!(
        s.payouts(),
        vec![(addr(3), sat(8_000)), (addr(8), sat(400_000))]
    );
    let batched: u64 = s
        .batches(&BatchOptions::new(psbt::FeeRate::new(2).unwrap()))
        .unwrap()
        .iter()
        .map(|b| b.payouts_total().to_sat())
        .sum();
    assert_eq!(batched, 408_000);
    // The carried balances are those Lightning could not take.
    assert_eq!(
        s.carried_out()
            .keys()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["house-04", "house-05", "house-06"]
    );

    // The split lists the settlement's Lightning payouts and moves house-03's
    // on-chain payout (below 10,000 sat) to Lightning too; the parts add up
    // to what the settlement pays.
    let split = split_payouts(&s, &reg, &policy(), rate_time()).unwrap();
    let lightning: Vec<(&str, u64, &str)> = split
        .lightning
        .iter()
        .map(|l| (l.prosumer.as_str(), l.amount_msat, l.payer_note.as_str()))
        .collect();
    assert_eq!(
        lightning,
        [
            ("house-00", 5_000_000, "microgrid 2026-06 payout house-00"),
            ("house-01", 200_000, "microgrid 2026-06 payout house-01"),
            ("house-02", 2_000_000, "microgrid 2026-06 payout house-02"),
            ("house-03", 8_000_000, "microgrid 2026-06 payout house-03"),
        ]
    );
    assert_eq!(split.onchain.len(), 1);
    assert_eq!(
        split.onchain_total().to_sat() * 1000 + split.lightning_total_msat(),
        (5_000 + 200 + 2_000 + 8_000 + 400_000) * 1000
    );
    // Split without a threshold: the settlement's Lightning payouts still.
    let plain_split = split_payouts(&s, &reg, &PayoutPolicy::default(), rate_time()).unwrap();
    assert_eq!(plain_split.lightning.len(), 3);
    assert_eq!(plain_split.onchain.len(), 2);

    // The document says so, reads back and verifies.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["entries"][0]["action"],
        serde_json::json!({"kind": "lightning", "offer": offer(1, OfferKind::Regtest).as_str(), "sats": 5000})
    );
    let back: Settlement = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, s);
    back.verify().unwrap();
    // An edited Lightning amount is caught.
    let mut edited = json;
    edited["entries"][0]["action"]["sats"] = 5001.into();
    let t: Settlement = serde_json::from_value(edited).unwrap();
    assert_eq!(t.verify().unwrap_err().kind(), "invalid_settlement");
}

#[test]
fn without_a_threshold_settling_is_unchanged_ids_included() {
    let members = community();
    let reg = registry(&members);
    let minimum = PayoutPolicy::with_minimum_payout(sat(5_000)).unwrap();
    let zero = minimum.with_lightning_below(Amount::ZERO).unwrap();
    let totals = community_totals();
    let with_offers = settle_by(&totals, &reg, &minimum, &BTreeMap::new());
    let no_offers = settle_by(
        &totals,
        &without_offers(&members),
        &minimum,
        &BTreeMap::new(),
    );
    assert_eq!(with_offers, no_offers);
    assert_eq!(with_offers.id(), no_offers.id());
    assert_eq!(
        serde_json::to_string(&with_offers).unwrap(),
        serde_json::to_string(&no_offers).unwrap()
    );
    assert_eq!(
        settle_by(&totals, &reg, &zero, &BTreeMap::new()),
        with_offers
    );
    assert!(with_offers.lightning_payouts().is_empty());
    // With the threshold, only the three members on-chain could not pay
    // change: another id.
    let lightning = settle_by(&totals, &reg, &policy(), &BTreeMap::new());
    assert_ne!(lightning.id(), with_offers.id());
    let changed: Vec<&str> = lightning
        .entries()
        .iter()
        .zip(with_offers.entries())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.prosumer.as_str())
        .collect();
    assert_eq!(changed, ["house-00", "house-01", "house-02"]);
}

#[test]
fn a_carried_balance_is_paid_over_lightning_once_the_member_has_an_offer() {
    // June: house-00 has neither address nor offer, its 5,000 sat are carried.
    let before = [Member {
        address: false,
        offer: None,
    }];
    let june = settle_by(
        &[eur("-2.5")],
        &registry(&before),
        &policy(),
        &BTreeMap::new(),
    );
    assert_eq!(
        june.carried_out().get(&id(0)),
        Some(&SignedAmount::from_sat(5_000))
    );
    // July: it registered an offer; the carried balance and July's credit go
    // over Lightning.
    let after = [Member {
        address: false,
        offer: Some(OfferKind::Regtest),
    }];
    let july = settle_by(
        &[eur("-1")],
        &registry(&after),
        &policy(),
        &june.carried_out(),
    );
    assert_eq!(july.lightning_payouts()[0].2, sat(7_000));
    assert!(july.carried_out().is_empty());
    assert!(july.is_conserved());
}

#[test]
fn an_offer_expired_when_split_is_an_error_naming_the_member() {
    let members = [Member {
        address: false,
        offer: Some(OfferKind::ExpiresLater),
    }];
    let reg = registry(&members);
    let s = settle_by(&[eur("-2.5")], &reg, &policy(), &BTreeMap::new());
    assert_eq!(s.lightning_payouts().len(), 1);
    assert!(split_payouts(&s, &reg, &policy(), at(2026, 7, 10)).is_ok());
    let err = split_payouts(&s, &reg, &policy(), at(2026, 8, 1)).unwrap_err();
    assert_eq!(err.kind(), "invalid_offer");
    let text = err.to_string();
    assert!(text.contains("house-00"), "{text}");
    assert!(text.contains(s.id()), "{text}");
    assert!(text.contains("expired at 2026-07-15"), "{text}");
    assert!(text.contains("void the settlement"), "{text}");
}

/// A member: a bill in cents, an address or not, an offer of some kind or
/// none.
fn members() -> impl Strategy<Value = Vec<(i64, Member)>> {
    let kind = prop_oneof![
        Just(OfferKind::Regtest),
        Just(OfferKind::Mainnet),
        Just(OfferKind::Expired),
        Just(OfferKind::ExpiresLater),
    ];
    prop::collection::vec(
        (
            // Mostly small balances, so that dust and the minimum matter.
            prop_oneof![-60i64..30, -20_000i64..5_000],
            any::<bool>(),
            prop::option::of(kind),
        )
            .prop_map(|(cents, address, offer)| (cents, Member { address, offer })),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    // Conservation with Lightning actions; every Lightning action is to a
    // member with a usable offer and a due on-chain could not pay; every
    // balance still carried is one Lightning could not take; without a
    // threshold (or with zero) nothing changes, id included; the split adds
    // up to what the settlement pays.
    #[test]
    fn lightning_when_settling_keeps_the_books(
        ms in members(),
        carried in prop::collection::vec(-1_000i64..1_000, 40),
        minimum in prop::option::of(0u64..20_000),
        threshold in prop::option::of(0u64..20_000),
    ) {
        let totals: Vec<Decimal> = ms.iter().map(|(c, _)| Decimal::new(*c, 2)).collect();
        let members: Vec<Member> = ms.iter().map(|(_, m)| *m).collect();
        let reg = registry(&members);
        let carried: BTreeMap<ProsumerId, SignedAmount> = carried
            .iter()
            .take(members.len())
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, c)| (id(i), SignedAmount::from_sat(*c)))
            .collect();
        let base = match minimum {
            Some(m) => PayoutPolicy::with_minimum_payout(sat(m)).unwrap(),
            None => PayoutPolicy::default(),
        };
        let policy = match threshold {
            Some(t) => base.with_lightning_below(sat(t)).unwrap(),
            None => base,
        };
        let s = settle_by(&totals, &reg, &policy, &carried);
        prop_assert!(s.is_conserved());
        prop_assert!(s.verify().is_ok());
        let lightning_on = threshold.is_some_and(|t| t > 0);
        let min = minimum.unwrap_or(0);
        for (i, e) in s.entries().iter().enumerate() {
            let m = members[i];
            let dust = addr(i).dust_limit_sats();
            let onchain_can = m.address && e.due.to_sat() >= dust as i64 && e.due.to_sat() >= min as i64;
            let usable = m.offer.is_some_and(|k| k.usable());
            match &e.action {
                Action::Lightning { offer: o, sats } => {
                    prop_assert!(lightning_on);
                    prop_assert!(usable);
                    prop_assert_eq!(Some(&**o), reg.get(&e.prosumer).unwrap().offer());
                    prop_assert!(!onchain_can, "{} could be paid on-chain", e.prosumer);
                    prop_assert!(sats.to_sat() >= 1);
                    prop_assert_eq!(sats.to_signed().unwrap(), e.due);
                    prop_assert_eq!(e.carried_out, SignedAmount::ZERO);
                }
                Action::Payout { sats, .. } => {
                    prop_assert!(onchain_can);
                    prop_assert_eq!(sats.to_signed().unwrap(), e.due);
                }
                Action::Carry { .. } if e.due.is_positive() => {
                    prop_assert!(!onchain_can);
                    prop_assert!(!(lightning_on && usable), "{} could go over Lightning", e.prosumer);
                }
                _ => prop_assert!(!e.due.is_positive()),
            }
        }
        // Without a threshold, or with zero: the settlement of a registry
        // without offers, id included.
        let without = settle_by(&totals, &without_offers(&members), &base, &carried);
        let zero = base.with_lightning_below(Amount::ZERO).unwrap();
        prop_assert_eq!(&settle_by(&totals, &reg, &base, &carried), &without);
        prop_assert_eq!(&settle_by(&totals, &reg, &zero, &carried), &without);
        if !lightning_on {
            prop_assert_eq!(&s, &without);
        }
        // The split adds up to what the settlement pays, to the millisatoshi.
        let split = split_payouts(&s, &reg, &policy, rate_time()).unwrap();
        let paid: u64 = s.payouts().iter().map(|(_, a)| a.to_sat()).sum::<u64>()
            + s.lightning_payouts().iter().map(|(_, _, a)| a.to_sat()).sum::<u64>();
        prop_assert_eq!(split.onchain_total().to_sat() * 1000 + split.lightning_total_msat(), paid * 1000);
        prop_assert_eq!(split.onchain.len() + split.lightning.len(), s.payouts().len() + s.lightning_payouts().len());
    }
}

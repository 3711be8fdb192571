//! Settlement in bitcoin: each member's bill becomes a payout from the
//! operator, an invoice to the operator, or a balance carried into the next
//! period.
//!
//! # Steps
//!
//! 1. The bill totals are converted to whole satoshis at the exchange-rate
//!    snapshot with the largest remainder rule of [`sats`]: the parts add up
//!    to the rounded batch total `T` exactly.
//! 2. The community's grid leg is converted on its own (half up) to
//!    `grid_sats`; the operator keeps `operator_sats = T − grid_sats` (fees
//!    and margin). So `Σ bill_sats = grid_sats + operator_sats`.
//! 3. Each member's `due = carried_in − bill_sats` (positive: the operator
//!    owes the member). A positive due is paid out on-chain
//!    ([`Action::Payout`]) if the member has a payout address on the
//!    settlement's network, the amount reaches the address type's dust
//!    limit and the policy's minimum payout
//!    ([`PayoutPolicy::with_minimum_payout`]). A positive due that cannot
//!    be paid on-chain (no address, below dust, below the minimum) is paid
//!    over Lightning ([`Action::Lightning`]) when all of these hold: the
//!    policy has a Lightning threshold above zero
//!    ([`PayoutPolicy::with_lightning_below`]), and the member registered a
//!    BOLT12 offer ([`crate::Prosumer::with_offer`]) whose chains include
//!    the settlement's network and which has not expired at the rate
//!    snapshot's time ([`ExchangeRate::at`], an input, so settling stays
//!    deterministic). Otherwise it is carried forward ([`Action::Carry`]).
//!    A negative due becomes an invoice (a BIP21 URI to the operator's
//!    address) if it reaches that address's dust limit, otherwise it is
//!    carried forward.
//!
//! A settlement made without a Lightning threshold (or with a threshold of
//! zero) has no Lightning action and is exactly what it was before
//! Lightning actions existed, id included. Payouts that can go on-chain
//! stay [`Action::Payout`] whatever the threshold;
//! [`crate::lightning::split_payouts`] moves those below it to Lightning
//! after settling.
//!
//! Conservation to the satoshi, checked by property tests (Lightning
//! actions count as payouts; their `carried_out` is 0):
//! `Σ payouts + Σ lightning − Σ invoices + Σ carried_out − Σ carried_in + grid_sats + operator_sats = 0`.
//!
//! A settlement's [`Settlement::id`] is a hash of its inputs, so settling
//! the same period with the same inputs gives the same settlement;
//! [`Settlement::content_hash`] hashes its canonical JSON, so the batch that
//! is signed can be checked against the batch that was computed.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use chrono::{TimeZone, Utc};
//! use microgrid_core::{billing::bill_period, settlement::*, tariff::Tariff, *};
//!
//! let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! let period = TimeRange::new(tf.start(), tf.end(), TimeframeLength::default())?;
//! let tariff = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.10".parse()?)?);
//! let joined = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let mut registry = Registry::default();
//! registry.register(Prosumer::new("solar", "Solar farm", ProsumerKind::Company, joined)?
//!     .with_payout(PayoutAddress::new("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network::Regtest)?))?;
//! registry.register(Prosumer::new("house", "House", ProsumerKind::Household, joined)?)?;
//! let readings = [
//!     Reading::new("solar".parse()?, tf, Wh::new(100_000), Wh::new(0))?,  // 100 kWh surplus
//!     Reading::new("house".parse()?, tf, Wh::new(0), Wh::new(40_000))?,   // 40 kWh deficit
//! ];
//! let cleared = clear_range(&period, &readings, &tariff, &Mechanism::MidMarketRate)?;
//! let bills = bill_period(&period, &tariff, &registry, &cleared)?;
//! // solar: 40 kWh at 0.20 + 60 kWh at 0.10 = 14 EUR owed to it; house owes 8 EUR.
//! let rate = ExchangeRate::new(rust_decimal::Decimal::from(50_000), "EUR".parse()?, "example", tf.end())?;
//! let operator = PayoutAddress::new("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network::Regtest)?;
//! let s = settle(&bills, &registry, &rate, Network::Regtest, &operator, &BTreeMap::new())?;
//! assert_eq!(s.payouts()[0].1.to_sat(), 28_000); // 14 EUR at 50,000 EUR/BTC
//! assert_eq!(s.invoices()[0].sats.to_sat(), 16_000);
//! assert_eq!(s.grid_amount().to_sat(), -12_000);     // the grid pays 6 EUR for 60 kWh exported
//! assert_eq!(s, settle(&bills, &registry, &rate, Network::Regtest, &operator, &BTreeMap::new())?);
//! # Ok::<(), microgrid_core::Error>(())
//! ```

pub mod batches;
pub mod bip21;
pub mod policy;
pub mod psbt;
pub mod reconcile;
pub mod sats;
pub mod wallet;

use std::collections::BTreeMap;

use bitcoin::{Amount, SignedAmount};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::address::{Network, PayoutAddress};
use crate::billing::PeriodBills;
use crate::error::{Error, Result};
use crate::lightning::PayoutOffer;
use crate::money::Currency;
use crate::registry::{text_problem, ProsumerId, Registry};
use crate::timeframe::TimeRange;

pub use self::batches::{Batch, BatchOptions, BatchOutput};
pub use self::policy::{FeePayer, PayoutPolicy};
pub use self::reconcile::{Payments, Reconciliation};
pub use self::wallet::{
    settle_with_wallet, InvoiceAddress, Keychain, NextIndices, OperatorWallet, WalletPsbt,
    WalletRecord, WalletUtxo,
};
/// The [`bitcoin`](https://docs.rs/bitcoin/0.32) crate whose types the
/// settlement API takes and returns ([`bitcoin::Amount`],
/// [`bitcoin::Transaction`], [`bitcoin::Txid`], [`bitcoin::Psbt`], ...).
pub use ::bitcoin;

use self::psbt::{build_psbt, estimate_fee, FeeEstimate, FeeRate, UnsignedBatch, Utxo};
use self::sats::{format_btc, to_sats, to_sats_largest_remainder};

/// The highest exchange rate accepted: 10^15 units of a currency per
/// bitcoin, a thousand times the most a currency has been quoted at, so
/// that converting any bill to satoshis stays within `Decimal`.
pub const MAX_RATE_PER_BTC: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// An exchange-rate snapshot: how much of `currency` one bitcoin costs,
/// where the number came from and when. Deserializing checks it like
/// [`ExchangeRate::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawExchangeRate")]
pub struct ExchangeRate {
    per_btc: Decimal,
    currency: Currency,
    source: String,
    at: DateTime<Utc>,
}

impl ExchangeRate {
    /// A snapshot; the rate must be positive and at most
    /// [`MAX_RATE_PER_BTC`], the source a short printable text
    /// ([`Error::InvalidText`]).
    pub fn new(
        per_btc: Decimal,
        currency: Currency,
        source: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Result<ExchangeRate> {
        let source = source.into();
        if let Some(reason) = text_problem(&source) {
            return Err(Error::InvalidText {
                what: "exchange-rate source",
                reason,
            });
        }
        if per_btc <= Decimal::ZERO || per_btc > MAX_RATE_PER_BTC {
            return Err(Error::RateOutOfRange {
                rate: per_btc,
                currency: currency.to_string(),
            });
        }
        Ok(ExchangeRate {
            per_btc,
            currency,
            source,
            at,
        })
    }
    /// Currency per BTC.
    pub fn per_btc(&self) -> Decimal {
        self.per_btc
    }
    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// Where the rate came from.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// When it was taken.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// An [`ExchangeRate`] as read, before its check.
#[derive(Deserialize)]
struct RawExchangeRate {
    per_btc: Decimal,
    currency: Currency,
    source: String,
    at: DateTime<Utc>,
}

impl TryFrom<RawExchangeRate> for ExchangeRate {
    type Error = Error;
    fn try_from(r: RawExchangeRate) -> Result<ExchangeRate> {
        ExchangeRate::new(r.per_btc, r.currency, r.source, r.at)
    }
}

/// Why a balance was carried forward instead of paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryReason {
    /// The amount is below the dust limit of the output type.
    BelowDust,
    /// The member has no payout address.
    NoAddress,
    /// The amount is below the payout policy's minimum
    /// ([`PayoutPolicy::with_minimum_payout`]).
    BelowMinimum,
}

/// What happens to one member's due amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// Nothing is due.
    Nothing,
    /// The operator pays `sats` to `address`.
    Payout {
        /// Where to.
        address: PayoutAddress,
        /// How much (stored as whole satoshis).
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        sats: Amount,
    },
    /// The member owes the operator `sats`.
    Invoice {
        /// How much (stored as whole satoshis).
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        sats: Amount,
    },
    /// The balance goes into the next settlement.
    Carry {
        /// Why.
        reason: CarryReason,
    },
    /// The operator's Lightning node pays `sats` to the member's BOLT12
    /// `offer`: a balance on-chain cannot pay (no address, below dust or
    /// below the minimum payout), settled with a policy that pays over
    /// Lightning (see the [module docs](self)). No on-chain output: batches,
    /// PSBTs and reconciliation leave it out;
    /// [`crate::lightning::split_payouts`] lists it for the node.
    Lightning {
        /// The member's offer when the period was settled (stored as its
        /// text; boxed, as a parsed offer is large).
        offer: Box<PayoutOffer>,
        /// How much, at least 1 sat (stored as whole satoshis).
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        sats: Amount,
    },
}

/// One member in a settlement. Amounts are signed: positive `bill_sats`
/// is owed by the member; positive `carried_in`, `due` and `carried_out`
/// are owed to the member. Each is stored as whole satoshis (a JSON
/// integer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementEntry {
    /// The member.
    pub prosumer: ProsumerId,
    /// The bill total in the tariff currency (0 if it had no bill).
    pub bill_total: Decimal,
    /// The bill total in bitcoin.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub bill_sats: SignedAmount,
    /// Balance carried in from earlier settlements.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub carried_in: SignedAmount,
    /// `carried_in − bill_sats`.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub due: SignedAmount,
    /// What happens to it.
    pub action: Action,
    /// Balance carried into the next settlement.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub carried_out: SignedAmount,
}

/// An invoice: a member owes the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The member.
    pub prosumer: ProsumerId,
    /// How much (stored as whole satoshis).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub sats: Amount,
    /// A BIP21 URI paying it to the operator.
    pub uri: String,
    /// The address it is paid to: the operator's address, or with a
    /// wallet ([`settle_with_wallet`]) an address of its own.
    pub address: PayoutAddress,
    /// With a wallet, the address's index on the receive chain.
    pub index: Option<u32>,
}

impl Invoice {
    /// How much (the same as [`Invoice::sats`]).
    pub fn amount(&self) -> Amount {
        self.sats
    }
}

/// The settlement of one billing period. Its fields are read through
/// accessors: a settlement changes only through [`Settlement::mark_paid`]
/// and [`Settlement::void`], and [`Settlement::verify`] checks a stored
/// one against its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Stable id: a hash of the inputs (32 hex characters).
    id: String,
    /// The period settled.
    period: TimeRange,
    /// The network paid on.
    network: Network,
    /// The rate used.
    rate: ExchangeRate,
    /// The operator's receiving address (for invoices).
    operator_address: PayoutAddress,
    /// One entry per member with a bill or a carried balance, in id order.
    entries: Vec<SettlementEntry>,
    /// The community's grid leg in satoshis (positive: paid to the grid).
    grid_sats: i64,
    /// What the operator keeps (fees and margin) in satoshis.
    operator_sats: i64,
    /// The transaction that paid the batch, once marked paid.
    paid_txid: Option<bitcoin::Txid>,
    /// Set once the settlement is voided (never when paid); a voided
    /// settlement pays nothing, carries nothing and no longer holds its
    /// period. Like `paid_txid` it is not part of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    voided: Option<Voiding>,
    /// The operator's wallet and the invoice addresses it gave, for a
    /// settlement made with one ([`settle_with_wallet`]); part of the
    /// content and of the id. Absent from the documents of settlements
    /// made without one, which read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wallet: Option<WalletRecord>,
}

/// Why and when a settlement was voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voiding {
    /// When.
    pub at: DateTime<Utc>,
    /// Why, in the operator's words (a wrong rate, say).
    pub reason: String,
}

/// Settles `bills` at `rate` on `network`. Payout addresses come from the
/// registry; `carried_in` holds the balances of earlier settlements (see
/// [`Settlement::carried_out`]). Every balance that reaches its address's
/// dust limit is paid: [`settle_with_policy`] with the default policy.
pub fn settle(
    bills: &PeriodBills,
    registry: &Registry,
    rate: &ExchangeRate,
    network: Network,
    operator_address: &PayoutAddress,
    carried_in: &BTreeMap<ProsumerId, SignedAmount>,
) -> Result<Settlement> {
    settle_with_policy(
        bills,
        registry,
        rate,
        network,
        operator_address,
        carried_in,
        &PayoutPolicy::default(),
    )
}

/// [`settle`] with a payout policy: a balance due to a member below the
/// policy's minimum payout is carried forward
/// ([`CarryReason::BelowMinimum`]). The minimum changes who is paid, so a
/// settlement made with one has other entries, and another id, than one
/// made without whenever it carries a balance [`settle`] would pay.
pub fn settle_with_policy(
    bills: &PeriodBills,
    registry: &Registry,
    rate: &ExchangeRate,
    network: Network,
    operator_address: &PayoutAddress,
    carried_in: &BTreeMap<ProsumerId, SignedAmount>,
    policy: &PayoutPolicy,
) -> Result<Settlement> {
    if bills.currency != rate.currency {
        return Err(Error::CurrencyMismatch {
            bills: bills.currency.to_string(),
            rate: rate.currency.to_string(),
        });
    }
    if operator_address.network() != network {
        return Err(Error::MixedNetworks {
            id: "operator".into(),
            expected: network.to_string(),
            found: operator_address.network().to_string(),
        });
    }
    let totals: BTreeMap<&ProsumerId, Decimal> =
        bills.bills.iter().map(|b| (&b.prosumer, b.total)).collect();
    let mut members: Vec<&ProsumerId> = totals.keys().copied().chain(carried_in.keys()).collect();
    members.sort();
    members.dedup();
    let amounts: Vec<Decimal> = members
        .iter()
        .map(|id| totals.get(id).copied().unwrap_or_default())
        .collect();
    let (bill_sats, total) = to_sats_largest_remainder(&amounts, rate.per_btc)?;
    let total = within_all_bitcoin(total.to_sat(), "batch in satoshis")?;
    let grid_sats = within_all_bitcoin(
        to_sats(bills.grid_leg, rate.per_btc)?.to_sat(),
        "grid leg in satoshis",
    )?;

    let entries = members
        .iter()
        .zip(amounts)
        .zip(bill_sats)
        .map(|((id, bill_total), bill_sats)| {
            let carried = carried_in.get(*id).copied().unwrap_or(SignedAmount::ZERO);
            let due = carried
                .checked_sub(bill_sats)
                .ok_or(Error::Overflow("balance in satoshis"))?;
            let action = decide(
                registry,
                id,
                due,
                network,
                operator_address,
                policy,
                rate.at,
            )?;
            let carried_out = if matches!(action, Action::Carry { .. }) {
                due
            } else {
                SignedAmount::ZERO
            };
            Ok(SettlementEntry {
                prosumer: (*id).clone(),
                bill_total,
                bill_sats,
                carried_in: carried,
                due,
                action,
                carried_out,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let paid = entries.iter().try_fold(0i64, |sum, e| match e.action {
        Action::Payout { sats, .. } | Action::Lightning { sats, .. } => {
            i64::try_from(sats.to_sat())
                .ok()
                .and_then(|s| sum.checked_add(s))
                .ok_or(Error::Overflow("payout batch"))
        }
        _ => Ok(sum),
    })?;
    within_all_bitcoin(paid, "payout batch")?;

    let mut settlement = Settlement {
        id: String::new(),
        period: bills.period,
        network,
        rate: rate.clone(),
        operator_address: operator_address.clone(),
        entries,
        grid_sats,
        operator_sats: total - grid_sats,
        paid_txid: None,
        voided: None,
        wallet: None,
    };
    settlement.id = settlement.input_hash()[..32].to_owned();
    Ok(settlement)
}

/// `sats` if it is at most all bitcoin (21 million BTC) in magnitude: a
/// larger amount is a mistake in the inputs, and keeping to it keeps every
/// sum of a settlement far from overflowing.
fn within_all_bitcoin(sats: i64, what: &'static str) -> Result<i64> {
    if sats.unsigned_abs() > bitcoin::Amount::MAX_MONEY.to_sat() {
        return Err(Error::Overflow(what));
    }
    Ok(sats)
}

/// What happens to `due` (see the module docs, step 3).
fn decide(
    registry: &Registry,
    id: &ProsumerId,
    due: SignedAmount,
    network: Network,
    operator: &PayoutAddress,
    policy: &PayoutPolicy,
    at: DateTime<Utc>,
) -> Result<Action> {
    if due == SignedAmount::ZERO {
        return Ok(Action::Nothing);
    }
    let owed = due.unsigned_abs();
    if due.is_negative() {
        return Ok(if owed.to_sat() >= operator.dust_limit_sats() {
            Action::Invoice { sats: owed }
        } else {
            Action::Carry {
                reason: CarryReason::BelowDust,
            }
        });
    }
    let member = registry.get(id).ok();
    let reason = match member.and_then(|p| p.payout()) {
        None => CarryReason::NoAddress,
        Some(a) if a.network() != network => {
            return Err(Error::MixedNetworks {
                id: id.to_string(),
                expected: network.to_string(),
                found: a.network().to_string(),
            })
        }
        Some(a) if owed.to_sat() < a.dust_limit_sats() => CarryReason::BelowDust,
        Some(_) if !policy.reaches_minimum(owed) => CarryReason::BelowMinimum,
        Some(a) => {
            return Ok(Action::Payout {
                address: a.clone(),
                sats: owed,
            })
        }
    };
    // On-chain cannot pay it: over Lightning if the policy says so and the
    // member's offer can be paid on this network at the rate's time.
    let lightning = policy.lightning_below().is_some_and(|t| t > Amount::ZERO);
    match member.and_then(|p| p.offer()) {
        Some(offer) if lightning && offer.check(network, at).is_ok() => Ok(Action::Lightning {
            offer: Box::new(offer.clone()),
            sats: owed,
        }),
        _ => Ok(Action::Carry { reason }),
    }
}

impl Settlement {
    /// Stable id: a hash of the inputs (32 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The period settled.
    pub fn period(&self) -> TimeRange {
        self.period
    }

    /// The network paid on.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The exchange rate used.
    pub fn rate(&self) -> &ExchangeRate {
        &self.rate
    }

    /// The operator's receiving address (for invoices; with a wallet, its
    /// first change address).
    pub fn operator_address(&self) -> &PayoutAddress {
        &self.operator_address
    }

    /// One entry per member with a bill or a carried balance, in id order.
    pub fn entries(&self) -> &[SettlementEntry] {
        &self.entries
    }

    /// The entry of `prosumer`, if it has one.
    pub fn entry(&self, prosumer: &ProsumerId) -> Option<&SettlementEntry> {
        self.entries.iter().find(|e| &e.prosumer == prosumer)
    }

    /// Set once the settlement is voided.
    pub fn voided(&self) -> Option<&Voiding> {
        self.voided.as_ref()
    }

    /// The operator's wallet and the invoice addresses it gave, for a
    /// settlement made with one.
    pub fn wallet(&self) -> Option<&WalletRecord> {
        self.wallet.as_ref()
    }

    /// The transaction that paid the batch, once marked paid.
    pub fn paid_by(&self) -> Option<bitcoin::Txid> {
        self.paid_txid
    }

    /// The community's grid leg (positive: paid to the grid), as the
    /// [`bitcoin`] crate's signed amount.
    pub fn grid_amount(&self) -> bitcoin::SignedAmount {
        bitcoin::SignedAmount::from_sat(self.grid_sats)
    }

    /// What the operator keeps, as the [`bitcoin`] crate's signed amount.
    pub fn operator_amount(&self) -> bitcoin::SignedAmount {
        bitcoin::SignedAmount::from_sat(self.operator_sats)
    }

    /// The payouts, in member order (an address may appear more than once).
    pub fn payouts(&self) -> Vec<(PayoutAddress, Amount)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.action {
                Action::Payout { address, sats } => Some((address.clone(), *sats)),
                _ => None,
            })
            .collect()
    }

    /// The Lightning payouts the settlement decided ([`Action::Lightning`]),
    /// in member order: the member, the offer and the amount. The payouts
    /// [`crate::lightning::split_payouts`] moves to Lightning after settling
    /// are not among them.
    pub fn lightning_payouts(&self) -> Vec<(ProsumerId, PayoutOffer, Amount)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.action {
                Action::Lightning { offer, sats } => {
                    Some((e.prosumer.clone(), (**offer).clone(), *sats))
                }
                _ => None,
            })
            .collect()
    }

    /// The invoices with their BIP21 URIs: to the operator's address, or
    /// for a settlement made with a wallet each to its own address
    /// ([`WalletRecord::invoices`]).
    pub fn invoices(&self) -> Vec<Invoice> {
        let message = format!(
            "Energy bill {} to {}",
            self.period.start().format("%Y-%m-%d"),
            self.period.end().format("%Y-%m-%d")
        );
        let mut own = self.wallet.iter().flat_map(|w| w.invoices.iter());
        self.entries
            .iter()
            .filter_map(|e| match e.action {
                Action::Invoice { sats } => {
                    let slot = own.next().filter(|a| a.prosumer == e.prosumer);
                    let address = slot.map_or(&self.operator_address, |a| &a.address);
                    Some(Invoice {
                        prosumer: e.prosumer.clone(),
                        sats,
                        uri: bip21::payment_uri(
                            address,
                            sats.to_sat(),
                            Some(e.prosumer.as_str()),
                            Some(&message),
                        ),
                        address: address.clone(),
                        index: slot.map(|a| a.index),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The balances to carry into the next settlement (non-zero only).
    pub fn carried_out(&self) -> BTreeMap<ProsumerId, SignedAmount> {
        self.entries
            .iter()
            .filter(|e| e.carried_out != SignedAmount::ZERO)
            .map(|e| (e.prosumer.clone(), e.carried_out))
            .collect()
    }

    /// The transaction outputs that pay the batch: the payouts merged per
    /// address (members may share a wallet; `sendmany` refuses an address
    /// twice), in address order. The `sendmany` object, the fee estimate and
    /// the PSBT all pay exactly this. The sum is at most 21 million BTC
    /// ([`settle`] checks it), so merging cannot overflow (it would
    /// saturate, never panic).
    pub fn payout_batch(&self) -> Vec<(PayoutAddress, Amount)> {
        let mut merged: BTreeMap<&str, (PayoutAddress, Amount)> = BTreeMap::new();
        for e in &self.entries {
            if let Action::Payout { address, sats } = &e.action {
                let slot = merged
                    .entry(address.as_str())
                    .or_insert_with(|| (address.clone(), Amount::ZERO));
                slot.1 = slot.1.checked_add(*sats).unwrap_or(Amount::MAX);
            }
        }
        merged.into_values().collect()
    }

    /// The payout batch as the outputs object Bitcoin Core's `sendmany` and
    /// `walletcreatefundedpsbt` take: `{"address": amount, ...}` with
    /// amounts in BTC with 8 decimals (see [`Settlement::payout_batch`]).
    pub fn sendmany_json(&self) -> String {
        let fields: Vec<String> = self
            .payout_batch()
            .iter()
            .map(|(a, sats)| format!("\"{a}\":{}", format_btc(*sats)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    /// The fee of paying the batch at `feerate`, assuming one P2WPKH input
    /// and a P2WPKH-sized change output (see [`psbt`] for the sizes).
    pub fn estimate_fee(&self, feerate: FeeRate) -> FeeEstimate {
        let payouts = self.payout_batch();
        let mut outputs: Vec<&PayoutAddress> = payouts.iter().map(|(a, _)| a).collect();
        outputs.push(&self.operator_address);
        estimate_fee(&[crate::address::OutputType::P2wpkh], &outputs, feerate)
    }

    /// An unsigned PSBT paying [`Settlement::payout_batch`] from the
    /// operator's `utxos`.
    pub fn build_psbt(
        &self,
        utxos: &[Utxo],
        change: &PayoutAddress,
        feerate: FeeRate,
    ) -> Result<UnsignedBatch> {
        for (id, a) in utxos
            .iter()
            .map(|u| ("operator input", &u.address))
            .chain([("operator change", change)])
        {
            if a.network() != self.network {
                return Err(Error::MixedNetworks {
                    id: id.into(),
                    expected: self.network.to_string(),
                    found: a.network().to_string(),
                });
            }
        }
        build_psbt(&self.payout_batch(), utxos, change, feerate)
    }

    /// Records the transaction that paid the batch (64 hex characters).
    /// A settlement is paid once: the same txid again changes nothing,
    /// another one is [`Error::AlreadyPaid`].
    pub fn mark_paid(&mut self, txid: &str) -> Result<()> {
        let valid = txid.len() == 64 && txid.bytes().all(|b| b.is_ascii_hexdigit());
        let parsed = match txid.parse::<bitcoin::Txid>() {
            Ok(parsed) if valid => parsed,
            _ => return Err(Error::InvalidTxid(txid.to_owned())),
        };
        self.mark_paid_txid(parsed)
    }

    /// [`Settlement::mark_paid`] with the [`bitcoin`] crate's txid.
    pub fn mark_paid_txid(&mut self, txid: bitcoin::Txid) -> Result<()> {
        if let Some(v) = &self.voided {
            return Err(Error::SettlementVoided {
                id: self.id.clone(),
                reason: v.reason.clone(),
            });
        }
        match self.paid_txid {
            Some(paid) if paid != txid => Err(Error::AlreadyPaid {
                id: self.id.clone(),
                paid: paid.to_string(),
                txid: txid.to_string(),
            }),
            _ => {
                self.paid_txid = Some(txid);
                Ok(())
            }
        }
    }

    /// Voids the settlement (to correct a rate, say), so that its period
    /// can be settled again. A paid settlement cannot be voided
    /// ([`Error::CannotVoidPaid`]); voiding a voided one changes nothing.
    pub fn void(&mut self, reason: &str, at: DateTime<Utc>) -> Result<()> {
        if let Some(problem) = text_problem(reason) {
            return Err(Error::InvalidText {
                what: "reason for voiding",
                reason: problem,
            });
        }
        if let Some(txid) = self.paid_txid {
            return Err(Error::CannotVoidPaid {
                id: self.id.clone(),
                txid: txid.to_string(),
            });
        }
        if self.voided.is_none() {
            self.voided = Some(Voiding {
                at,
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    /// The error for settling this period while `standing` (another
    /// settlement of an overlapping period) stands:
    /// [`Error::SettlementConflict`] naming it and what differs.
    pub fn conflict_with(&self, standing: &Settlement) -> Error {
        Error::SettlementConflict {
            start: self.period.start(),
            end: self.period.end(),
            existing: standing.id.clone(),
            differs: self.differences(standing),
        }
    }

    /// Whether it stands: not voided.
    pub fn stands(&self) -> bool {
        self.voided.is_none()
    }

    /// What differs between this settlement and `other`, by name:
    /// `"period"`, `"network"`, `"rate"`, `"rate currency"`,
    /// `"rate source"`, `"rate time"`, `"operator address"`, `"wallet"`
    /// (its invoice addresses and indices), `"amounts"`
    /// (the bills, balances or payouts). Empty when both have the same
    /// content.
    pub fn differences(&self, other: &Settlement) -> Vec<String> {
        let (a, b) = (&self.rate, &other.rate);
        let checks = [
            ("period", self.period != other.period),
            ("network", self.network != other.network),
            ("rate", a.per_btc != b.per_btc),
            ("rate currency", a.currency != b.currency),
            ("rate source", a.source != b.source),
            ("rate time", a.at != b.at),
            (
                "operator address",
                self.operator_address != other.operator_address,
            ),
            ("wallet", self.wallet != other.wallet),
            (
                "amounts",
                self.entries != other.entries
                    || self.grid_sats != other.grid_sats
                    || self.operator_sats != other.operator_sats,
            ),
        ];
        checks
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| (*name).to_owned())
            .collect()
    }

    /// The settlement as canonical JSON: keys sorted, no white space,
    /// decimals as strings, satoshis as integers; without `paid_txid` and
    /// `voided`.
    pub fn canonical_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("paid_txid");
            map.remove("voided");
        }
        canonical(&value)
    }

    /// SHA-256 of [`Settlement::canonical_json`], hex.
    pub fn content_hash(&self) -> String {
        hex_sha256(self.canonical_json().as_bytes())
    }

    /// Checks a settlement read back from storage or elsewhere: its id is
    /// the hash of its inputs, every entry's `due` is `carried_in −
    /// bill_sats`, members are listed once in id order, and the satoshis
    /// are conserved ([`Settlement::is_conserved`]). An error
    /// ([`Error::InvalidSettlement`]) names the first thing that does not
    /// hold: the fields are public, so nothing else stops an edit.
    pub fn verify(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidSettlement {
            id: self.id.clone(),
            reason,
        };
        if self.id.len() != 32 || self.input_hash()[..32] != self.id {
            return Err(invalid("its id is not the hash of its inputs".into()));
        }
        if let Some(w) = self
            .entries
            .windows(2)
            .find(|w| w[0].prosumer >= w[1].prosumer)
        {
            return Err(invalid(format!(
                "members out of order or repeated at {}",
                w[1].prosumer
            )));
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.carried_in.checked_sub(e.bill_sats) != Some(e.due))
        {
            return Err(invalid(format!(
                "{}'s due is not carried_in - bill_sats",
                e.prosumer
            )));
        }
        if let Some((e, problem)) = self
            .entries
            .iter()
            .find_map(|e| self.action_problem(e).map(|p| (e, p)))
        {
            return Err(invalid(format!("{}'s {problem}", e.prosumer)));
        }
        if !self.is_conserved() {
            return Err(invalid("its satoshis are not conserved".into()));
        }
        if let Some(w) = &self.wallet {
            wallet::check_record(self, w).map_err(invalid)?;
        }
        Ok(())
    }

    /// What does not hold of `e`'s action: it pays, invoices or carries
    /// exactly the due (a payout or Lightning payout of `due`, an invoice
    /// of `−due`, a carry of `due`, nothing when nothing is due), and a
    /// Lightning offer is for the settlement's network.
    fn action_problem(&self, e: &SettlementEntry) -> Option<String> {
        let paid = |sats: Amount| sats.to_signed().ok() == Some(e.due);
        let settled_here = e.carried_out == SignedAmount::ZERO;
        match &e.action {
            Action::Nothing if e.due != SignedAmount::ZERO || !settled_here => {
                Some("action is nothing but something is due".into())
            }
            Action::Payout { sats, .. } if !paid(*sats) || !settled_here => {
                Some("payout is not its due".into())
            }
            Action::Lightning { sats, .. } if !paid(*sats) || !settled_here => {
                Some("Lightning payout is not its due".into())
            }
            Action::Lightning { offer, .. } if !offer.supports(self.network) => {
                Some(format!("Lightning offer is not for {}", self.network))
            }
            Action::Invoice { sats }
                if sats.to_signed().ok().and_then(|s| s.checked_add(e.due))
                    != Some(SignedAmount::ZERO)
                    || !settled_here =>
            {
                Some("invoice is not its due".into())
            }
            Action::Carry { .. } if e.carried_out != e.due => {
                Some("carried_out is not its due".into())
            }
            _ => None,
        }
    }

    /// SHA-256 of the inputs that decide the settlement, hex.
    fn input_hash(&self) -> String {
        let mut inputs = serde_json::json!({
            "period": self.period,
            "network": self.network,
            "rate": self.rate,
            "operator_address": self.operator_address,
            "entries": self.entries.iter().map(|e| serde_json::json!({
                "prosumer": e.prosumer,
                "bill_total": e.bill_total,
                "carried_in": e.carried_in.to_sat(),
                "action": e.action,
            })).collect::<Vec<_>>(),
            "grid_sats": self.grid_sats,
        });
        // Only a settlement made with a wallet has one: the ids of the
        // others stay as they were.
        if let (Some(w), Value::Object(map)) = (&self.wallet, &mut inputs) {
            map.insert(
                "wallet".into(),
                serde_json::to_value(w).unwrap_or(Value::Null),
            );
        }
        hex_sha256(canonical(&inputs).as_bytes())
    }

    /// Checks conservation to the satoshi (see the module docs).
    pub fn is_conserved(&self) -> bool {
        let sum = |f: &dyn Fn(&SettlementEntry) -> i128| self.entries.iter().map(f).sum::<i128>();
        let payouts = sum(&|e| match e.action {
            Action::Payout { sats, .. } | Action::Lightning { sats, .. } => {
                i128::from(sats.to_sat())
            }
            _ => 0,
        });
        let invoices = sum(&|e| match e.action {
            Action::Invoice { sats } => i128::from(sats.to_sat()),
            _ => 0,
        });
        let balance = payouts - invoices + sum(&|e| i128::from(e.carried_out.to_sat()))
            - sum(&|e| i128::from(e.carried_in.to_sat()))
            + i128::from(self.grid_sats)
            + i128::from(self.operator_sats);
        balance == 0
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// JSON with object keys sorted at every level, whatever map type
/// `serde_json` was built with.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

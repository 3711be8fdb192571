//! Lightning for small amounts: payouts to BOLT12 offers, BOLT11 invoices
//! in BIP21 URIs.
//!
//! An on-chain output costs its fee however small the payout, and an
//! amount below the dust limit cannot be paid on-chain at all. So a member
//! may register a BOLT12 offer ([`PayoutOffer`], on
//! [`crate::Prosumer::with_offer`]) as a payout destination, and the payout
//! policy may set an on-chain threshold
//! ([`PayoutPolicy::with_lightning_below`]). The threshold acts twice:
//!
//! 1. **When settling.** A balance due to a member that on-chain cannot pay
//!    (no payout address, below the address's dust limit, below the
//!    policy's minimum payout) is paid over Lightning
//!    ([`Action::Lightning`]) instead of being carried forward, when the
//!    threshold is above zero and the member's offer is for the
//!    settlement's network and has not expired at the exchange rate's time
//!    (see [`crate::settlement`], step 3). This is part of the settlement
//!    and of its id; without a threshold a settlement is as before.
//! 2. **After settling.** [`split_payouts`] takes a settlement's on-chain
//!    payouts and turns each one below the threshold to a member with a
//!    usable offer into a [`LightningPayout`] (the offer, the amount in
//!    millisatoshis and a payer note naming the period), for the
//!    operator's Lightning node to pay; the rest stay on-chain and are
//!    split into transactions as before ([`PayoutSplit::onchain_batches`]).
//!    The settlement's own Lightning actions are always in its Lightning
//!    list, whatever the threshold given.
//!
//! The parts add up to what the settlement pays exactly: every payout and
//! Lightning action is in exactly one of them, and a Lightning payout of
//! `s` satoshis is `1000·s` millisatoshis.
//!
//! # Which offers are accepted
//!
//! [`PayoutOffer`] parses an offer with the `lightning` crate (its bech32
//! encoding, TLV stream and the signing key or blinded paths it must have)
//! and accepts only an offer a payout of any size can be sent to: one
//! **without an amount** (an offer asking for a fixed amount, in bitcoin or
//! in a currency, is refused: payouts differ every period) and for a
//! **single item** (an offer expecting a quantity is refused).
//! [`PayoutOffer::parse`] also checks it against a network and a time: the
//! offer's chains must include the network's (an offer without chains is
//! for mainnet bitcoin only, as BOLT12 says), and it must not have expired.
//! [`split_payouts`] checks both again against the settlement's network and
//! the time it is given: a payout to an offer that has expired since, or is
//! for another chain, stays on-chain and is listed in
//! [`PayoutSplit::offers_not_used`] with the reason.
//!
//! # BOLT11 invoices in BIP21 URIs
//!
//! A member who owes the operator can be given a BIP21 URI with a BOLT11
//! invoice from the operator's node in the `lightning=` parameter (BIP21
//! as extended by BIP321), so the member's wallet pays on-chain or over
//! Lightning. [`check_bolt11`] validates such an invoice with the
//! `lightning-invoice` crate (signature, network, amount, expiry) and
//! [`invoice_uri_with_lightning`] adds it to a settlement's invoice URI.
//!
//! # Example
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use microgrid_core::lightning::PayoutOffer;
//! use microgrid_core::{Network, Prosumer, ProsumerKind};
//!
//! // An amount-less testnet offer (a test vector of the `lightning` crate).
//! let text = "lno1qgsyxjtl6luzd9t3pr62xr7eemp6awnejusgf6gw45q75vcfqqqqqqq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj";
//! let now = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
//! let offer = PayoutOffer::parse(text, Network::Testnet, now)?;
//! assert_eq!(offer.description().as_deref(), Some("Test vectors"));
//! let member = Prosumer::new("house-07", "House 7", ProsumerKind::Household,
//!                            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())?
//!     .with_offer(offer);
//! assert!(member.offer().is_some());
//! let err = PayoutOffer::parse(text, Network::Bitcoin, now).unwrap_err(); // another chain
//! assert_eq!(err.kind(), "invalid_offer");
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::constants::ChainHash;
use bitcoin::Amount;
use chrono::{DateTime, Datelike, Utc};
use lightning::offers::offer::{Offer, Quantity};
use lightning_invoice::Bolt11Invoice;
use serde::{Deserialize, Serialize};

use crate::address::{Network, PayoutAddress};
use crate::error::{Error, Result};
use crate::registry::{ProsumerId, Registry};
use crate::settlement::{bip21, Action, Batch, BatchOptions, Invoice, PayoutPolicy, Settlement};

/// Millisatoshis per satoshi.
pub const MSAT_PER_SAT: u64 = 1_000;

/// A member's BOLT12 offer, accepted as a payout destination: it parses
/// and asks for neither an amount nor a quantity (see the
/// [module docs](self)). It keeps the offer's canonical (lower-case)
/// encoding, which is what it prints, compares and serializes as.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PayoutOffer {
    text: String,
    offer: Offer,
}

impl PayoutOffer {
    /// Parses `text` and checks it for `network` at `at`: the offer must be
    /// one a payout can go to ([`PayoutOffer::from_str`]), its chains must
    /// include `network`'s and it must not have expired at `at`. Anything
    /// else is [`Error::InvalidOffer`] naming the offer and the reason.
    pub fn parse(text: &str, network: Network, at: DateTime<Utc>) -> Result<PayoutOffer> {
        let offer: PayoutOffer = text.parse()?;
        offer.check(network, at)?;
        Ok(offer)
    }

    /// Whether the offer can be paid on `network` at `at`: an
    /// [`Error::InvalidOffer`] if its chains do not include the network's or
    /// it has expired by then.
    pub fn check(&self, network: Network, at: DateTime<Utc>) -> Result<()> {
        if !self.supports(network) {
            return Err(self.invalid(format!(
                "it is not for {network} (its chains: {})",
                self.chain_names().join(", ")
            )));
        }
        if self.is_expired_at(at) {
            let expiry = self
                .expires_at()
                .map(|e| e.to_rfc3339())
                .unwrap_or_default();
            return Err(self.invalid(format!("it expired at {expiry}")));
        }
        Ok(())
    }

    /// Whether the offer's chains include `network`'s.
    pub fn supports(&self, network: Network) -> bool {
        self.offer.supports_chain(chain_hash(network))
    }

    /// When the offer expires, if it does.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.offer
            .absolute_expiry()
            .and_then(|d| DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, 0))
    }

    /// Whether the offer has expired at `at` (an offer without expiry never
    /// does).
    pub fn is_expired_at(&self, at: DateTime<Utc>) -> bool {
        self.offer.is_expired_no_std(since_epoch(at))
    }

    /// The offer's description, if it has one.
    pub fn description(&self) -> Option<String> {
        self.offer.description().map(|d| d.to_string())
    }

    /// The offer's issuer, if it names one.
    pub fn issuer(&self) -> Option<String> {
        self.offer.issuer().map(|d| d.to_string())
    }

    /// The offer as its bech32 text (`lno1…`, lower case).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed offer, for the operator's Lightning node.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    fn chain_names(&self) -> Vec<String> {
        self.offer
            .chains()
            .into_iter()
            .map(|c| {
                [
                    Network::Bitcoin,
                    Network::Testnet,
                    Network::Signet,
                    Network::Regtest,
                ]
                .into_iter()
                .find(|n| chain_hash(*n) == c)
                .map_or_else(|| c.to_string(), |n| n.to_string())
            })
            .collect()
    }

    fn invalid(&self, reason: String) -> Error {
        invalid_offer(&self.text, reason)
    }
}

fn invalid_offer(text: &str, reason: String) -> Error {
    Error::InvalidOffer {
        offer: text.chars().take(200).collect(),
        reason,
    }
}

fn chain_hash(network: Network) -> ChainHash {
    ChainHash::using_genesis_block(network.to_bitcoin())
}

fn since_epoch(at: DateTime<Utc>) -> Duration {
    Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0))
}

/// Parses an offer and checks that a payout can go to it (no amount, a
/// single item), but not its network or expiry: this is how a stored
/// offer is read back, which may have expired since it was registered
/// ([`PayoutOffer::parse`] checks both). Surrounding white space is
/// ignored; the bech32 text may be in either case.
impl FromStr for PayoutOffer {
    type Err = Error;
    fn from_str(text: &str) -> Result<PayoutOffer> {
        let trimmed = text.trim();
        let offer: Offer = trimmed
            .parse()
            .map_err(|e| invalid_offer(trimmed, format!("it does not parse ({e:?})")))?;
        if let Some(amount) = offer.amount() {
            return Err(invalid_offer(
                trimmed,
                format!(
                    "it asks for a fixed amount ({amount:?}); a payout offer must take any amount"
                ),
            ));
        }
        if offer.expects_quantity() || offer.supported_quantity() != Quantity::One {
            return Err(invalid_offer(
                trimmed,
                "it expects a quantity; a payout offer must be for a single item".into(),
            ));
        }
        Ok(PayoutOffer {
            text: offer.to_string(),
            offer,
        })
    }
}

impl fmt::Display for PayoutOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PayoutOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PayoutOffer").field(&self.text).finish()
    }
}

impl Serialize for PayoutOffer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for PayoutOffer {
    fn deserialize<D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<PayoutOffer, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A payout the operator's Lightning node pays to a member's offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightningPayout {
    /// The member.
    pub prosumer: ProsumerId,
    /// The member's offer.
    pub offer: PayoutOffer,
    /// The payout in millisatoshis (the settlement's satoshis × 1000).
    pub amount_msat: u64,
    /// The payer note for the invoice request, naming the period and the
    /// member (`microgrid 2026-10 payout house-07`).
    pub payer_note: String,
}

impl LightningPayout {
    /// `sats` to `prosumer`'s `offer`, in millisatoshis, with the payer
    /// note naming `period` (as [`period_name`] writes it).
    fn new(
        prosumer: &ProsumerId,
        offer: &PayoutOffer,
        sats: Amount,
        period: &str,
    ) -> Result<LightningPayout> {
        Ok(LightningPayout {
            prosumer: prosumer.clone(),
            offer: offer.clone(),
            amount_msat: sats
                .to_sat()
                .checked_mul(MSAT_PER_SAT)
                .ok_or(Error::Overflow("payout in millisatoshis"))?,
            payer_note: format!("microgrid {period} payout {prosumer}"),
        })
    }

    /// The payout in whole satoshis.
    pub fn amount(&self) -> Amount {
        Amount::from_sat(self.amount_msat / MSAT_PER_SAT)
    }
}

/// A payout that stays on-chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnchainPayout {
    /// The member.
    pub prosumer: ProsumerId,
    /// Where to.
    pub address: PayoutAddress,
    /// How much.
    pub amount: Amount,
}

/// Why a member's offer was not used for a payout below the threshold
/// (the payout stays on-chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferNotUsed {
    /// The member.
    pub prosumer: ProsumerId,
    /// Why: the offer is for another chain, or has expired.
    pub reason: String,
}

/// A settlement's payouts split into on-chain payouts and Lightning
/// payouts ([`split_payouts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSplit {
    /// The settlement split.
    pub settlement_id: String,
    /// The payouts that stay on-chain, in member order.
    pub onchain: Vec<OnchainPayout>,
    /// The payouts for the operator's Lightning node, in member order.
    pub lightning: Vec<LightningPayout>,
    /// Members below the threshold whose offer could not be used.
    pub offers_not_used: Vec<OfferNotUsed>,
}

impl PayoutSplit {
    /// Σ of the on-chain payouts.
    pub fn onchain_total(&self) -> Amount {
        self.onchain.iter().map(|p| p.amount).sum()
    }

    /// Σ of the Lightning payouts in millisatoshis.
    pub fn lightning_total_msat(&self) -> u64 {
        self.lightning.iter().map(|p| p.amount_msat).sum()
    }

    /// The on-chain payouts merged per address, in address order, as
    /// [`Settlement::payout_batch`] merges all of them.
    ///
    /// A settlement pays at most 21 million BTC, so merging cannot
    /// overflow (it would saturate, never panic).
    pub fn onchain_batch(&self) -> Vec<(PayoutAddress, Amount)> {
        let mut merged: std::collections::BTreeMap<&str, (PayoutAddress, Amount)> =
            std::collections::BTreeMap::new();
        for p in &self.onchain {
            let slot = merged
                .entry(p.address.as_str())
                .or_insert_with(|| (p.address.clone(), Amount::ZERO));
            slot.1 = slot.1.checked_add(p.amount).unwrap_or(Amount::MAX);
        }
        merged.into_values().collect()
    }

    /// The on-chain payouts split into transactions under `options`, as
    /// [`Settlement::batches`] splits all of a settlement's payouts: the
    /// batches pay exactly [`PayoutSplit::onchain_batch`]. `settlement`
    /// must be the one split (an [`Error::InvalidSettlement`] otherwise).
    pub fn onchain_batches(
        &self,
        settlement: &Settlement,
        options: &BatchOptions,
    ) -> Result<Vec<Batch>> {
        if settlement.id() != self.settlement_id {
            return Err(Error::InvalidSettlement {
                id: settlement.id().to_string(),
                reason: format!(
                    "the payouts split are those of settlement {}",
                    self.settlement_id
                ),
            });
        }
        settlement.batches_of(self.onchain_batch(), options)
    }
}

/// Splits what `settlement` pays by the policy's on-chain threshold
/// ([`PayoutPolicy::lightning_below`]): a payout below it to a member of
/// `registry` with an offer that can be paid on the settlement's network
/// at `at` becomes a [`LightningPayout`]; every other payout stays
/// on-chain. Without a threshold every payout stays on-chain. A payout to
/// a member `registry` does not know is [`Error::UnknownProsumer`].
///
/// The settlement's Lightning actions ([`Action::Lightning`]) are
/// [`LightningPayout`]s to the offer the settlement names, whatever the
/// policy. If such an offer can no longer be paid at `at` (it has expired
/// since the period was settled), the split is an [`Error::InvalidOffer`]
/// naming the member and the settlement: the settlement must be voided
/// and the period settled again (the balance then goes on-chain, over a
/// newer offer, or is carried).
///
/// ```
/// # use microgrid_core::lightning::*;
/// # fn f(s: &microgrid_core::settlement::Settlement, r: &microgrid_core::Registry) -> microgrid_core::Result<()> {
/// use microgrid_core::settlement::{bitcoin::Amount, PayoutPolicy};
/// let policy = PayoutPolicy::default().with_lightning_below(Amount::from_sat(10_000))?;
/// let split = split_payouts(s, r, &policy, s.period().end())?;
/// let paid: u64 = s.payouts().iter().map(|(_, sats)| sats.to_sat()).sum::<u64>()
///     + s.lightning_payouts().iter().map(|(_, _, sats)| sats.to_sat()).sum::<u64>();
/// assert_eq!(split.onchain_total().to_sat() * 1000 + split.lightning_total_msat(), paid * 1000);
/// # Ok(()) }
/// ```
pub fn split_payouts(
    settlement: &Settlement,
    registry: &Registry,
    policy: &PayoutPolicy,
    at: DateTime<Utc>,
) -> Result<PayoutSplit> {
    let period = period_name(settlement);
    let mut split = PayoutSplit {
        settlement_id: settlement.id().to_string(),
        onchain: Vec::new(),
        lightning: Vec::new(),
        offers_not_used: Vec::new(),
    };
    for entry in settlement.entries() {
        if let Action::Lightning { offer, sats } = &entry.action {
            if let Err(e) = offer.check(settlement.network(), at) {
                let reason = match e {
                    Error::InvalidOffer { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(offer.invalid(format!(
                    "settlement {} pays {} over Lightning to this offer, but {reason}: \
                     void the settlement and settle the period again",
                    settlement.id(),
                    entry.prosumer
                )));
            }
            split.lightning.push(LightningPayout::new(
                &entry.prosumer,
                offer,
                *sats,
                &period,
            )?);
            continue;
        }
        let Action::Payout { address, sats } = &entry.action else {
            continue;
        };
        let member = registry.get(&entry.prosumer)?;
        let below = policy.lightning_below().is_some_and(|t| *sats < t);
        if let (true, Some(offer)) = (below, member.offer()) {
            match offer.check(settlement.network(), at) {
                Ok(()) => {
                    split.lightning.push(LightningPayout::new(
                        &entry.prosumer,
                        offer,
                        *sats,
                        &period,
                    )?);
                    continue;
                }
                Err(Error::InvalidOffer { reason, .. }) => {
                    split.offers_not_used.push(OfferNotUsed {
                        prosumer: entry.prosumer.clone(),
                        reason,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        split.onchain.push(OnchainPayout {
            prosumer: entry.prosumer.clone(),
            address: address.clone(),
            amount: *sats,
        });
    }
    Ok(split)
}

/// The period as a payer note names it: `2026-10` for a calendar month,
/// `2026-10-01..2026-10-15` otherwise (the end exclusive).
fn period_name(settlement: &Settlement) -> String {
    let (start, end) = (settlement.period().start(), settlement.period().end());
    let midnight = |d: DateTime<Utc>| d.time() == chrono::NaiveTime::MIN;
    let next_month = start
        .date_naive()
        .checked_add_months(chrono::Months::new(1))
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc());
    if start.day() == 1 && midnight(start) && Some(end) == next_month {
        start.format("%Y-%m").to_string()
    } else {
        format!("{}..{}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d"))
    }
}

/// Parses a BOLT11 invoice and checks it for a payment of `sats` on
/// `network` at `at`, with the `lightning-invoice` crate: it must parse
/// (in either case) with a valid signature, be for `network`, ask for
/// exactly `sats` × 1000 millisatoshis if it asks for an amount, and not
/// have expired at `at`. Anything else is [`Error::InvalidLightningInvoice`]
/// naming the invoice and the reason.
pub fn check_bolt11(
    invoice: &str,
    network: Network,
    sats: u64,
    at: DateTime<Utc>,
) -> Result<Bolt11Invoice> {
    let text = invoice.trim();
    let invalid = |reason: String| Error::InvalidLightningInvoice {
        invoice: text.chars().take(200).collect(),
        reason,
    };
    let parsed: Bolt11Invoice = text
        .to_ascii_lowercase()
        .parse()
        .map_err(|e| invalid(format!("it does not parse: {e}")))?;
    if parsed.network() != network.to_bitcoin() {
        return Err(invalid(format!(
            "it is for {}, not {network}",
            parsed.network()
        )));
    }
    let msat = sats
        .checked_mul(MSAT_PER_SAT)
        .ok_or(Error::Overflow("payment in millisatoshis"))?;
    if let Some(asked) = parsed.amount_milli_satoshis() {
        if asked != msat {
            return Err(invalid(format!(
                "it asks for {asked} msat, the payment is {msat} msat ({sats} sat)"
            )));
        }
    }
    if parsed.would_expire(since_epoch(at)) {
        let expired = parsed
            .expires_at()
            .and_then(|d| DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, 0))
            .map(|d| d.to_rfc3339())
            .unwrap_or_default();
        return Err(invalid(format!("it expired at {expired}")));
    }
    Ok(parsed)
}

/// The BIP21 URI of a settlement's `invoice` with a BOLT11 invoice from
/// the operator's node in its `lightning=` parameter, checked with
/// [`check_bolt11`] against the settlement's network, the invoice's
/// amount and `at`. The URI is the invoice's own (address, amount, label,
/// message) with `lightning=<invoice>` added; [`bip21::parse`] reads it
/// back.
pub fn invoice_uri_with_lightning(
    settlement: &Settlement,
    invoice: &Invoice,
    bolt11: &str,
    at: DateTime<Utc>,
) -> Result<String> {
    let checked = check_bolt11(bolt11, settlement.network(), invoice.sats.to_sat(), at)?;
    Ok(bip21::with_lightning(&invoice.uri, &checked.to_string()))
}

//! The payout policy: the smallest payout the operator sends, and who pays
//! the miner fee.
//!
//! * **Minimum payout.** A member is paid only when the amount due reaches
//!   both the dust limit of the member's address (as always) and the
//!   policy's minimum; below it the balance is carried into the next
//!   settlement ([`super::CarryReason::BelowMinimum`]), exactly as a balance
//!   below dust is. The minimum changes who is paid, so it changes the
//!   settlement's entries and with them its id; without a minimum
//!   ([`PayoutPolicy::default`]) a settlement is what [`super::settle`]
//!   makes, id included.
//! * **Fee payer.** The operator pays the fee from its own inputs
//!   ([`FeePayer::Operator`], the default), or each batch's fee is deducted
//!   from that batch's payouts pro rata to their amounts
//!   ([`FeePayer::Members`]), in whole satoshis with the largest remainder
//!   rule, so the deductions add up to the fee exactly. Who pays the fee
//!   is a choice made when the batches are built (see [`super::batches`]);
//!   it does not change the settlement.
//! * **Lightning.** With an on-chain threshold above zero
//!   ([`PayoutPolicy::with_lightning_below`]), Lightning is used twice
//!   ([`crate::lightning`]):
//!   - *when settling*, a balance due to a member that on-chain cannot pay
//!     (no payout address, below the address's dust limit, below the
//!     minimum payout) is paid over Lightning ([`super::Action::Lightning`])
//!     instead of being carried, if the member's BOLT12 offer is for the
//!     settlement's network and has not expired at the exchange rate's
//!     time. This changes the settlement's entries and id, but only for
//!     such members: a settlement in which none has a usable offer, and
//!     any settlement made without a threshold or with a threshold of
//!     zero, is what it was without one, id included;
//!   - *after settling*, on-chain payouts below the threshold to members
//!     with a usable offer are moved to Lightning
//!     ([`crate::lightning::split_payouts`]); like the fee payer this is a
//!     choice made after settling and does not change the settlement.

use bitcoin::Amount;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who pays the miner fee of a payout transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePayer {
    /// The operator, from its inputs: the members receive their payouts in full.
    #[default]
    Operator,
    /// The members paid in the transaction, pro rata to their payouts.
    Members,
}

impl FeePayer {
    /// `operator` or `members`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeePayer::Operator => "operator",
            FeePayer::Members => "members",
        }
    }
}

impl std::str::FromStr for FeePayer {
    type Err = Error;
    fn from_str(s: &str) -> Result<FeePayer> {
        match s {
            "operator" => Ok(FeePayer::Operator),
            "members" => Ok(FeePayer::Members),
            _ => Err(Error::Parse {
                what: "fee payer (operator or members)",
                input: s.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for FeePayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which balances are paid out when a period is settled
/// ([`super::settle_with_policy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PayoutPolicy {
    minimum_payout: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lightning_below: Option<Amount>,
}

impl PayoutPolicy {
    /// Pays balances of at least `minimum` (and at least the address's dust
    /// limit); smaller ones are carried forward. A minimum of more than 21
    /// million BTC is [`Error::InvalidAmount`].
    pub fn with_minimum_payout(minimum: Amount) -> Result<PayoutPolicy> {
        if minimum > Amount::MAX_MONEY {
            return Err(Error::InvalidAmount {
                what: "minimum payout in satoshis",
                value: rust_decimal::Decimal::from(minimum.to_sat()),
                reason: "more than 21 million BTC",
            });
        }
        Ok(PayoutPolicy {
            minimum_payout: Some(minimum),
            lightning_below: None,
        })
    }

    /// The same policy, paying over Lightning to members who registered a
    /// BOLT12 offer: payouts of less than `threshold`
    /// ([`crate::lightning::split_payouts`]), and, when settling, balances
    /// on-chain cannot pay at all ([`super::Action::Lightning`]; see the
    /// [module docs](self)). Larger payouts, and payouts to members without
    /// an offer, stay on-chain. A threshold of zero sends nothing over
    /// Lightning; more than 21 million BTC is [`Error::InvalidAmount`].
    pub fn with_lightning_below(mut self, threshold: Amount) -> Result<PayoutPolicy> {
        if threshold > Amount::MAX_MONEY {
            return Err(Error::InvalidAmount {
                what: "Lightning threshold in satoshis",
                value: rust_decimal::Decimal::from(threshold.to_sat()),
                reason: "more than 21 million BTC",
            });
        }
        self.lightning_below = Some(threshold);
        Ok(self)
    }

    /// The on-chain threshold: payouts below it go over Lightning to
    /// members with an offer. `None` (or zero): every payout is on-chain
    /// and nothing is paid over Lightning.
    pub fn lightning_below(&self) -> Option<Amount> {
        self.lightning_below
    }

    /// The minimum payout, if any.
    pub fn minimum_payout(&self) -> Option<Amount> {
        self.minimum_payout
    }

    /// Whether `due` to a member reaches the minimum.
    pub(crate) fn reaches_minimum(&self, due: Amount) -> bool {
        self.minimum_payout.is_none_or(|m| due >= m)
    }
}

/// Splits `total` in whole satoshis among `weights` pro rata with the
/// largest remainder rule: each part is `⌊total · w / Σw⌋`, and the
/// satoshis left over go one each to the largest remainders (ties: the
/// earlier weight). The parts add up to `total` exactly. All weights zero
/// (or none) gives all zeros only when `total` is zero; otherwise `None`.
pub fn pro_rata(total: Amount, weights: &[Amount]) -> Option<Vec<Amount>> {
    let total = total.to_sat();
    let sum: u128 = weights.iter().map(|w| u128::from(w.to_sat())).sum();
    if sum == 0 {
        return (total == 0).then(|| vec![Amount::ZERO; weights.len()]);
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for w in weights {
        let exact = u128::from(total) * u128::from(w.to_sat());
        let part = exact / sum;
        given += part;
        parts.push(part as u64);
        remainders.push(exact % sum);
    }
    let left = (u128::from(total) - given) as usize;
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&i, &j| remainders[j].cmp(&remainders[i]).then(i.cmp(&j)));
    for &i in order.iter().take(left) {
        parts[i] += 1;
    }
    Some(parts.into_iter().map(Amount::from_sat).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pro_rata_parts_add_up_exactly() {
        let sats = |v: &[u64]| v.iter().map(|s| Amount::from_sat(*s)).collect::<Vec<_>>();
        let split = |total: u64, weights: &[u64]| pro_rata(Amount::from_sat(total), &sats(weights));
        assert_eq!(split(10, &[1, 1, 1]), Some(sats(&[4, 3, 3])));
        assert_eq!(split(100, &[50, 30, 20]), Some(sats(&[50, 30, 20])));
        assert_eq!(split(7, &[0, 5]), Some(sats(&[0, 7])));
        assert_eq!(split(0, &[]), Some(vec![]));
        assert_eq!(split(1, &[0, 0]), None);
        let parts = split(999_999, &[3, 7, 11, 13, 17]).unwrap();
        assert_eq!(
            parts.iter().copied().sum::<Amount>(),
            Amount::from_sat(999_999)
        );
    }

    #[test]
    fn fee_payers_parse_and_print() {
        for p in [FeePayer::Operator, FeePayer::Members] {
            assert_eq!(p.as_str().parse::<FeePayer>().unwrap(), p);
        }
        assert!("miner".parse::<FeePayer>().is_err());
    }

    #[test]
    fn a_minimum_beyond_all_bitcoin_is_refused() {
        assert!(PayoutPolicy::with_minimum_payout(Amount::MAX_MONEY).is_ok());
        assert!(
            PayoutPolicy::with_minimum_payout(Amount::MAX_MONEY + Amount::from_sat(1)).is_err()
        );
        assert!(PayoutPolicy::default().reaches_minimum(Amount::from_sat(1)));
    }

    #[test]
    fn a_lightning_threshold_keeps_the_minimum() {
        let p = PayoutPolicy::with_minimum_payout(Amount::from_sat(1_000))
            .unwrap()
            .with_lightning_below(Amount::from_sat(20_000))
            .unwrap();
        assert_eq!(p.minimum_payout(), Some(Amount::from_sat(1_000)));
        assert_eq!(p.lightning_below(), Some(Amount::from_sat(20_000)));
        assert_eq!(PayoutPolicy::default().lightning_below(), None);
        assert!(PayoutPolicy::default()
            .with_lightning_below(Amount::MAX_MONEY + Amount::from_sat(1))
            .is_err());
        let json = serde_json::to_string(&PayoutPolicy::default()).unwrap();
        assert_eq!(json, r#"{"minimum_payout":null}"#);
        let back: PayoutPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}

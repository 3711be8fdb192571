//! Reconciliation: which of a settlement's payouts and invoices a
//! transaction pays.
//!
//! [`Settlement::reconcile`] reads a transaction (or its raw hex, as
//! Bitcoin Core's `getrawtransaction` returns it, with
//! [`Settlement::reconcile_hex`]) and matches its outputs by script and
//! amount:
//!
//! * an output to a payout address with the amount the settlement pays it
//!   pays that payout; another amount is [`Problem::PayoutWrongAmount`], a
//!   second output to an address already paid [`Problem::PayoutTwice`];
//! * an output to the operator's address with the amount of an open
//!   invoice pays it (invoices of equal amounts in member order); an
//!   output of an invoice's amount once every invoice of that amount is
//!   paid is [`Problem::InvoiceTwice`]; an output smaller than an open
//!   invoice and equal to none is [`Problem::InvoicePartly`], naming the
//!   invoices it could part-pay (invoices all pay the operator's one
//!   address, so the amount is all that tells them apart);
//! * for a settlement made with the operator's wallet
//!   ([`super::settle_with_wallet`]) each invoice has an address of its
//!   own: an output to it pays that invoice if it pays its amount; less is
//!   [`Problem::InvoicePartly`] naming that one member, more
//!   [`Problem::InvoiceOverpaid`], a second output [`Problem::InvoiceTwice`];
//! * everything else (change, say) is listed in
//!   [`Reconciliation::other_outputs`].
//!
//! Nothing is hidden: every output is either a match, a problem or an
//! other output. A [`Payments`] ledger records the matches of the
//! transactions of one settlement, exactly those, and reports a payout or
//! invoice paid by two transactions.

use std::collections::BTreeMap;

use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};
use serde::{Deserialize, Serialize};

use crate::address::PayoutAddress;
use crate::error::{Error, Result};
use crate::registry::ProsumerId;

use super::batches::Batch;
use super::{Invoice, Settlement};

/// A payout output found in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidPayout {
    /// The address paid.
    pub address: PayoutAddress,
    /// The amount.
    pub amount: Amount,
    /// The output.
    pub outpoint: OutPoint,
}

/// An invoice paid by an output of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidInvoice {
    /// The member who owed it.
    pub prosumer: ProsumerId,
    /// The amount.
    pub amount: Amount,
    /// The output.
    pub outpoint: OutPoint,
}

/// Something in a transaction that does not pay a payout or an invoice
/// exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Problem {
    /// An output to a payout address with another amount than expected.
    PayoutWrongAmount {
        /// The address.
        address: PayoutAddress,
        /// What the settlement pays it.
        expected: Amount,
        /// What the output pays.
        found: Amount,
        /// The output.
        outpoint: OutPoint,
    },
    /// A second output to a payout address already paid.
    PayoutTwice {
        /// The address.
        address: PayoutAddress,
        /// The amount of the second output.
        amount: Amount,
        /// The second output.
        outpoint: OutPoint,
    },
    /// An output to the operator smaller than an open invoice and equal to
    /// none: a partial payment of one of `candidates`.
    InvoicePartly {
        /// The amount paid.
        amount: Amount,
        /// The open invoices larger than it, in member order.
        candidates: Vec<ProsumerId>,
        /// The output.
        outpoint: OutPoint,
    },
    /// An output of an invoice's amount when every invoice of that amount
    /// is already paid: paid twice.
    InvoiceTwice {
        /// The member whose invoice it pays again (the last of that amount).
        prosumer: ProsumerId,
        /// The amount.
        amount: Amount,
        /// The second output.
        outpoint: OutPoint,
    },
    /// An output to an invoice's own address (a settlement made with a
    /// wallet) paying more than the invoice.
    InvoiceOverpaid {
        /// The member whose invoice it pays.
        prosumer: ProsumerId,
        /// The invoice's amount.
        expected: Amount,
        /// What the output pays.
        found: Amount,
        /// The output.
        outpoint: OutPoint,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::PayoutWrongAmount {
                address,
                expected,
                found,
                outpoint,
            } => write!(
                f,
                "output {} pays {} sat to {address}, which is owed {} sat",
                outpoint.vout,
                found.to_sat(),
                expected.to_sat()
            ),
            Problem::PayoutTwice {
                address,
                amount,
                outpoint,
            } => write!(
                f,
                "output {} pays {address} {} sat again",
                outpoint.vout,
                amount.to_sat()
            ),
            Problem::InvoicePartly {
                amount,
                candidates,
                outpoint,
            } => write!(
                f,
                "output {} pays the operator {} sat, part of an invoice of {}",
                outpoint.vout,
                amount.to_sat(),
                candidates
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Problem::InvoiceTwice {
                prosumer,
                amount,
                outpoint,
            } => write!(
                f,
                "output {} pays {prosumer}'s invoice of {} sat again",
                outpoint.vout,
                amount.to_sat()
            ),
            Problem::InvoiceOverpaid {
                prosumer,
                expected,
                found,
                outpoint,
            } => write!(
                f,
                "output {} pays {} sat to {prosumer}'s invoice address, which is owed {} sat",
                outpoint.vout,
                found.to_sat(),
                expected.to_sat()
            ),
        }
    }
}

/// An output that pays neither a payout nor an invoice (change, or a
/// payment to someone else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherOutput {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub amount: Amount,
    /// Its address on the settlement's network, if it has one.
    pub address: Option<String>,
}

/// What one transaction pays of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The settlement's id.
    pub settlement: String,
    /// The transaction.
    pub txid: Txid,
    /// The payouts it pays, in output order.
    pub payouts: Vec<PaidPayout>,
    /// The invoices it pays, in output order.
    pub invoices: Vec<PaidInvoice>,
    /// Outputs that pay a payout or invoice wrongly, partly or twice.
    pub problems: Vec<Problem>,
    /// Outputs that pay neither.
    pub other_outputs: Vec<OtherOutput>,
}

impl Reconciliation {
    /// Whether it found no problem.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Decodes a raw transaction from hex (as `getrawtransaction` returns it);
/// anything else is [`Error::Parse`].
pub fn decode_transaction(hex: &str) -> Result<Transaction> {
    bitcoin::consensus::encode::deserialize_hex::<Transaction>(hex.trim()).map_err(|_| {
        let mut input: String = hex.chars().take(64).collect();
        if hex.chars().count() > 64 {
            input.push('…');
        }
        Error::Parse {
            what: "raw transaction (hex)",
            input,
        }
    })
}

impl Settlement {
    /// What `tx` pays of this settlement, expecting each payout address to
    /// be paid its whole payout ([`Settlement::payout_batch`]), as when the
    /// operator pays the fee. See the [module docs](self).
    pub fn reconcile(&self, tx: &Transaction) -> Reconciliation {
        self.reconcile_expecting(tx, self.payout_batch())
    }

    /// [`Settlement::reconcile`] of a raw transaction in hex.
    pub fn reconcile_hex(&self, hex: &str) -> Result<Reconciliation> {
        Ok(self.reconcile(&decode_transaction(hex)?))
    }

    /// [`Settlement::reconcile`], expecting the output values of
    /// `batches` (which differ from the payouts when the members pay the
    /// fee).
    pub fn reconcile_batches(&self, tx: &Transaction, batches: &[Batch]) -> Reconciliation {
        let expected = batches.iter().flat_map(|b| b.payments()).collect();
        self.reconcile_expecting(tx, expected)
    }

    fn reconcile_expecting(
        &self,
        tx: &Transaction,
        expected: Vec<(PayoutAddress, Amount)>,
    ) -> Reconciliation {
        let txid = tx.compute_txid();
        let payouts: BTreeMap<ScriptBuf, (PayoutAddress, Amount)> = expected
            .into_iter()
            .map(|(a, v)| (a.as_bitcoin().script_pubkey(), (a, v)))
            .collect();
        let operator = self.operator_address.as_bitcoin().script_pubkey();
        let invoices = self.invoices();
        let mut invoice_paid = vec![false; invoices.len()];
        // With a wallet each invoice has an address of its own.
        let own: BTreeMap<ScriptBuf, usize> = invoices
            .iter()
            .enumerate()
            .filter(|(_, inv)| inv.index.is_some())
            .map(|(i, inv)| (inv.address.as_bitcoin().script_pubkey(), i))
            .collect();
        let mut paid_addresses = std::collections::BTreeSet::new();
        let mut r = Reconciliation {
            settlement: self.id.clone(),
            txid,
            payouts: Vec::new(),
            invoices: Vec::new(),
            problems: Vec::new(),
            other_outputs: Vec::new(),
        };
        for (vout, out) in tx.output.iter().enumerate() {
            let outpoint = OutPoint::new(txid, vout as u32);
            let amount = out.value;
            if let Some((address, sats)) = payouts.get(&out.script_pubkey) {
                let address = address.clone();
                if !paid_addresses.insert(out.script_pubkey.clone()) {
                    r.problems.push(Problem::PayoutTwice {
                        address,
                        amount,
                        outpoint,
                    });
                } else if amount == *sats {
                    r.payouts.push(PaidPayout {
                        address,
                        amount,
                        outpoint,
                    });
                } else {
                    r.problems.push(Problem::PayoutWrongAmount {
                        address,
                        expected: *sats,
                        found: amount,
                        outpoint,
                    });
                }
                continue;
            }
            if let Some(&i) = own.get(&out.script_pubkey) {
                if let Some(problem) =
                    match_own_invoice(&invoices[i], &mut invoice_paid[i], amount, outpoint, &mut r)
                {
                    r.problems.push(problem);
                }
                continue;
            }
            if own.is_empty() && out.script_pubkey == operator {
                if let Some(problem) =
                    match_invoice(&invoices, &mut invoice_paid, amount, outpoint, &mut r)
                {
                    r.problems.push(problem);
                }
                continue;
            }
            r.other_outputs.push(OtherOutput {
                outpoint,
                amount,
                address: bitcoin::Address::from_script(
                    &out.script_pubkey,
                    self.network.to_bitcoin(),
                )
                .ok()
                .map(|a| a.to_string()),
            });
        }
        r
    }

    /// Records `tx` as the transaction that paid the batch
    /// ([`Settlement::mark_paid`]) after checking that it pays it: every
    /// payout address its whole payout when `batches` is empty, or the
    /// output values of the one batch given (when the members pay the
    /// fee). A settlement paid in several transactions is recorded with a
    /// [`Payments`] ledger instead: more than one batch is
    /// [`Error::TransactionMismatch`], as is a transaction that does not
    /// pay every output exactly once with its amount.
    pub fn mark_paid_by(&mut self, tx: &Transaction, batches: &[Batch]) -> Result<()> {
        self.check_paid_by(tx, batches)?;
        self.mark_paid_txid(tx.compute_txid())
    }

    /// The check of [`Settlement::mark_paid_by`] alone: that `tx` pays the
    /// batch (all of it, or the one batch given), whether or not the
    /// settlement is already marked paid or voided.
    pub fn check_paid_by(&self, tx: &Transaction, batches: &[Batch]) -> Result<()> {
        let txid = tx.compute_txid();
        let mismatch = |reason: String| Error::TransactionMismatch {
            txid: txid.to_string(),
            reason,
        };
        let expected = match batches {
            [] => self.payout_batch(),
            [batch] => {
                let paid: Vec<(PayoutAddress, Amount)> = batch
                    .outputs
                    .iter()
                    .map(|o| (o.address.clone(), o.payout))
                    .collect();
                if paid != self.payout_batch() {
                    return Err(mismatch(
                        "the batch given is not this settlement's whole payout batch".into(),
                    ));
                }
                batch.payments()
            }
            more => {
                return Err(mismatch(format!(
                    "the settlement is paid in {} transactions: record them in a Payments ledger",
                    more.len()
                )))
            }
        };
        let count = expected.len();
        let r = self.reconcile_expecting(tx, expected);
        if let Some(p) = r.problems.iter().find(|p| {
            matches!(
                p,
                Problem::PayoutWrongAmount { .. } | Problem::PayoutTwice { .. }
            )
        }) {
            return Err(mismatch(p.to_string()));
        }
        if r.payouts.len() != count {
            return Err(mismatch(format!(
                "it pays {} of the batch's {count} outputs",
                r.payouts.len()
            )));
        }
        Ok(())
    }
}

/// Matches an output to an invoice's own address: its amount pays it
/// once; a second output is [`Problem::InvoiceTwice`], less
/// [`Problem::InvoicePartly`], more [`Problem::InvoiceOverpaid`].
fn match_own_invoice(
    invoice: &Invoice,
    paid: &mut bool,
    amount: Amount,
    outpoint: OutPoint,
    r: &mut Reconciliation,
) -> Option<Problem> {
    let prosumer = invoice.prosumer.clone();
    let expected = invoice.sats;
    if *paid {
        return Some(Problem::InvoiceTwice {
            prosumer,
            amount,
            outpoint,
        });
    }
    if amount < expected {
        return Some(Problem::InvoicePartly {
            amount,
            candidates: vec![prosumer],
            outpoint,
        });
    }
    *paid = true;
    if amount > expected {
        return Some(Problem::InvoiceOverpaid {
            prosumer,
            expected,
            found: amount,
            outpoint,
        });
    }
    r.invoices.push(PaidInvoice {
        prosumer,
        amount,
        outpoint,
    });
    None
}

/// Matches an output of `amount` to the operator against the invoices:
/// marks and records the first open invoice of that amount, or returns the
/// problem (paid twice, or partly). An amount above every open invoice
/// and equal to none is an other output.
fn match_invoice(
    invoices: &[Invoice],
    paid: &mut [bool],
    amount: Amount,
    outpoint: OutPoint,
    r: &mut Reconciliation,
) -> Option<Problem> {
    let sats = amount;
    if let Some(i) = (0..invoices.len()).find(|&i| !paid[i] && invoices[i].sats == sats) {
        paid[i] = true;
        r.invoices.push(PaidInvoice {
            prosumer: invoices[i].prosumer.clone(),
            amount,
            outpoint,
        });
        return None;
    }
    if let Some(last) = invoices.iter().rev().find(|inv| inv.sats == sats) {
        return Some(Problem::InvoiceTwice {
            prosumer: last.prosumer.clone(),
            amount,
            outpoint,
        });
    }
    let candidates: Vec<ProsumerId> = invoices
        .iter()
        .zip(paid.iter())
        .filter(|(inv, done)| !**done && inv.sats > sats)
        .map(|(inv, _)| inv.prosumer.clone())
        .collect();
    if candidates.is_empty() {
        r.other_outputs.push(OtherOutput {
            outpoint,
            amount,
            address: None,
        });
        return None;
    }
    Some(Problem::InvoicePartly {
        amount,
        candidates,
        outpoint,
    })
}

/// Which payouts and invoices of one settlement are paid, by which
/// outputs, over all the transactions recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payments {
    /// The settlement's id.
    pub settlement: String,
    /// The output that paid each payout address.
    pub payouts: BTreeMap<String, OutPoint>,
    /// The output that paid each member's invoice.
    pub invoices: BTreeMap<ProsumerId, OutPoint>,
}

/// A payout or invoice that a recorded transaction pays again, after
/// another output paid it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidAgain {
    /// The payout address or the member.
    pub what: String,
    /// The output recorded first.
    pub first: OutPoint,
    /// The output that pays it again.
    pub again: OutPoint,
}

impl Payments {
    /// An empty ledger for `settlement`.
    pub fn new(settlement: &Settlement) -> Payments {
        Payments {
            settlement: settlement.id.clone(),
            payouts: BTreeMap::new(),
            invoices: BTreeMap::new(),
        }
    }

    /// Marks exactly the payouts and invoices `r` found paid; recording a
    /// transaction again changes nothing. Returns what it pays that
    /// another output paid before (those are not marked again). A
    /// reconciliation of another settlement is [`Error::ShapeMismatch`].
    pub fn record(&mut self, r: &Reconciliation) -> Result<Vec<PaidAgain>> {
        if r.settlement != self.settlement {
            return Err(Error::ShapeMismatch(format!(
                "the reconciliation of transaction {} is of settlement {}, the ledger of {}",
                r.txid, r.settlement, self.settlement
            )));
        }
        let mut again = Vec::new();
        let paid_payouts = r
            .payouts
            .iter()
            .map(|p| (p.address.to_string(), p.outpoint));
        for (key, outpoint) in paid_payouts {
            let first = *self.payouts.entry(key.clone()).or_insert(outpoint);
            if first != outpoint {
                again.push(PaidAgain {
                    what: key,
                    first,
                    again: outpoint,
                });
            }
        }
        for p in &r.invoices {
            let first = *self
                .invoices
                .entry(p.prosumer.clone())
                .or_insert(p.outpoint);
            if first != p.outpoint {
                again.push(PaidAgain {
                    what: p.prosumer.to_string(),
                    first,
                    again: p.outpoint,
                });
            }
        }
        Ok(again)
    }

    /// The payout outputs not yet paid.
    pub fn open_payouts(&self, settlement: &Settlement) -> Vec<(PayoutAddress, Amount)> {
        settlement
            .payout_batch()
            .into_iter()
            .filter(|(a, _)| !self.payouts.contains_key(a.as_str()))
            .collect()
    }

    /// The invoices not yet paid.
    pub fn open_invoices(&self, settlement: &Settlement) -> Vec<Invoice> {
        settlement
            .invoices()
            .into_iter()
            .filter(|i| !self.invoices.contains_key(&i.prosumer))
            .collect()
    }

    /// Whether every payout and invoice of `settlement` is paid.
    pub fn is_complete(&self, settlement: &Settlement) -> bool {
        self.open_payouts(settlement).is_empty() && self.open_invoices(settlement).is_empty()
    }
}

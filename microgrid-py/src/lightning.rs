//! Lightning for small amounts: checking BOLT12 offers and BOLT11
//! invoices, splitting a settlement's payouts into on-chain and Lightning
//! ones (`Grid.lightning_split`), and invoice URIs with a `lightning=`
//! BOLT11 invoice.

use chrono::{DateTime, Utc};
use microgrid_core::lightning::{self as ln, PayoutOffer, PayoutSplit};
use microgrid_core::settlement::bitcoin::Amount;
use microgrid_core::settlement::{Batch, BatchOptions, PayoutPolicy, Settlement as CoreSettlement};
use microgrid_core::{Network, Registry};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::conversions::{arg, integer, network, opt_arg, prosumer_id, text, utc};
use crate::errors::{Error, Result};
use crate::settlement::Settlement;

type Any<'py> = Bound<'py, PyAny>;

/// `at` as given, or now.
fn at_or_now(at: Option<&Any<'_>>) -> Result<DateTime<Utc>> {
    Ok(opt_arg("at", at, utc)?.unwrap_or_else(Utc::now))
}

fn network_or_regtest(value: Option<&Any<'_>>) -> Result<Network> {
    Ok(opt_arg("network", value, network)?.unwrap_or(Network::Regtest))
}

/// A member's BOLT12 offer for payouts, checked for `network` at `at`
/// (now if not given): for example `Grid.register(..., offer=...)` checks
/// it the same way.
pub(crate) fn payout_offer(
    offer: &Any<'_>,
    network: Network,
    at: DateTime<Utc>,
) -> Result<PayoutOffer> {
    arg("offer", offer, |v| {
        Ok(PayoutOffer::parse(&text(v)?, network, at)?)
    })
}

/// Checks a BOLT12 offer as a payout destination on `network` (default
/// regtest) at `at` (a timezone-aware datetime; default now): it must
/// parse, ask for no amount and no quantity, be for the network and not
/// have expired. Returns a dict with offer (the canonical text),
/// description, issuer and expires_at (or None). Anything else is a
/// `ValidationError` of kind `invalid_offer`.
#[pyfunction]
#[pyo3(
    signature = (offer, *, network = None, at = None),
    text_signature = "(offer, *, network='regtest', at=None)"
)]
pub fn check_offer<'py>(
    py: Python<'py>,
    offer: &Any<'py>,
    network: Option<&Any<'py>>,
    at: Option<&Any<'py>>,
) -> Result<Bound<'py, PyDict>> {
    let net = network_or_regtest(network)?;
    let at = at_or_now(at)?;
    let o = payout_offer(offer, net, at)?;
    let d = PyDict::new(py);
    d.set_item("offer", o.as_str())?;
    d.set_item("description", o.description())?;
    d.set_item("issuer", o.issuer())?;
    d.set_item("expires_at", o.expires_at())?;
    Ok(d)
}

/// Checks a BOLT11 invoice from the operator's node for a payment of
/// `sats` on `network` (default regtest) at `at` (default now): a valid
/// signature, the network, exactly `sats` × 1000 msat if it names an
/// amount, not expired. Returns a dict with invoice (canonical, lower
/// case), amount_msat (or None), payment_hash and expires_at. Anything
/// else is a `SettlementError` of kind `invalid_lightning_invoice`.
#[pyfunction]
#[pyo3(
    signature = (invoice, *, sats, network = None, at = None),
    text_signature = "(invoice, *, sats, network='regtest', at=None)"
)]
pub fn check_bolt11<'py>(
    py: Python<'py>,
    invoice: &Any<'py>,
    sats: &Any<'py>,
    network: Option<&Any<'py>>,
    at: Option<&Any<'py>>,
) -> Result<Bound<'py, PyDict>> {
    let net = network_or_regtest(network)?;
    let at = at_or_now(at)?;
    let sats = arg("sats", sats, integer::<u64>)?;
    let checked = arg("invoice", invoice, |v| {
        Ok(ln::check_bolt11(&text(v)?, net, sats, at)?)
    })?;
    let d = PyDict::new(py);
    d.set_item("invoice", checked.to_string())?;
    d.set_item("amount_msat", checked.amount_milli_satoshis())?;
    d.set_item("payment_hash", checked.payment_hash().to_string())?;
    let expires = checked
        .expires_at()
        .and_then(|e| DateTime::from_timestamp(i64::try_from(e.as_secs()).ok()?, 0));
    d.set_item("expires_at", expires)?;
    Ok(d)
}

/// The BIP21 URI of `settlement`'s invoice to `prosumer` with a BOLT11
/// invoice from the operator's node in its `lightning=` parameter, checked
/// like `check_bolt11` against the settlement's network, the invoice's
/// amount and `at` (default now). `Settlement.parse_uri` reads it back
/// (`other["lightning"]`). A member without an invoice in the settlement
/// is a `NotFoundError`.
#[pyfunction]
#[pyo3(
    signature = (settlement, prosumer, bolt11, *, at = None),
    text_signature = "(settlement, prosumer, bolt11, *, at=None)"
)]
pub fn invoice_uri_with_lightning(
    settlement: PyRef<'_, Settlement>,
    prosumer: &Any<'_>,
    bolt11: &Any<'_>,
    at: Option<&Any<'_>>,
) -> Result<String> {
    let id = arg("prosumer", prosumer, prosumer_id)?;
    let at = at_or_now(at)?;
    let bolt11 = arg("bolt11", bolt11, text)?;
    let s = &settlement.inner;
    let invoice = s
        .invoices()
        .into_iter()
        .find(|i| i.prosumer == id)
        .ok_or_else(|| {
            Error::from(microgrid_core::Error::UnknownProsumer(id.to_string()))
                .in_argument("prosumer")
        })?;
    ln::invoice_uri_with_lightning(s, &invoice, &bolt11, at)
        .map_err(|e| Error::from(e).in_argument("bolt11"))
}

/// The options of `Grid.lightning_split`'s on-chain batches.
pub(crate) struct SplitOptions {
    pub lightning_below: Amount,
    pub at: DateTime<Utc>,
    pub batches: Option<BatchOptions>,
}

/// Reads the arguments of `Grid.lightning_split`.
pub(crate) fn split_options(
    lightning_below_sats: &Any<'_>,
    at: Option<&Any<'_>>,
    sat_per_vb: Option<&Any<'_>>,
    max_vbytes: Option<&Any<'_>>,
    fee_payer: Option<&Any<'_>>,
) -> Result<SplitOptions> {
    let below = arg("lightning_below_sats", lightning_below_sats, integer::<u64>)?;
    let at = at_or_now(at)?;
    // The change address is the settlement's: the network is not needed.
    let batches = sat_per_vb
        .map(|rate| {
            crate::settlement::batch_options(
                microgrid_core::Network::Regtest,
                rate,
                max_vbytes,
                fee_payer,
                None,
            )
        })
        .transpose()?;
    Ok(SplitOptions {
        lightning_below: Amount::from_sat(below),
        at,
        batches,
    })
}

/// The split of `settlement`'s payouts as a dict (see
/// `Grid.lightning_split`).
pub(crate) fn split_dict<'py>(
    py: Python<'py>,
    registry: &Registry,
    settlement: &CoreSettlement,
    options: &SplitOptions,
) -> Result<Bound<'py, PyDict>> {
    let policy = PayoutPolicy::default()
        .with_lightning_below(options.lightning_below)
        .map_err(|e| Error::from(e).in_argument("lightning_below_sats"))?;
    let split = ln::split_payouts(settlement, registry, &policy, options.at)?;
    let d = PyDict::new(py);
    d.set_item("settlement_id", &split.settlement_id)?;
    let onchain = split
        .onchain
        .iter()
        .map(|p| {
            let o = PyDict::new(py);
            o.set_item("prosumer", p.prosumer.as_str())?;
            o.set_item("address", p.address.as_str())?;
            o.set_item("sats", p.amount.to_sat())?;
            Ok(o)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("onchain", onchain)?;
    let lightning = split
        .lightning
        .iter()
        .map(|p| {
            let o = PyDict::new(py);
            o.set_item("prosumer", p.prosumer.as_str())?;
            o.set_item("offer", p.offer.as_str())?;
            o.set_item("amount_msat", p.amount_msat)?;
            o.set_item("payer_note", &p.payer_note)?;
            Ok(o)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("lightning", lightning)?;
    let not_used = split
        .offers_not_used
        .iter()
        .map(|n| {
            let o = PyDict::new(py);
            o.set_item("prosumer", n.prosumer.as_str())?;
            o.set_item("reason", &n.reason)?;
            Ok(o)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("offers_not_used", not_used)?;
    d.set_item("onchain_sats", split.onchain_total().to_sat())?;
    d.set_item("lightning_msat", split.lightning_total_msat())?;
    if let Some(o) = &options.batches {
        d.set_item("batches", batches(py, &split, settlement, o)?)?;
    }
    Ok(d)
}

/// The on-chain part's batches as dicts (as `Settlement.batches` gives them).
fn batches<'py>(
    py: Python<'py>,
    split: &PayoutSplit,
    settlement: &CoreSettlement,
    options: &BatchOptions,
) -> Result<Vec<Bound<'py, PyDict>>> {
    let batches: Vec<Batch> = split.onchain_batches(settlement, options)?;
    Ok(batches
        .iter()
        .map(|b| crate::settlement::batch_dict(py, b))
        .collect::<PyResult<Vec<_>>>()?)
}

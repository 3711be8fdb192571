//! `microgrid.Settlement`: a settled period and the outputs bitcoin
//! software takes as they are.

use microgrid_core::settlement::bitcoin::{Amount, OutPoint};
use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::reconcile::{decode_transaction, Problem, Reconciliation};
use microgrid_core::settlement::{
    bip21, Action, Batch, BatchOptions, FeePayer, Keychain, OperatorWallet as CoreWallet,
    Settlement as CoreSettlement, WalletUtxo,
};
use microgrid_core::PayoutAddress;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rust_decimal::Decimal;

use crate::conversions::{arg, decimal, integer, opt_arg, text};
use crate::errors::{Error, Result};

/// A fee rate in sat/vB from argument `sat_per_vb`: an exact decimal
/// (`decimal.Decimal`, `int` or `str`, up to 3 decimals), 0.1 to 10,000.
fn fee_rate(value: &Bound<'_, PyAny>) -> Result<FeeRate> {
    arg("sat_per_vb", value, |v| {
        Ok(FeeRate::from_sat_per_vb_decimal(decimal(v)?)?)
    })
}

/// The batch options from the keywords of `batches` and friends.
pub(crate) fn batch_options(
    network: microgrid_core::Network,
    sat_per_vb: &Bound<'_, PyAny>,
    max_vbytes: Option<&Bound<'_, PyAny>>,
    fee_payer: Option<&Bound<'_, PyAny>>,
    change_address: Option<&Bound<'_, PyAny>>,
) -> Result<BatchOptions> {
    let mut options = BatchOptions::new(fee_rate(sat_per_vb)?);
    if let Some(cap) = opt_arg("max_vbytes", max_vbytes, integer::<u64>)? {
        options = options
            .max_vbytes(cap)
            .map_err(|e| Error::from(e).in_argument("max_vbytes"))?;
    }
    if let Some(payer) = opt_arg(
        "fee_payer",
        fee_payer,
        |v| Ok(text(v)?.parse::<FeePayer>()?),
    )? {
        options = options.fee_payer(payer);
    }
    if let Some(change) = opt_arg("change_address", change_address, |v| {
        Ok(PayoutAddress::new(&text(v)?, network)?)
    })? {
        options = options.change(change);
    }
    Ok(options)
}

/// The UTXOs of argument `utxos`.
fn utxos(value: &Bound<'_, PyAny>, network: microgrid_core::Network) -> Result<Vec<Utxo>> {
    arg("utxos", value, |list| {
        if list.is_instance_of::<pyo3::types::PyString>() {
            return Err(Error::wrong_type(list, "a list of UTXO tuples"));
        }
        list.try_iter()
            .map_err(|_| Error::wrong_type(list, "a list of UTXO tuples"))?
            .enumerate()
            .map(|(i, u)| utxo(&u?, network).map_err(|e| e.at_row(i)))
            .collect::<Result<Vec<_>>>()
    })
}

/// A batch as a dict.
pub(crate) fn batch_dict<'py>(py: Python<'py>, b: &Batch) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", b.index)?;
    d.set_item("vbytes", b.vbytes)?;
    d.set_item("weight", b.weight.to_wu())?;
    d.set_item("fee_sats", b.fee.to_sat())?;
    d.set_item("fee_payer", b.fee_payer.as_str())?;
    d.set_item("sat_per_vb", b.feerate.sat_per_vb_decimal())?;
    d.set_item("payouts_sats", b.payouts_total().to_sat())?;
    d.set_item("outputs_sats", b.outputs_total().to_sat())?;
    let outputs = b
        .outputs
        .iter()
        .map(|o| {
            let od = PyDict::new(py);
            od.set_item("address", o.address.as_str())?;
            od.set_item("payout_sats", o.payout.to_sat())?;
            od.set_item("fee_share_sats", o.fee_share.to_sat())?;
            od.set_item("sats", o.amount.to_sat())?;
            Ok(od)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("outputs", outputs)?;
    let sendmany = PyDict::new(py);
    for o in &b.outputs {
        sendmany.set_item(o.address.as_str(), btc(o.amount.to_sat()))?;
    }
    d.set_item("sendmany", sendmany)?;
    d.set_item("sendmany_json", b.sendmany_json())?;
    Ok(d)
}

/// A reconciliation as a dict.
fn reconciliation_dict<'py>(py: Python<'py>, r: &Reconciliation) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("txid", r.txid.to_string())?;
    let payouts = r
        .payouts
        .iter()
        .map(|p| {
            let x = PyDict::new(py);
            x.set_item("address", p.address.as_str())?;
            x.set_item("sats", p.amount.to_sat())?;
            x.set_item("vout", p.outpoint.vout)?;
            Ok(x)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("payouts", payouts)?;
    let invoices = r
        .invoices
        .iter()
        .map(|i| {
            let x = PyDict::new(py);
            x.set_item("prosumer_id", i.prosumer.as_str())?;
            x.set_item("sats", i.amount.to_sat())?;
            x.set_item("vout", i.outpoint.vout)?;
            Ok(x)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("invoices", invoices)?;
    let problems = r
        .problems
        .iter()
        .map(|p| {
            let x = PyDict::new(py);
            x.set_item("message", p.to_string())?;
            match p {
                Problem::PayoutWrongAmount {
                    address,
                    expected,
                    found,
                    outpoint,
                } => {
                    x.set_item("kind", "payout_wrong_amount")?;
                    x.set_item("address", address.as_str())?;
                    x.set_item("expected_sats", expected.to_sat())?;
                    x.set_item("sats", found.to_sat())?;
                    x.set_item("vout", outpoint.vout)?;
                }
                Problem::PayoutTwice {
                    address,
                    amount,
                    outpoint,
                } => {
                    x.set_item("kind", "payout_twice")?;
                    x.set_item("address", address.as_str())?;
                    x.set_item("sats", amount.to_sat())?;
                    x.set_item("vout", outpoint.vout)?;
                }
                Problem::InvoicePartly {
                    amount,
                    candidates,
                    outpoint,
                } => {
                    x.set_item("kind", "invoice_partly")?;
                    x.set_item(
                        "candidates",
                        candidates.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                    )?;
                    x.set_item("sats", amount.to_sat())?;
                    x.set_item("vout", outpoint.vout)?;
                }
                Problem::InvoiceTwice {
                    prosumer,
                    amount,
                    outpoint,
                } => {
                    x.set_item("kind", "invoice_twice")?;
                    x.set_item("prosumer_id", prosumer.as_str())?;
                    x.set_item("sats", amount.to_sat())?;
                    x.set_item("vout", outpoint.vout)?;
                }
                Problem::InvoiceOverpaid {
                    prosumer,
                    expected,
                    found,
                    outpoint,
                } => {
                    x.set_item("kind", "invoice_overpaid")?;
                    x.set_item("prosumer_id", prosumer.as_str())?;
                    x.set_item("expected_sats", expected.to_sat())?;
                    x.set_item("sats", found.to_sat())?;
                    x.set_item("vout", outpoint.vout)?;
                }
            }
            Ok(x)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("problems", problems)?;
    let others = r
        .other_outputs
        .iter()
        .map(|o| {
            let x = PyDict::new(py);
            x.set_item("address", o.address.clone())?;
            x.set_item("sats", o.amount.to_sat())?;
            x.set_item("vout", o.outpoint.vout)?;
            Ok(x)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("other_outputs", others)?;
    Ok(d)
}

/// One UTXO: a `(txid:vout, value_sats, address)` sequence.
fn utxo(value: &Bound<'_, PyAny>, network: microgrid_core::Network) -> Result<Utxo> {
    let expected = "a (txid:vout, value_sats, address) tuple";
    if value.is_instance_of::<pyo3::types::PyString>() {
        return Err(Error::wrong_type(value, expected));
    }
    let items: Vec<Bound<'_, PyAny>> = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, expected))?
        .collect::<PyResult<_>>()?;
    let [outpoint, value_sats, address] = items.as_slice() else {
        return Err(Error::invalid(
            "shape_mismatch",
            format!("expected {expected}, got {} items", items.len()),
        ));
    };
    Ok(Utxo::new(
        arg("outpoint", outpoint, outpoint_of)?,
        Amount::from_sat(arg("value_sats", value_sats, integer::<u64>)?),
        PayoutAddress::new(&arg("address", address, text)?, network)
            .map_err(|e| Error::from(e).in_argument("address"))?,
    ))
}

/// An outpoint from its `txid:vout` text.
fn outpoint_of(v: &Bound<'_, PyAny>) -> Result<OutPoint> {
    let t = text(v)?;
    t.parse::<OutPoint>().map_err(|e| {
        Error::from(microgrid_core::Error::Parse {
            what: "outpoint (txid:vout)",
            input: format!("{t} ({e})"),
        })
    })
}

/// A wallet UTXO from a `(txid:vout, value_sats, keychain, index)` tuple.
fn wallet_utxo(value: &Bound<'_, PyAny>) -> Result<WalletUtxo> {
    let expected = "a (txid:vout, value_sats, keychain, index) tuple";
    if value.is_instance_of::<pyo3::types::PyString>() {
        return Err(Error::wrong_type(value, expected));
    }
    let items: Vec<Bound<'_, PyAny>> = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, expected))?
        .collect::<PyResult<_>>()?;
    let [outpoint, value_sats, keychain, index] = items.as_slice() else {
        return Err(Error::invalid(
            "shape_mismatch",
            format!("expected {expected}, got {} items", items.len()),
        ));
    };
    let outpoint = arg("outpoint", outpoint, outpoint_of)?;
    let keychain = arg("keychain", keychain, |v| match text(v)?.as_str() {
        "receive" => Ok(Keychain::Receive),
        "change" => Ok(Keychain::Change),
        other => Err(Error::invalid(
            "invalid_keychain",
            format!("keychain {other:?}: expected \"receive\" or \"change\""),
        )),
    })?;
    Ok(WalletUtxo {
        outpoint,
        value: Amount::from_sat(arg("value_sats", value_sats, integer::<u64>)?),
        keychain,
        index: arg("index", index, integer::<u32>)?,
    })
}

/// The operator's wallet: a public output descriptor (BIP380) with its
/// change chain, for one network. `OperatorWallet(descriptor,
/// change_descriptor=None, network="regtest")`: a multipath `<0;1>`
/// descriptor, or a receive one (`.../0/*`) with an optional change one
/// (default: `.../1/*`). Private keys, descriptors without `/*`,
/// hardened wildcards, keys of another network and script types other
/// than `wpkh` and key-path `tr` are a `ValidationError` of kind
/// `invalid_descriptor`.
#[pyclass(module = "microgrid", frozen)]
pub struct OperatorWallet {
    pub inner: CoreWallet,
}

#[pymethods]
impl OperatorWallet {
    #[new]
    #[pyo3(signature = (descriptor, change_descriptor = None, network = None))]
    fn new(
        descriptor: &Bound<'_, PyAny>,
        change_descriptor: Option<&Bound<'_, PyAny>>,
        network: Option<&Bound<'_, PyAny>>,
    ) -> Result<OperatorWallet> {
        let d = arg("descriptor", descriptor, text)?;
        let c = opt_arg("change_descriptor", change_descriptor, text)?;
        let net = opt_arg("network", network, |v| {
            Ok(text(v)?.parse::<microgrid_core::Network>()?)
        })?
        .unwrap_or(microgrid_core::Network::Regtest);
        let inner = CoreWallet::new(&d, c.as_deref(), net).map_err(|e| {
            let argument = match &e {
                microgrid_core::Error::InvalidDescriptor { descriptor, .. }
                    if c.as_deref()
                        .is_some_and(|c| descriptor.starts_with(c.trim())) =>
                {
                    "change_descriptor"
                }
                _ => "descriptor",
            };
            Error::from(e).in_argument(argument)
        })?;
        Ok(OperatorWallet { inner })
    }

    /// Its identity: the checksum of its receive descriptor.
    #[getter]
    fn id(&self) -> String {
        self.inner.id()
    }

    /// The receive descriptor with its checksum.
    #[getter]
    fn descriptor(&self) -> String {
        self.inner.descriptor()
    }

    /// The change descriptor with its checksum.
    #[getter]
    fn change_descriptor(&self) -> String {
        self.inner.change_descriptor()
    }

    /// The network.
    #[getter]
    fn network(&self) -> String {
        self.inner.network().to_string()
    }

    /// The receive address at `index`.
    fn receive_address(&self, index: &Bound<'_, PyAny>) -> Result<String> {
        let i = arg("index", index, integer::<u32>)?;
        Ok(self.inner.receive_address(i)?.to_string())
    }

    /// The change address at `index`.
    fn change_address(&self, index: &Bound<'_, PyAny>) -> Result<String> {
        let i = arg("index", index, integer::<u32>)?;
        Ok(self.inner.change_address(i)?.to_string())
    }

    fn __repr__(&self) -> String {
        format!("OperatorWallet({:?})", self.inner.descriptor())
    }
}

/// A settlement in bitcoin of one billing period.
#[pyclass(module = "microgrid", frozen)]
pub struct Settlement {
    pub inner: CoreSettlement,
}

fn btc(sats: u64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(sats), 8)
}

#[pymethods]
impl Settlement {
    /// Stable id, derived from the inputs.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// SHA-256 of the canonical JSON.
    #[getter]
    fn content_hash(&self) -> String {
        self.inner.content_hash()
    }

    /// The transaction that paid it, once marked paid.
    #[getter]
    fn paid_txid(&self) -> Option<String> {
        self.inner.paid_by().map(|t| t.to_string())
    }

    /// Why it was voided (`None` while it stands).
    #[getter]
    fn void_reason(&self) -> Option<String> {
        self.inner.voided().map(|v| v.reason.clone())
    }

    /// The network it pays on.
    #[getter]
    fn network(&self) -> String {
        self.inner.network().to_string()
    }

    /// The grid leg in satoshis.
    #[getter]
    fn grid_sats(&self) -> i64 {
        self.inner.grid_amount().to_sat()
    }

    /// What the operator keeps, in satoshis.
    #[getter]
    fn operator_sats(&self) -> i64 {
        self.inner.operator_amount().to_sat()
    }

    /// The canonical JSON (sorted keys, decimals as strings).
    fn canonical_json(&self) -> String {
        self.inner.canonical_json()
    }

    /// Whether payouts, invoices, balances, grid and operator add up to
    /// zero satoshis.
    fn is_conserved(&self) -> bool {
        self.inner.is_conserved()
    }

    /// Checks it: its id is the hash of its inputs, every due and the
    /// members' order hold, and the satoshis are conserved; a
    /// `SettlementError` (kind `invalid_settlement`) names what does not.
    fn verify(&self) -> Result<()> {
        Ok(self.inner.verify()?)
    }

    /// The outputs object of Bitcoin Core's `sendmany` /
    /// `walletcreatefundedpsbt`: address → BTC as `decimal.Decimal`.
    fn sendmany<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut merged: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for (address, sats) in self.inner.payouts() {
            *merged.entry(address.as_str().to_owned()).or_default() += sats.to_sat();
        }
        let d = PyDict::new(py);
        for (address, sats) in merged {
            d.set_item(address, btc(sats))?;
        }
        Ok(d)
    }

    /// The same outputs object as JSON text, exact to the satoshi.
    fn sendmany_json(&self) -> String {
        self.inner.sendmany_json()
    }

    /// One dict per member: prosumer_id, bill_total, bill_sats,
    /// carried_in_sats, due_sats, action (`nothing`, `payout`, `invoice`,
    /// `carry` or `lightning`), sats, address (of a payout), offer (the
    /// BOLT12 offer of a `lightning` action, else None), carried_out_sats.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .entries()
            .iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("prosumer_id", e.prosumer.as_str())?;
                d.set_item("bill_total", e.bill_total)?;
                d.set_item("bill_sats", e.bill_sats.to_sat())?;
                d.set_item("carried_in_sats", e.carried_in.to_sat())?;
                d.set_item("due_sats", e.due.to_sat())?;
                let offer = match &e.action {
                    Action::Lightning { offer, .. } => Some(offer.as_str()),
                    _ => None,
                };
                let (action, sats, address) = match &e.action {
                    Action::Nothing => ("nothing", 0, None),
                    Action::Lightning { sats, .. } => ("lightning", sats.to_sat(), None),
                    Action::Payout { address, sats } => {
                        ("payout", sats.to_sat(), Some(address.as_str().to_owned()))
                    }
                    Action::Invoice { sats } => ("invoice", sats.to_sat(), None),
                    Action::Carry { .. } => ("carry", 0, None),
                };
                d.set_item("action", action)?;
                d.set_item("sats", sats)?;
                d.set_item("address", address)?;
                d.set_item("offer", offer)?;
                d.set_item("carried_out_sats", e.carried_out.to_sat())?;
                Ok(d)
            })
            .collect()
    }

    /// The Lightning payouts the settlement decided (balances on-chain
    /// could not pay, settled with `lightning_below_sats`), as dicts:
    /// prosumer_id, offer, sats. `Grid.lightning_split` lists them too.
    fn lightning_payouts<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .lightning_payouts()
            .into_iter()
            .map(|(prosumer, offer, sats)| {
                let d = PyDict::new(py);
                d.set_item("prosumer_id", prosumer.as_str())?;
                d.set_item("offer", offer.as_str())?;
                d.set_item("sats", sats.to_sat())?;
                Ok(d)
            })
            .collect()
    }

    /// Invoices as dicts: prosumer_id, sats, uri (BIP21), address and
    /// index (its receive index for a settlement made with a wallet, else
    /// None).
    fn invoices<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .invoices()
            .into_iter()
            .map(|i| {
                let d = PyDict::new(py);
                d.set_item("prosumer_id", i.prosumer.as_str())?;
                d.set_item("sats", i.sats.to_sat())?;
                d.set_item("uri", i.uri)?;
                d.set_item("address", i.address.as_str())?;
                d.set_item("index", i.index)?;
                Ok(d)
            })
            .collect()
    }

    /// For a settlement made with a wallet (`Grid.settle_with_wallet`),
    /// what it records of it: a dict with wallet (its id), descriptor,
    /// change_descriptor, first_index, next_index, first_change_index and
    /// next_change_index; otherwise None.
    #[getter]
    fn wallet<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(r) = &self.inner.wallet() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("wallet", r.wallet.as_str())?;
        d.set_item("descriptor", r.descriptor.as_str())?;
        d.set_item("change_descriptor", r.change_descriptor.as_str())?;
        d.set_item("first_index", r.first_index)?;
        d.set_item("next_index", r.next_index)?;
        d.set_item("first_change_index", r.first_change_index)?;
        d.set_item("next_change_index", r.next_change_index)?;
        Ok(Some(d))
    }

    /// An unsigned PSBT for batch `index` of `batches(sat_per_vb, ...)`,
    /// paid from the wallet's `utxos` (a list of `(txid:vout, value_sats,
    /// keychain, index)`, keychain `"receive"` or `"change"`) with change
    /// to the batch's index on the wallet's change chain. Its inputs carry
    /// `witness_utxo` and their BIP32 origin, as does its change output
    /// (`bip32_derivation` for wpkh, `tap_key_origins` and
    /// `tap_internal_key` for tr), so `walletprocesspsbt` or a hardware
    /// wallet signs it as it is. A dict with psbt (base64), fee_sats,
    /// change_sats, change_address, change_index, vbytes. A settlement
    /// not made with `wallet` is a `ValidationError` of kind
    /// `invalid_descriptor`.
    #[pyo3(signature = (wallet, index, utxos, sat_per_vb, *, max_vbytes = None, fee_payer = None))]
    #[allow(clippy::too_many_arguments)]
    fn wallet_psbt<'py>(
        &self,
        py: Python<'py>,
        wallet: PyRef<'py, OperatorWallet>,
        index: &Bound<'py, PyAny>,
        utxos: &Bound<'py, PyAny>,
        sat_per_vb: &Bound<'py, PyAny>,
        max_vbytes: Option<&Bound<'py, PyAny>>,
        fee_payer: Option<&Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyDict>> {
        let index = arg("index", index, integer::<usize>)?;
        let utxos = arg("utxos", utxos, |list| {
            if list.is_instance_of::<pyo3::types::PyString>() {
                return Err(Error::wrong_type(list, "a list of wallet UTXO tuples"));
            }
            list.try_iter()
                .map_err(|_| Error::wrong_type(list, "a list of wallet UTXO tuples"))?
                .enumerate()
                .map(|(i, u)| wallet_utxo(&u?).map_err(|e| e.at_row(i)))
                .collect::<Result<Vec<_>>>()
        })?;
        let options = batch_options(
            self.inner.network(),
            sat_per_vb,
            max_vbytes,
            fee_payer,
            None,
        )?;
        let batches = self.inner.batches(&options)?;
        let batch = batches.get(index).ok_or_else(|| {
            Error::invalid(
                "out_of_range",
                format!("there are {} batches, no batch {index}", batches.len()),
            )
            .in_argument("index")
        })?;
        let p = wallet.inner.batch_psbt(&self.inner, batch, &utxos)?;
        let d = PyDict::new(py);
        d.set_item("psbt", p.psbt_base64)?;
        d.set_item("fee_sats", p.fee.to_sat())?;
        d.set_item("change_sats", p.change.to_sat())?;
        d.set_item("change_address", p.change_address.map(|a| a.to_string()))?;
        d.set_item("change_index", p.change_index)?;
        d.set_item("vbytes", p.vbytes)?;
        Ok(d)
    }

    /// Fee estimate at `sat_per_vb`: dict with vbytes and fee_sats.
    fn fee_estimate<'py>(
        &self,
        py: Python<'py>,
        sat_per_vb: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyDict>> {
        let fee = self.inner.estimate_fee(fee_rate(sat_per_vb)?);
        let d = PyDict::new(py);
        d.set_item("vbytes", fee.vbytes)?;
        d.set_item("fee_sats", fee.fee_sats.to_sat())?;
        Ok(d)
    }

    /// An unsigned PSBT paying the batch from `utxos` (a list of
    /// `(txid:vout, value_sats, address)`), with change to `change_address`.
    /// Returns a dict: psbt (base64), fee_sats, change_sats, vbytes.
    fn psbt<'py>(
        &self,
        py: Python<'py>,
        utxos: &Bound<'py, PyAny>,
        change_address: &Bound<'py, PyAny>,
        sat_per_vb: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyDict>> {
        let network = self.inner.network();
        let utxos = self::utxos(utxos, network)?;
        let change = arg("change_address", change_address, |v| {
            Ok(PayoutAddress::new(&text(v)?, network)?)
        })?;
        let fee = fee_rate(sat_per_vb)?;
        let batch = self.inner.build_psbt(&utxos, &change, fee)?;
        let d = PyDict::new(py);
        d.set_item("psbt", batch.psbt_base64)?;
        d.set_item("fee_sats", batch.fee_sats.to_sat())?;
        d.set_item("change_sats", batch.change_sats.to_sat())?;
        d.set_item("vbytes", batch.vbytes)?;
        Ok(d)
    }

    /// The payouts split into transactions Bitcoin Core relays (at most
    /// `max_vbytes` each, 100,000 by default, counting one P2WPKH input and
    /// change to `change_address` or the operator's address), at
    /// `sat_per_vb` (an exact decimal, such as `Decimal("1.5")`), the fee
    /// paid by `fee_payer` (`"operator"` or `"members"`, pro rata). One dict
    /// per transaction: index, outputs (address, payout_sats,
    /// fee_share_sats, sats), vbytes, weight, fee_sats, fee_payer,
    /// sat_per_vb, payouts_sats, outputs_sats, sendmany, sendmany_json.
    #[pyo3(signature = (sat_per_vb, *, max_vbytes = None, fee_payer = None, change_address = None))]
    fn batches<'py>(
        &self,
        py: Python<'py>,
        sat_per_vb: &Bound<'py, PyAny>,
        max_vbytes: Option<&Bound<'py, PyAny>>,
        fee_payer: Option<&Bound<'py, PyAny>>,
        change_address: Option<&Bound<'py, PyAny>>,
    ) -> Result<Vec<Bound<'py, PyDict>>> {
        let options = batch_options(
            self.inner.network(),
            sat_per_vb,
            max_vbytes,
            fee_payer,
            change_address,
        )?;
        let batches = self.inner.batches(&options)?;
        Ok(batches
            .iter()
            .map(|b| batch_dict(py, b))
            .collect::<PyResult<Vec<_>>>()?)
    }

    /// An unsigned PSBT for batch `index` of `batches(...)` with the same
    /// keywords, paid from `utxos` (a list of `(txid:vout, value_sats,
    /// address)`) with change to `change_address`: a dict with psbt
    /// (base64), fee_sats, change_sats, vbytes. A transaction over the cap
    /// with these inputs is a `ValidationError` of kind `too_large`.
    #[pyo3(signature = (index, utxos, change_address, sat_per_vb, *, max_vbytes = None, fee_payer = None))]
    #[allow(clippy::too_many_arguments)]
    fn batch_psbt<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
        utxos: &Bound<'py, PyAny>,
        change_address: &Bound<'py, PyAny>,
        sat_per_vb: &Bound<'py, PyAny>,
        max_vbytes: Option<&Bound<'py, PyAny>>,
        fee_payer: Option<&Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyDict>> {
        let network = self.inner.network();
        let index = arg("index", index, integer::<usize>)?;
        let utxos = self::utxos(utxos, network)?;
        let change = arg("change_address", change_address, |v| {
            Ok(PayoutAddress::new(&text(v)?, network)?)
        })?;
        let options = batch_options(
            network,
            sat_per_vb,
            max_vbytes,
            fee_payer,
            Some(change_address),
        )?;
        let batches = self.inner.batches(&options)?;
        let batch = batches.get(index).ok_or_else(|| {
            Error::invalid(
                "out_of_range",
                format!("there are {} batches, no batch {index}", batches.len()),
            )
            .in_argument("index")
        })?;
        let unsigned = batch.psbt(&utxos, &change)?;
        let d = PyDict::new(py);
        d.set_item("psbt", unsigned.psbt_base64)?;
        d.set_item("fee_sats", unsigned.fee_sats.to_sat())?;
        d.set_item("change_sats", unsigned.change_sats.to_sat())?;
        d.set_item("vbytes", unsigned.vbytes)?;
        Ok(d)
    }

    /// What the raw transaction `raw_tx_hex` (as `getrawtransaction`
    /// returns it) pays of this settlement: a dict with txid, payouts
    /// (address, sats, vout), invoices (prosumer_id, sats, vout), problems
    /// (kind `payout_wrong_amount`, `payout_twice`, `invoice_partly` or
    /// `invoice_twice`, with message, sats, vout and what it concerns) and
    /// other_outputs (address, sats, vout). Payouts are expected in full,
    /// or, with `fee_payer="members"`, less their fee shares in the batches
    /// at `sat_per_vb` and `max_vbytes`.
    #[pyo3(signature = (raw_tx_hex, *, sat_per_vb = None, max_vbytes = None, fee_payer = None))]
    fn reconcile<'py>(
        &self,
        py: Python<'py>,
        raw_tx_hex: &Bound<'py, PyAny>,
        sat_per_vb: Option<&Bound<'py, PyAny>>,
        max_vbytes: Option<&Bound<'py, PyAny>>,
        fee_payer: Option<&Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyDict>> {
        let tx = arg("raw_tx_hex", raw_tx_hex, |v| {
            Ok(decode_transaction(&text(v)?)?)
        })?;
        let r = match self.expected_batches(sat_per_vb, max_vbytes, fee_payer)? {
            Some(batches) => self.inner.reconcile_batches(&tx, &batches),
            None => self.inner.reconcile(&tx),
        };
        Ok(reconciliation_dict(py, &r)?)
    }

    /// Checks that the raw transaction `raw_tx_hex` pays this settlement's
    /// whole payout batch (every address its payout once, or less its fee
    /// share with `fee_payer="members"`; change allowed) and returns its
    /// txid, for `Grid.mark_paid`. A transaction that does not, or a
    /// settlement paid in several transactions, is a `SettlementError` of
    /// kind `transaction_mismatch`.
    #[pyo3(signature = (raw_tx_hex, *, sat_per_vb = None, max_vbytes = None, fee_payer = None))]
    fn check_payment(
        &self,
        raw_tx_hex: &Bound<'_, PyAny>,
        sat_per_vb: Option<&Bound<'_, PyAny>>,
        max_vbytes: Option<&Bound<'_, PyAny>>,
        fee_payer: Option<&Bound<'_, PyAny>>,
    ) -> Result<String> {
        let tx = arg("raw_tx_hex", raw_tx_hex, |v| {
            Ok(decode_transaction(&text(v)?)?)
        })?;
        let batches = self
            .expected_batches(sat_per_vb, max_vbytes, fee_payer)?
            .unwrap_or_default();
        self.inner.check_paid_by(&tx, &batches)?;
        Ok(tx.compute_txid().to_string())
    }

    /// Parses a BIP21 payment URI with BIP321's extensions (what this
    /// library writes and what wallets write: any case of the scheme and of
    /// parameter names, percent-encoding, unknown parameters kept, `req-`
    /// parameters refused, no address when a payment instruction such as
    /// `lightning=` or `lno=` is given): a dict with address (None when the
    /// URI has none), amount_sats (or None), label, message, lightning
    /// (the first BOLT11 invoice or None), offer (the first `lno=` BOLT12
    /// offer or None), other (a dict of the other parameters, the first
    /// value of a name that appears more than once) and params (every
    /// other parameter as a (name, value) tuple, in the URI's order). A URI
    /// that does not parse is a `SettlementError` of kind
    /// `invalid_payment_uri`.
    #[staticmethod]
    fn parse_uri<'py>(py: Python<'py>, uri: &Bound<'py, PyAny>) -> Result<Bound<'py, PyDict>> {
        let r = arg("uri", uri, |v| Ok(bip21::parse(&text(v)?)?))?;
        let d = PyDict::new(py);
        d.set_item(
            "address",
            r.address
                .as_ref()
                .map(|a| a.assume_checked_ref().to_string()),
        )?;
        d.set_item("amount_sats", r.amount.map(|a| a.to_sat()))?;
        d.set_item("label", r.label.as_deref())?;
        d.set_item("message", r.message.as_deref())?;
        d.set_item("lightning", r.lightning())?;
        d.set_item("offer", r.offer())?;
        let other = PyDict::new(py);
        for (k, v) in &r.other {
            if !other.contains(k)? {
                other.set_item(k, v)?;
            }
        }
        d.set_item("other", other)?;
        let params: Vec<(&str, &str)> = r
            .other
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        d.set_item("params", params)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Settlement(id={:?}, entries={})",
            self.inner.id(),
            self.inner.entries().len()
        )
    }
}

impl Settlement {
    /// The batches whose outputs a transaction is expected to pay: `None`
    /// (the payouts in full) unless `fee_payer` is `"members"`, which needs
    /// `sat_per_vb`.
    fn expected_batches(
        &self,
        sat_per_vb: Option<&Bound<'_, PyAny>>,
        max_vbytes: Option<&Bound<'_, PyAny>>,
        fee_payer: Option<&Bound<'_, PyAny>>,
    ) -> Result<Option<Vec<Batch>>> {
        let payer = opt_arg(
            "fee_payer",
            fee_payer,
            |v| Ok(text(v)?.parse::<FeePayer>()?),
        )?
        .unwrap_or_default();
        let rate = match sat_per_vb {
            Some(v) if !v.is_none() => v,
            _ if payer == FeePayer::Members => {
                return Err(Error::validation(
                    "fee_payer=\"members\" needs sat_per_vb: the fee shares depend on the rate",
                )
                .in_argument("sat_per_vb"))
            }
            _ => return Ok(None),
        };
        let options = batch_options(self.inner.network(), rate, max_vbytes, fee_payer, None)?;
        if payer == FeePayer::Operator {
            return Ok(None);
        }
        Ok(Some(self.inner.batches(&options)?))
    }
}

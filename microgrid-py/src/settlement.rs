//! `microgrid.Settlement`: a settled period and the outputs bitcoin
//! software takes as they are.

use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::{Action, Settlement as CoreSettlement};
use microgrid_core::PayoutAddress;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rust_decimal::Decimal;

use crate::conversions::{arg, integer, text};
use crate::errors::{Error, Result};

/// A fee rate in sat/vB from argument `sat_per_vb`.
fn fee_rate(value: &Bound<'_, PyAny>) -> Result<FeeRate> {
    arg("sat_per_vb", value, |v| {
        Ok(FeeRate::new(integer::<u64>(v)?)?)
    })
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
    Ok(Utxo {
        outpoint: arg("outpoint", outpoint, text)?,
        value_sats: arg("value_sats", value_sats, integer::<u64>)?,
        address: PayoutAddress::new(&arg("address", address, text)?, network)
            .map_err(|e| Error::from(e).in_argument("address"))?,
    })
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
        self.inner.id.clone()
    }

    /// SHA-256 of the canonical JSON.
    #[getter]
    fn content_hash(&self) -> String {
        self.inner.content_hash()
    }

    /// The transaction that paid it, once marked paid.
    #[getter]
    fn paid_txid(&self) -> Option<String> {
        self.inner.paid_txid.clone()
    }

    /// Why it was voided (`None` while it stands).
    #[getter]
    fn void_reason(&self) -> Option<String> {
        self.inner.voided.as_ref().map(|v| v.reason.clone())
    }

    /// The network it pays on.
    #[getter]
    fn network(&self) -> String {
        self.inner.network.to_string()
    }

    /// The grid leg in satoshis.
    #[getter]
    fn grid_sats(&self) -> i64 {
        self.inner.grid_sats
    }

    /// What the operator keeps, in satoshis.
    #[getter]
    fn operator_sats(&self) -> i64 {
        self.inner.operator_sats
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
            *merged.entry(address.as_str().to_owned()).or_default() += sats;
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
    /// carried_in_sats, due_sats, action, sats, address, carried_out_sats.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .entries
            .iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("prosumer_id", e.prosumer.as_str())?;
                d.set_item("bill_total", e.bill_total)?;
                d.set_item("bill_sats", e.bill_sats)?;
                d.set_item("carried_in_sats", e.carried_in)?;
                d.set_item("due_sats", e.due)?;
                let (action, sats, address) = match &e.action {
                    Action::Nothing => ("nothing", 0, None),
                    Action::Payout { address, sats } => {
                        ("payout", *sats, Some(address.as_str().to_owned()))
                    }
                    Action::Invoice { sats } => ("invoice", *sats, None),
                    Action::Carry { .. } => ("carry", 0, None),
                };
                d.set_item("action", action)?;
                d.set_item("sats", sats)?;
                d.set_item("address", address)?;
                d.set_item("carried_out_sats", e.carried_out)?;
                Ok(d)
            })
            .collect()
    }

    /// Invoices as dicts: prosumer_id, sats, uri (BIP21).
    fn invoices<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .invoices()
            .into_iter()
            .map(|i| {
                let d = PyDict::new(py);
                d.set_item("prosumer_id", i.prosumer.as_str())?;
                d.set_item("sats", i.sats)?;
                d.set_item("uri", i.uri)?;
                Ok(d)
            })
            .collect()
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
        d.set_item("fee_sats", fee.fee_sats)?;
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
        let network = self.inner.network;
        let utxos = arg("utxos", utxos, |list| {
            if list.is_instance_of::<pyo3::types::PyString>() {
                return Err(Error::wrong_type(list, "a list of UTXO tuples"));
            }
            list.try_iter()
                .map_err(|_| Error::wrong_type(list, "a list of UTXO tuples"))?
                .enumerate()
                .map(|(i, u)| utxo(&u?, network).map_err(|e| e.at_row(i)))
                .collect::<Result<Vec<_>>>()
        })?;
        let change = arg("change_address", change_address, |v| {
            Ok(PayoutAddress::new(&text(v)?, network)?)
        })?;
        let fee = fee_rate(sat_per_vb)?;
        let batch = self.inner.build_psbt(&utxos, &change, fee)?;
        let d = PyDict::new(py);
        d.set_item("psbt", batch.psbt_base64)?;
        d.set_item("fee_sats", batch.fee_sats)?;
        d.set_item("change_sats", batch.change_sats)?;
        d.set_item("vbytes", batch.vbytes)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Settlement(id={:?}, entries={})",
            self.inner.id,
            self.inner.entries.len()
        )
    }
}

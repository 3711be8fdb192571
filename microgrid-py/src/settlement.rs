//! `microgrid.Settlement`: a settled period and the outputs bitcoin
//! software takes as they are.

use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::{Action, Settlement as CoreSettlement};
use microgrid_core::PayoutAddress;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rust_decimal::Decimal;

use crate::errors::Result;

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
    fn fee_estimate<'py>(&self, py: Python<'py>, sat_per_vb: u64) -> Result<Bound<'py, PyDict>> {
        let fee = self.inner.estimate_fee(FeeRate::new(sat_per_vb)?);
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
        utxos: Vec<(String, u64, String)>,
        change_address: &str,
        sat_per_vb: u64,
    ) -> Result<Bound<'py, PyDict>> {
        let network = self.inner.network;
        let utxos = utxos
            .into_iter()
            .map(|(outpoint, value_sats, address)| {
                Ok(Utxo {
                    outpoint,
                    value_sats,
                    address: PayoutAddress::new(&address, network)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let change = PayoutAddress::new(change_address, network)?;
        let batch = self
            .inner
            .build_psbt(&utxos, &change, FeeRate::new(sat_per_vb)?)?;
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

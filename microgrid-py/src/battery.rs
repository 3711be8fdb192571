//! `microgrid.Battery` and the battery's state per timeframe as columns.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampSecondArray};
use arrow_schema::{Field, Schema};
use chrono::DateTime;
use microgrid_core::views::BatteryColumns;
use microgrid_core::{BatteryOwner, BatterySpec};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;
use rust_decimal::Decimal;

use crate::conversions::{arg, decimal, integer, opt_arg, prosumer_id, text};
use crate::errors::{Error, Result};

/// A community battery that takes part in clearing as a member of its own
/// (registered with kind `"battery"`): capacity and starting state of
/// charge in Wh, power limits in W, round-trip efficiency as an exact
/// decimal in (0, 1] with at most 6 decimals (floats are refused), owned
/// by the operator (`owner=None`) or by the member `owner`. It charges
/// from the community's surplus before anything is exported and
/// discharges into its deficit before anything is imported; the loss is
/// taken at charge, `stored = floor(charged * efficiency)`.
#[pyclass(module = "microgrid", frozen)]
#[derive(Clone)]
pub struct Battery {
    pub inner: BatterySpec,
}

#[pymethods]
impl Battery {
    #[new]
    #[pyo3(
        signature = (id, *, capacity_wh, max_charge_w, max_discharge_w, round_trip_efficiency, initial_soc_wh = None, owner = None),
        text_signature = "(id, *, capacity_wh, max_charge_w, max_discharge_w, round_trip_efficiency, initial_soc_wh=0, owner=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: &Bound<'_, PyAny>,
        capacity_wh: &Bound<'_, PyAny>,
        max_charge_w: &Bound<'_, PyAny>,
        max_discharge_w: &Bound<'_, PyAny>,
        round_trip_efficiency: &Bound<'_, PyAny>,
        initial_soc_wh: Option<&Bound<'_, PyAny>>,
        owner: Option<&Bound<'_, PyAny>>,
    ) -> Result<Battery> {
        let id = arg("id", id, text)?;
        let capacity = arg("capacity_wh", capacity_wh, integer::<i64>)?;
        let charge = arg("max_charge_w", max_charge_w, integer::<i64>)?;
        let discharge = arg("max_discharge_w", max_discharge_w, integer::<i64>)?;
        let efficiency = arg("round_trip_efficiency", round_trip_efficiency, decimal)?;
        let soc = opt_arg("initial_soc_wh", initial_soc_wh, integer::<i64>)?.unwrap_or(0);
        let owner = opt_arg("owner", owner, prosumer_id)?;
        let spec = BatterySpec::new(id, capacity, charge, discharge, efficiency, soc)?;
        let spec = match owner {
            None => spec,
            Some(member) => spec
                .with_owner(BatteryOwner::Member(member))
                .map_err(|e| Error::from(e).in_argument("owner"))?,
        };
        Ok(Battery { inner: spec })
    }

    /// The battery's prosumer id.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// Capacity in Wh.
    #[getter]
    fn capacity_wh(&self) -> i64 {
        self.inner.capacity().get()
    }

    /// Charge power limit in W.
    #[getter]
    fn max_charge_w(&self) -> i64 {
        self.inner.max_charge_w()
    }

    /// Discharge power limit in W.
    #[getter]
    fn max_discharge_w(&self) -> i64 {
        self.inner.max_discharge_w()
    }

    /// Round-trip efficiency.
    #[getter]
    fn round_trip_efficiency(&self) -> Decimal {
        self.inner.round_trip_efficiency()
    }

    /// State of charge in Wh at midnight UTC of the day it joined.
    #[getter]
    fn initial_soc_wh(&self) -> i64 {
        self.inner.initial_soc().get()
    }

    /// The member that owns the battery; `None`: the operator.
    #[getter]
    fn owner(&self) -> Option<String> {
        match self.inner.owner() {
            BatteryOwner::Operator => None,
            BatteryOwner::Member(m) => Some(m.to_string()),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Battery('{}', capacity_wh={}, max_charge_w={}, max_discharge_w={}, \
             round_trip_efficiency=Decimal('{}'), initial_soc_wh={}, owner={})",
            self.inner.id().as_str(),
            self.capacity_wh(),
            self.max_charge_w(),
            self.max_discharge_w(),
            self.inner.round_trip_efficiency(),
            self.initial_soc_wh(),
            self.owner()
                .map_or_else(|| "None".to_owned(), |o| format!("'{o}'"))
        )
    }
}

/// The names of the battery's columns, in order.
const COLUMNS: [&str; 6] = [
    "soc_start_wh",
    "charged_wh",
    "stored_wh",
    "loss_wh",
    "discharged_wh",
    "soc_end_wh",
];

fn values(c: &BatteryColumns) -> [&Vec<i64>; 6] {
    [
        &c.soc_start_wh,
        &c.charged_wh,
        &c.stored_wh,
        &c.loss_wh,
        &c.discharged_wh,
        &c.soc_end_wh,
    ]
}

/// The battery's states as a dict of lists (`start` as UTC datetimes).
pub fn state_dict(py: Python<'_>, c: &BatteryColumns) -> Result<Py<PyDict>> {
    let d = PyDict::new(py);
    let start = c
        .start
        .iter()
        .map(|&s| {
            DateTime::from_timestamp(s, 0)
                .ok_or_else(|| Error::validation(format!("timestamp {s} out of range")))
        })
        .collect::<Result<Vec<_>>>()?;
    d.set_item("start", start)?;
    for (name, v) in COLUMNS.iter().zip(values(c)) {
        d.set_item(*name, v)?;
    }
    Ok(d.unbind())
}

/// The battery's states as an Arrow table: `start` as
/// `timestamp[s, tz=UTC]`, the energies `int64`.
pub fn state_table(c: BatteryColumns) -> Result<PyTable> {
    let mut fields = vec![Field::new(
        "start",
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Second, Some("UTC".into())),
        false,
    )];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(
        TimestampSecondArray::from(c.start.clone()).with_timezone("UTC"),
    )];
    for (name, v) in COLUMNS.iter().zip(values(&c)) {
        fields.push(Field::new(*name, arrow_schema::DataType::Int64, false));
        arrays.push(Arc::new(Int64Array::from(v.clone())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| Error::validation(format!("cannot build the Arrow table: {e}")))?;
    Ok(PyTable::try_new(vec![batch], schema)?)
}

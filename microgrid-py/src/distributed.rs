//! `microgrid.BillingPart`: the billing sums of a range of timeframes,
//! made by `Grid.bill_part` wherever that range's readings are, picklable,
//! merged with the parts of the rest of the period and finished once by
//! `Grid.bill_parts` / `Grid.settle_parts`.

use chrono::{DateTime, Utc};
use microgrid_core::billing::BillingPart as CoreBillingPart;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::errors::{Error, Result};

/// The billing sums of a contiguous range of timeframes, not yet finished
/// into bills: `Grid.bill_part(start, end, tariff)` makes one,
/// `a.merge(b)` joins it with the part that starts where it ends, and
/// `Grid.bill_parts(parts, tariff)` or `Grid.settle_parts(...)` finish the
/// whole period once, with the same registry. Picklable (as
/// `to_bytes()`), so that Dask or multiprocessing can move it between
/// processes.
#[pyclass(module = "microgrid", frozen)]
#[derive(Clone)]
pub struct BillingPart {
    pub inner: CoreBillingPart,
}

/// The parts in `parts` (an iterable of `BillingPart`), by value.
pub fn parts(value: &Bound<'_, PyAny>) -> Result<Vec<CoreBillingPart>> {
    if value.is_instance_of::<PyString>() {
        return Err(Error::wrong_type(value, "a list of microgrid.BillingPart"));
    }
    let items = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, "a list of microgrid.BillingPart"))?;
    items
        .enumerate()
        .map(|(row, item)| {
            let item = item?;
            item.cast::<BillingPart>()
                .map(|p| p.get().inner.clone())
                .map_err(|_| Error::wrong_type(&item, "a microgrid.BillingPart").at_row(row))
        })
        .collect()
}

#[pymethods]
impl BillingPart {
    /// A part from `to_bytes()`; bytes that are not a part are refused
    /// (`ValidationError`, kind `parse` or `shape_mismatch`).
    #[staticmethod]
    fn from_bytes(data: &Bound<'_, PyAny>) -> Result<BillingPart> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| Error::wrong_type(data, "bytes").in_argument("data"))?;
        let inner = CoreBillingPart::from_bytes(bytes.as_bytes())
            .map_err(|e| Error::from(e).in_argument("data"))?;
        Ok(BillingPart { inner })
    }

    /// The part as bytes, for `BillingPart.from_bytes` in another process.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.to_bytes()?))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyTuple>> {
        let from_bytes = py.get_type::<BillingPart>().getattr("from_bytes")?;
        let args = PyTuple::new(py, [self.to_bytes(py)?])?;
        Ok(PyTuple::new(py, [from_bytes, args.into_any()])?)
    }

    /// Start of the part's first timeframe (UTC).
    #[getter]
    fn start(&self) -> DateTime<Utc> {
        self.inner.range().start()
    }

    /// End of the part's last timeframe (UTC).
    #[getter]
    fn end(&self) -> DateTime<Utc> {
        self.inner.range().end()
    }

    /// How many timeframes the part sums.
    #[getter]
    fn timeframes(&self) -> usize {
        self.inner.range().len()
    }

    /// How many members have a reading in the part.
    #[getter]
    fn members(&self) -> usize {
        self.inner.members()
    }

    /// This part followed by `other`, which must start where this one
    /// ends and come from a grid with the same registry (a gap is
    /// `period_not_cleared`, an overlap `duplicate_clearing`, another
    /// registry `shape_mismatch`).
    fn merge(&self, other: &Bound<'_, PyAny>) -> Result<BillingPart> {
        let other = other.cast::<BillingPart>().map_err(|_| {
            Error::wrong_type(other, "a microgrid.BillingPart").in_argument("other")
        })?;
        let inner = self
            .inner
            .clone()
            .merge(other.get().inner.clone())
            .map_err(|e| Error::from(e).in_argument("other"))?;
        Ok(BillingPart { inner })
    }

    /// The parts (in any order) merged into one, without gaps or overlaps.
    #[staticmethod]
    fn merge_all(parts: &Bound<'_, PyAny>) -> Result<BillingPart> {
        let parts = crate::conversions::arg("parts", parts, self::parts)?;
        let inner =
            CoreBillingPart::merge_all(parts).map_err(|e| Error::from(e).in_argument("parts"))?;
        Ok(BillingPart { inner })
    }

    fn __repr__(&self) -> String {
        format!(
            "BillingPart(start={}, end={}, timeframes={}, members={})",
            self.inner.range().start().to_rfc3339(),
            self.inner.range().end().to_rfc3339(),
            self.inner.range().len(),
            self.inner.members()
        )
    }
}

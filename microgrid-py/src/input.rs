//! Readings from Python as columns, without a Python object per row.
//!
//! Two phases. With the GIL, [`Column`] takes whatever the caller passed
//! (an Arrow array or stream through the PyCapsule interface, a numpy
//! array, a pandas `Series` or `Index`, or a plain Python sequence) and
//! holds it as Arrow arrays: zero-copy where the memory allows it (Arrow,
//! numpy integers, pandas integer, datetime and categorical columns).
//! Without the GIL, [`Readings::to_columns`] checks the types and turns
//! the arrays into the core's [`ReadingColumns`]:
//!
//! - `start`: an Arrow timestamp of any unit, with a time zone (values of
//!   a zoned Arrow timestamp are UTC instants whatever the zone); naive
//!   timestamps are refused unless the caller says they are UTC
//!   (`assume_utc`); a fraction of a second is refused, naming the row.
//! - `prosumer_id`: a dictionary (pandas categorical, polars categorical,
//!   Arrow dictionary): each distinct id is looked up once, then the codes
//!   are mapped; plain strings are looked up row by row in a hash map (the
//!   slower path). An unknown id is the core's `UnknownProsumer`.
//! - energies: integer columns only (int8..int64, uint8..uint64); floats
//!   and booleans are refused.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowDictionaryKeyType, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Int64Array, PrimitiveArray, StringArray,
    TimestampSecondArray, UInt32Array,
};
use arrow_buffer::ArrowNativeType;
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, SecondsFormat};
use microgrid_core::{Error as CoreError, ReadingColumns, Registry};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyString};
use pyo3_arrow::input::AnyArray;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::PyArray;

use crate::conversions::{utc, whole};
use crate::errors::{Error, Result};

/// What a column holds; it decides how plain Python values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Timeframe starts.
    Start,
    /// Prosumer ids.
    Id,
    /// Watt-hours.
    Energy,
}

impl Role {
    /// The column's name in a long frame.
    pub fn name(self) -> &'static str {
        match self {
            Role::Start => "start",
            Role::Id => "prosumer_id",
            Role::Energy => "energy",
        }
    }
}

/// One column as Arrow chunks, owned and `Send`.
#[derive(Debug, Clone, Default)]
pub struct Column(pub Vec<ArrayRef>);

impl Column {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.iter().map(|a| a.len()).sum()
    }
}

/// Whether `obj` comes from pandas (a `Series`, `Index`, `DataFrame` or
/// one of its arrays).
pub fn is_pandas(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .module()
        .map(|m| m.to_string_lossy().starts_with("pandas"))
        .unwrap_or(false)
}

/// Whether `obj` is a numpy array. numpy is optional: only once it is
/// imported (it must be, for `obj` to be an array) is its C API asked.
fn is_numpy(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    let loaded = py
        .import(intern!(py, "sys"))
        .and_then(|sys| sys.getattr(intern!(py, "modules")))
        .and_then(|m| m.contains(intern!(py, "numpy")))
        .unwrap_or(false);
    loaded && obj.is_instance_of::<PyUntypedArray>()
}

fn has(obj: &Bound<'_, PyAny>, name: &str) -> bool {
    obj.hasattr(name).unwrap_or(false)
}

/// Whether `obj` exports Arrow data through the PyCapsule interface.
pub fn is_arrow(obj: &Bound<'_, PyAny>) -> bool {
    has(obj, "__arrow_c_array__") || has(obj, "__arrow_c_stream__")
}

impl Column {
    /// The column `obj` holding `role` values.
    pub fn extract(obj: &Bound<'_, PyAny>, role: Role) -> Result<Column> {
        if is_pandas(obj) && has(obj, "dtype") {
            return pandas(obj, role);
        }
        if is_numpy(obj) {
            return numpy(obj, role);
        }
        if is_arrow(obj) {
            return arrow_column(obj);
        }
        sequence(obj, role)
    }
}

/// An Arrow array or stream of arrays.
fn arrow_column(obj: &Bound<'_, PyAny>) -> Result<Column> {
    let any: AnyArray = obj.extract()?;
    let reader = any.into_reader()?;
    let chunks = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::validation(format!("cannot read the Arrow stream: {e}")))?;
    Ok(Column(chunks))
}

/// A numpy array: integers (and floats and booleans, refused later) as
/// zero-copy Arrow arrays, `datetime64` as naive timestamps, object and
/// string arrays value by value.
fn numpy(obj: &Bound<'_, PyAny>, role: Role) -> Result<Column> {
    let py = obj.py();
    let arr = obj.cast::<PyUntypedArray>()?;
    if arr.ndim() != 1 {
        return Err(Error::invalid(
            "shape_mismatch",
            format!(
                "{} must be a one-dimensional array, got {} dimensions",
                role.name(),
                arr.ndim()
            ),
        ));
    }
    let np = py.import(intern!(py, "numpy"))?;
    let kind = arr
        .dtype()
        .getattr(intern!(py, "kind"))?
        .extract::<char>()?;
    match kind {
        'f' | 'b' => Err(Error::invalid(
            "invalid_type",
            format!(
                "{} values are refused: {}",
                arr.dtype(),
                match role {
                    Role::Energy => "energies are whole watt-hours; use an integer column",
                    Role::Start => "start must be timestamps",
                    Role::Id => "prosumer ids are strings",
                }
            ),
        )
        .with("type", arr.dtype().to_string())),
        'i' | 'u' => {
            if arr.len() == 0 {
                return Ok(Column::default());
            }
            let contiguous = np.call_method1(intern!(py, "ascontiguousarray"), (arr,))?;
            let array: PyArray = contiguous.extract()?;
            Ok(Column(vec![array.into_inner().0]))
        }
        'M' => {
            let (unit, count): (String, i64) = np
                .call_method1(intern!(py, "datetime_data"), (arr.dtype(),))?
                .extract()?;
            if count != 1 {
                return Err(Error::validation(format!(
                    "start has the unit {count}{unit}; use s, ms, us or ns"
                ))
                .with("type", arr.dtype().to_string()));
            }
            let missing: bool = np
                .call_method1(intern!(py, "isnat"), (arr,))?
                .call_method0(intern!(py, "any"))?
                .extract()?;
            if missing {
                return Err(Error::invalid(
                    "missing_value",
                    "start has a missing value (NaT)",
                ));
            }
            let ints = np
                .call_method1(intern!(py, "ascontiguousarray"), (arr,))?
                .call_method1(intern!(py, "view"), ("i8",))?;
            timestamps(&ints, &unit, None)
        }
        _ => sequence(obj, role),
    }
}

/// Zoned (or naive, `tz = None`) timestamps of `unit` from an int64
/// buffer (numpy).
fn timestamps(ints: &Bound<'_, PyAny>, unit: &str, tz: Option<String>) -> Result<Column> {
    if ints.len()? == 0 {
        return Ok(Column(vec![Arc::new(
            TimestampSecondArray::from(Vec::<i64>::new()).with_timezone_opt(tz),
        )]));
    }
    let array: PyArray = ints.extract()?;
    let values = array.into_inner().0;
    let values = values
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| Error::validation("timestamps are not 64-bit integers"))?;
    let array: ArrayRef = match unit {
        "s" => Arc::new(
            values
                .reinterpret_cast::<TimestampSecondType>()
                .with_timezone_opt(tz),
        ),
        "ms" => Arc::new(
            values
                .reinterpret_cast::<TimestampMillisecondType>()
                .with_timezone_opt(tz),
        ),
        "us" => Arc::new(
            values
                .reinterpret_cast::<TimestampMicrosecondType>()
                .with_timezone_opt(tz),
        ),
        "ns" => Arc::new(
            values
                .reinterpret_cast::<TimestampNanosecondType>()
                .with_timezone_opt(tz),
        ),
        other => {
            return Err(Error::validation(format!(
                "start has the unit {other:?}; use s, ms, us or ns"
            )))
        }
    };
    Ok(Column(vec![array]))
}

/// A pandas `Series` or `Index`.
fn pandas(obj: &Bound<'_, PyAny>, role: Role) -> Result<Column> {
    let py = obj.py();
    let np = py.import(intern!(py, "numpy"))?;
    let missing = np.call_method1(
        intern!(py, "asarray"),
        (obj.call_method0(intern!(py, "isna"))?,),
    )?;
    if missing.call_method0(intern!(py, "any"))?.is_truthy()? {
        let row: usize = missing.call_method0(intern!(py, "argmax"))?.extract()?;
        return Err(Error::invalid(
            "missing_value",
            format!("row {row}: a value is missing ({})", role.name()),
        )
        .at_row(row));
    }
    // A Series or Index holds a pandas array; a pandas array is one.
    let array = if has(obj, "array") {
        obj.getattr(intern!(py, "array"))?
    } else {
        obj.clone()
    };
    let dtype = obj.getattr(intern!(py, "dtype"))?;
    let dtype_name = dtype.str()?.to_string();
    let kind: String = dtype.getattr(intern!(py, "kind"))?.extract()?;
    if dtype_name == "category" {
        // codes (int8..int64, -1 for missing, which hasnans caught) and
        // the categories, looked up once each.
        let codes = Column::extract(&array.getattr(intern!(py, "codes"))?, Role::Energy)?;
        let ids = Column::extract(&array.getattr(intern!(py, "categories"))?, Role::Id)?;
        return dictionary(codes, ids);
    }
    match kind.as_str() {
        "M" if !has(&array, "asi8") && is_arrow(obj) => arrow_column(obj),
        "M" => {
            let arr = array;
            let tz = arr.getattr(intern!(py, "tz"))?;
            let tz = if tz.is_none() {
                None
            } else {
                Some(tz.str()?.to_string())
            };
            let unit: String = arr.getattr(intern!(py, "unit"))?.extract()?;
            timestamps(&arr.getattr(intern!(py, "asi8"))?, &unit, tz)
        }
        "i" | "u" | "f" | "b" => {
            let np_dtype = match dtype.getattr(intern!(py, "numpy_dtype")) {
                Ok(d) => d,
                Err(_) => dtype,
            };
            let values = obj.call_method(
                intern!(py, "to_numpy"),
                (),
                Some(&[("dtype", np_dtype)].into_py_dict(py)?),
            )?;
            numpy(&values, role)
        }
        _ => {
            // Strings: the pyarrow-backed ones (pandas' default str dtype
            // with pyarrow) export Arrow; object columns go value by value.
            if dtype_name != "object" && is_arrow(obj) {
                if let Ok(c) = arrow_column(obj) {
                    return Ok(c);
                }
            }
            sequence(obj, role)
        }
    }
}

/// The dictionary array of integer `codes` into `ids`.
fn dictionary(codes: Column, ids: Column) -> Result<Column> {
    let mut values = concat(&ids)?;
    if matches!(values.data_type(), DataType::Dictionary(..)) {
        values = arrow_cast::cast(&values, &DataType::Utf8)
            .map_err(|e| Error::validation(format!("categories: {e}")))?;
    }
    let mut chunks = Vec::with_capacity(codes.0.len());
    for keys in codes.0 {
        let err = |e: arrow_schema::ArrowError| Error::validation(format!("bad codes: {e}"));
        let dict: ArrayRef = match keys.data_type() {
            DataType::Int8 => Arc::new(
                DictionaryArray::try_new(keys.as_primitive::<Int8Type>().clone(), values.clone())
                    .map_err(err)?,
            ),
            DataType::Int16 => Arc::new(
                DictionaryArray::try_new(keys.as_primitive::<Int16Type>().clone(), values.clone())
                    .map_err(err)?,
            ),
            DataType::Int32 => Arc::new(
                DictionaryArray::try_new(keys.as_primitive::<Int32Type>().clone(), values.clone())
                    .map_err(err)?,
            ),
            DataType::Int64 => Arc::new(
                DictionaryArray::try_new(keys.as_primitive::<Int64Type>().clone(), values.clone())
                    .map_err(err)?,
            ),
            other => {
                return Err(Error::validation(format!(
                    "category codes of type {other} are not supported"
                )))
            }
        };
        chunks.push(dict);
    }
    Ok(Column(chunks))
}

/// One array of all the chunks.
fn concat(column: &Column) -> Result<ArrayRef> {
    match column.0.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(Arc::new(StringArray::from(Vec::<&str>::new()))),
        many => {
            let refs: Vec<&dyn Array> = many.iter().map(|a| a.as_ref()).collect();
            arrow_select::concat::concat(&refs)
                .map_err(|e| Error::validation(format!("cannot concatenate: {e}")))
        }
    }
}

/// Any Python iterable, value by value (a Python object per row: the slow
/// path, kept for lists and object columns).
fn sequence(obj: &Bound<'_, PyAny>, role: Role) -> Result<Column> {
    if obj.is_instance_of::<PyString>() {
        return Err(Error::wrong_type(
            obj,
            "a column (a sequence or an array), not a string",
        ));
    }
    let values = obj
        .try_iter()
        .map_err(|_| Error::wrong_type(obj, "a column (a sequence or an array)"))?;
    let array: ArrayRef = match role {
        Role::Start => {
            let mut seconds = Vec::new();
            for (row, v) in values.enumerate() {
                let t = utc(&v?).map_err(|e| e.at_row(row))?;
                seconds.push(t.timestamp());
            }
            Arc::new(TimestampSecondArray::from(seconds).with_timezone("UTC"))
        }
        Role::Energy => {
            let mut ints = Vec::new();
            for (row, v) in values.enumerate() {
                ints.push(whole(&v?).map_err(|e| e.at_row(row))?);
            }
            Arc::new(Int64Array::from(ints))
        }
        Role::Id => {
            // Interned as they come: codes into the distinct ids.
            let mut seen: HashMap<String, u32> = HashMap::new();
            let mut ids: Vec<String> = Vec::new();
            let mut codes: Vec<u32> = Vec::new();
            for (row, v) in values.enumerate() {
                let v = v?;
                let s = v
                    .cast::<PyString>()
                    .map_err(|_| Error::wrong_type(&v, "a str (a prosumer id)").at_row(row))?;
                let s = s.to_str().map_err(|e| Error::from(e).at_row(row))?;
                let code = match seen.get(s) {
                    Some(&c) => c,
                    None => {
                        let c = u32::try_from(ids.len())
                            .map_err(|_| Error::validation("too many distinct ids"))?;
                        seen.insert(s.to_owned(), c);
                        ids.push(s.to_owned());
                        c
                    }
                };
                codes.push(code);
            }
            Arc::new(
                DictionaryArray::try_new(
                    UInt32Array::from(codes),
                    Arc::new(StringArray::from(ids)),
                )
                .map_err(|e| Error::validation(e.to_string()))?,
            )
        }
    };
    Ok(Column(vec![array]))
}

/// The four columns of a batch of readings.
#[derive(Debug, Clone)]
pub struct Readings {
    /// Starts.
    pub start: Column,
    /// Prosumer ids.
    pub prosumer_id: Column,
    /// Produced Wh.
    pub produced_wh: Column,
    /// Consumed Wh.
    pub consumed_wh: Column,
    /// Whether naive timestamps are taken as UTC.
    pub assume_utc: bool,
}

/// The columns a long frame must have.
pub const LONG_COLUMNS: [&str; 4] = ["start", "prosumer_id", "produced_wh", "consumed_wh"];

impl Readings {
    /// The four columns of a long frame: a pandas `DataFrame`, or anything
    /// exporting an Arrow table or record batch (pyarrow, polars, ...).
    pub fn from_frame(frame: &Bound<'_, PyAny>, assume_utc: bool) -> Result<Readings> {
        let py = frame.py();
        let columns: Vec<Column> = if is_pandas(frame) && has(frame, "columns") {
            let names: Vec<String> = frame
                .getattr(intern!(py, "columns"))?
                .call_method0(intern!(py, "tolist"))?
                .extract()
                .unwrap_or_default();
            missing_columns(&names)?;
            LONG_COLUMNS
                .iter()
                .zip([Role::Start, Role::Id, Role::Energy, Role::Energy])
                .map(|(name, role)| {
                    let series = frame.get_item(name)?;
                    Column::extract(&series, role).map_err(|e| e.in_argument(*name))
                })
                .collect::<Result<_>>()?
        } else if is_arrow(frame) {
            let batches: AnyRecordBatch = frame.extract()?;
            let reader = batches.into_reader()?;
            let schema = reader.schema();
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            missing_columns(&names)?;
            let positions: Vec<usize> = LONG_COLUMNS
                .iter()
                .map(|n| names.iter().position(|m| m == n).unwrap_or_default())
                .collect();
            let mut columns = vec![Column::default(); 4];
            for batch in reader {
                let batch = batch
                    .map_err(|e| Error::validation(format!("cannot read the Arrow stream: {e}")))?;
                for (c, &i) in columns.iter_mut().zip(&positions) {
                    c.0.push(batch.column(i).clone());
                }
            }
            columns
        } else {
            return Err(Error::invalid(
                "invalid_type",
                format!(
                "expected a DataFrame, an Arrow table or record batch, got {}; or pass four columns: record(start, prosumer_id, produced_wh, consumed_wh)",
                frame.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ),
            )
            .with("value", frame)
            .with("type", crate::errors::type_name(frame)));
        };
        let mut columns = columns.into_iter();
        let mut next = || columns.next().unwrap_or_default();
        Ok(Readings {
            start: next(),
            prosumer_id: next(),
            produced_wh: next(),
            consumed_wh: next(),
            assume_utc,
        })
    }

    /// Four separate columns.
    pub fn from_columns(
        start: &Bound<'_, PyAny>,
        prosumer_id: &Bound<'_, PyAny>,
        produced_wh: &Bound<'_, PyAny>,
        consumed_wh: &Bound<'_, PyAny>,
        assume_utc: bool,
    ) -> Result<Readings> {
        let col = |obj, role, name: &'static str| {
            Column::extract(obj, role).map_err(|e| e.in_argument(name))
        };
        Ok(Readings {
            start: col(start, Role::Start, "start")?,
            prosumer_id: col(prosumer_id, Role::Id, "prosumer_id")?,
            produced_wh: col(produced_wh, Role::Energy, "produced_wh")?,
            consumed_wh: col(consumed_wh, Role::Energy, "consumed_wh")?,
            assume_utc,
        })
    }

    /// The core's columns, prosumers as indices into `registry`. Needs no
    /// GIL. An unknown id is [`CoreError::UnknownProsumer`].
    pub fn to_columns(&self, registry: &Registry) -> Result<ReadingColumns> {
        let n = self.start.len();
        let lens = [
            self.prosumer_id.len(),
            self.produced_wh.len(),
            self.consumed_wh.len(),
        ];
        if lens.iter().any(|&l| l != n) {
            return Err(Error::invalid(
                "shape_mismatch",
                format!(
                "columns differ in length: {n} starts, {} prosumer ids, {} produced, {} consumed",
                lens[0], lens[1], lens[2]
            ),
            ));
        }
        let starts = seconds(&self.start, self.assume_utc).map_err(|e| e.in_argument("start"))?;
        let produced = energies(&self.produced_wh, "produced_wh")?;
        let consumed = energies(&self.consumed_wh, "consumed_wh")?;
        let prosumers =
            indices(&self.prosumer_id, registry).map_err(|e| e.in_argument("prosumer_id"))?;
        Ok(ReadingColumns::new(starts, prosumers, produced, consumed)?)
    }
}

fn missing_columns(names: &[String]) -> Result<()> {
    let missing: Vec<&str> = LONG_COLUMNS
        .iter()
        .copied()
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "missing_value",
            format!(
            "the frame has no column(s) {missing:?}; a long frame has {LONG_COLUMNS:?} (a wide one goes to record_wide)"
        ),
        )
        .with("missing", missing.iter().map(|m| m.to_string()).collect::<Vec<_>>()))
    }
}

/// The first null of `array`, if any.
fn first_null(array: &dyn Array) -> Option<usize> {
    let nulls = array.logical_nulls()?;
    nulls.iter().position(|valid| !valid)
}

/// Seconds since the epoch of timestamp chunks.
pub fn seconds(column: &Column, assume_utc: bool) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(column.len());
    let mut row = 0;
    for a in &column.0 {
        let DataType::Timestamp(unit, tz) = a.data_type() else {
            return Err(Error::invalid(
                "invalid_type",
                format!(
                    "start must be timestamps with a time zone, got {}",
                    a.data_type()
                ),
            )
            .with("type", a.data_type().to_string()));
        };
        if tz.is_none() && !assume_utc {
            return Err(Error::invalid(
                "naive_datetime",
                "start holds naive timestamps (no time zone); localize them, e.g. frame['start'].dt.tz_localize('UTC'), or pass assume_utc=True",
            ));
        }
        if let Some(i) = first_null(a.as_ref()) {
            return Err(Error::invalid(
                "missing_value",
                format!("row {}: start is missing", row + i),
            )
            .at_row(row + i));
        }
        let (per, values): (i64, &[i64]) = match unit {
            TimeUnit::Second => (1, a.as_primitive::<TimestampSecondType>().values()),
            TimeUnit::Millisecond => (1_000, a.as_primitive::<TimestampMillisecondType>().values()),
            TimeUnit::Microsecond => (
                1_000_000,
                a.as_primitive::<TimestampMicrosecondType>().values(),
            ),
            TimeUnit::Nanosecond => (
                1_000_000_000,
                a.as_primitive::<TimestampNanosecondType>().values(),
            ),
        };
        if per == 1 {
            out.extend_from_slice(values);
        } else {
            for (i, &v) in values.iter().enumerate() {
                if v % per != 0 {
                    let nanos = v.rem_euclid(per) * (1_000_000_000 / per);
                    let shown = DateTime::from_timestamp(v.div_euclid(per), nanos as u32)
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                        .unwrap_or_else(|| v.to_string());
                    return Err(Error::invalid(
                        "subsecond_time",
                        format!(
                        "row {}: start {shown} is not a whole second (fractions are refused, not rounded)",
                        row + i
                    ),
                    )
                    .with("value", shown)
                    .at_row(row + i));
                }
                out.push(v / per);
            }
        }
        row += a.len();
    }
    Ok(out)
}

/// Whole watt-hours of integer chunks; errors name the column `what`.
pub fn energies(column: &Column, what: &str) -> Result<Vec<i64>> {
    integers(column, what).map_err(|e| e.in_argument(what.to_owned()))
}

fn integers(column: &Column, what: &str) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(column.len());
    let mut row = 0;
    for a in &column.0 {
        if let Some(i) = first_null(a.as_ref()) {
            return Err(Error::invalid(
                "missing_value",
                format!("row {}: {what} is missing", row + i),
            )
            .at_row(row + i));
        }
        fn widen<T: arrow_array::ArrowPrimitiveType>(out: &mut Vec<i64>, a: &dyn Array)
        where
            T::Native: Into<i64>,
        {
            out.extend(a.as_primitive::<T>().values().iter().map(|&v| v.into()));
        }
        match a.data_type() {
            DataType::Int64 => out.extend_from_slice(a.as_primitive::<Int64Type>().values()),
            DataType::Int32 => widen::<Int32Type>(&mut out, a.as_ref()),
            DataType::Int16 => widen::<Int16Type>(&mut out, a.as_ref()),
            DataType::Int8 => widen::<Int8Type>(&mut out, a.as_ref()),
            DataType::UInt32 => widen::<UInt32Type>(&mut out, a.as_ref()),
            DataType::UInt16 => widen::<UInt16Type>(&mut out, a.as_ref()),
            DataType::UInt8 => widen::<UInt8Type>(&mut out, a.as_ref()),
            DataType::UInt64 => {
                for (i, &v) in a.as_primitive::<UInt64Type>().values().iter().enumerate() {
                    out.push(i64::try_from(v).map_err(|_| {
                        Error::invalid(
                            "out_of_range",
                            format!("row {}: {what} {v} is too large", row + i),
                        )
                        .with("value", v)
                        .at_row(row + i)
                    })?);
                }
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                return Err(Error::invalid(
                    "invalid_type",
                    format!(
                    "{what} is a float column ({}); energies are whole watt-hours: use an integer column",
                    a.data_type()
                ),
                )
                .with("type", a.data_type().to_string()))
            }
            DataType::Boolean => {
                return Err(Error::invalid(
                    "invalid_type",
                    format!(
                    "{what} is a boolean column; energies are whole watt-hours: use an integer column"
                ),
                )
                .with("type", "bool"))
            }
            other => {
                return Err(Error::invalid(
                    "invalid_type",
                    format!("{what} must be an integer column (watt-hours), got {other}"),
                )
                .with("type", other.to_string()))
            }
        }
        row += a.len();
    }
    Ok(out)
}

/// Strings of a string array of any layout, `None` for nulls.
fn strings(a: &dyn Array) -> Option<Box<dyn Iterator<Item = Option<&str>> + '_>> {
    match a.data_type() {
        DataType::Utf8 => Some(Box::new(a.as_string::<i32>().iter())),
        DataType::LargeUtf8 => Some(Box::new(a.as_string::<i64>().iter())),
        DataType::Utf8View => Some(Box::new(a.as_string_view().iter())),
        _ => None,
    }
}

/// Id → dense index: a hash map built once per batch when many ids are
/// looked up, the registry's own index when few are (a batch of one
/// reading should not pay for a map of the whole registry).
enum Lookup<'a> {
    Map(HashMap<&'a str, u32>),
    Registry(&'a Registry),
}

impl<'a> Lookup<'a> {
    /// A lookup for about `lookups` ids.
    fn new(registry: &'a Registry, lookups: usize) -> Lookup<'a> {
        if lookups.saturating_mul(16) < registry.len() {
            return Lookup::Registry(registry);
        }
        Lookup::Map(
            registry
                .by_index()
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((p.id().as_str(), u32::try_from(i).ok()?)))
                .collect(),
        )
    }

    fn get(&self, id: &str) -> Option<u32> {
        match self {
            Lookup::Map(map) => map.get(id).copied(),
            Lookup::Registry(registry) => registry.find(id).map(|i| i.as_u32()),
        }
    }
}

fn unknown(id: &str) -> Error {
    Error::Core(CoreError::UnknownProsumer(id.to_owned()))
}

/// Dense indices of prosumer id chunks.
pub fn indices(column: &Column, registry: &Registry) -> Result<Vec<u32>> {
    // A dictionary chunk looks up its values, a string chunk every row.
    let lookups = column
        .0
        .iter()
        .map(|a| match a.as_any_dictionary_opt() {
            Some(d) => d.values().len(),
            None => a.len(),
        })
        .sum();
    let map = Lookup::new(registry, lookups);
    let mut out = Vec::with_capacity(column.len());
    let mut row = 0;
    for a in &column.0 {
        let missing = |i: usize| {
            Error::invalid(
                "missing_value",
                format!("row {}: prosumer_id is missing", row + i),
            )
            .at_row(row + i)
        };
        if let DataType::Dictionary(key, _) = a.data_type() {
            match key.as_ref() {
                DataType::Int8 => keyed::<Int8Type>(a, &map, &mut out, row)?,
                DataType::Int16 => keyed::<Int16Type>(a, &map, &mut out, row)?,
                DataType::Int32 => keyed::<Int32Type>(a, &map, &mut out, row)?,
                DataType::Int64 => keyed::<Int64Type>(a, &map, &mut out, row)?,
                DataType::UInt8 => keyed::<UInt8Type>(a, &map, &mut out, row)?,
                DataType::UInt16 => keyed::<UInt16Type>(a, &map, &mut out, row)?,
                DataType::UInt32 => keyed::<UInt32Type>(a, &map, &mut out, row)?,
                DataType::UInt64 => keyed::<UInt64Type>(a, &map, &mut out, row)?,
                other => {
                    return Err(Error::validation(format!(
                        "prosumer_id has dictionary keys of type {other}"
                    )))
                }
            }
        } else if let Some(values) = strings(a.as_ref()) {
            // The slower path: one hash lookup per row.
            for (i, s) in values.enumerate() {
                let s = s.ok_or_else(|| missing(i))?;
                out.push(map.get(s).ok_or_else(|| unknown(s))?);
            }
        } else {
            return Err(Error::invalid(
                "invalid_type",
                format!(
                    "prosumer_id must be strings or a dictionary (categorical) of strings, got {}",
                    a.data_type()
                ),
            )
            .with("type", a.data_type().to_string()));
        }
        row += a.len();
    }
    Ok(out)
}

/// Dictionary chunk: each dictionary value looked up once, then the keys
/// mapped.
fn keyed<K: ArrowDictionaryKeyType>(
    a: &ArrayRef,
    map: &Lookup<'_>,
    out: &mut Vec<u32>,
    row: usize,
) -> Result<()> {
    let dict: &DictionaryArray<K> = a.as_dictionary::<K>();
    let values = dict.values();
    let names: Vec<Option<&str>> = strings(values.as_ref())
        .ok_or_else(|| {
            Error::validation(format!(
                "prosumer_id is a dictionary of {}, not of strings",
                values.data_type()
            ))
        })?
        .collect();
    let found: Vec<Option<u32>> = names.iter().map(|n| n.and_then(|n| map.get(n))).collect();
    let keys: &PrimitiveArray<K> = dict.keys();
    if let Some(i) = first_null(keys) {
        return Err(Error::invalid(
            "missing_value",
            format!("row {}: prosumer_id is missing", row + i),
        )
        .at_row(row + i));
    }
    for (i, code) in keys.values().iter().enumerate() {
        let k = code
            .to_usize()
            .filter(|&k| k < found.len())
            .ok_or_else(|| {
                Error::validation(format!(
                    "row {}: prosumer_id code {code:?} is outside its dictionary",
                    row + i
                ))
            })?;
        match found[k] {
            Some(index) => out.push(index),
            None => {
                return Err(match names[k] {
                    Some(name) => unknown(name),
                    None => Error::invalid(
                        "missing_value",
                        format!("row {}: prosumer_id is missing", row + i),
                    )
                    .at_row(row + i),
                })
            }
        }
    }
    Ok(())
}

/// One wide frame: a start per row, a prosumer per column.
#[derive(Debug, Clone)]
pub struct Wide {
    /// The starts (the index of a pandas frame, or its `start` column).
    pub start: Column,
    /// The prosumer ids, one per column.
    pub ids: Vec<String>,
    /// The values, laid out as `by_time` says.
    pub values: Vec<i64>,
    /// Whether `values` go start by start (a row of `ids.len()` values per
    /// start, as a C-ordered numpy matrix) rather than prosumer by
    /// prosumer (a run of one value per start for each id).
    pub by_time: bool,
}

impl Wide {
    /// Row `i` of values laid out by time.
    fn row(&self, i: usize) -> Option<&[i64]> {
        let w = self.ids.len();
        self.values.get(i * w..(i + 1) * w)
    }

    /// The value of start `i` and prosumer column `j` of `n` starts.
    fn at(&self, i: usize, j: usize, n: usize) -> Option<i64> {
        let k = if self.by_time {
            i * self.ids.len() + j
        } else {
            j * n + i
        };
        self.values.get(k).copied()
    }
}

impl Wide {
    /// A wide frame: a pandas `DataFrame` indexed by `start` (or with a
    /// `start` column) with one integer column per prosumer id, or an
    /// Arrow table with a `start` column and one column per prosumer id.
    pub fn from_frame(frame: &Bound<'_, PyAny>, what: &str) -> Result<Wide> {
        let py = frame.py();
        if is_pandas(frame) && has(frame, "columns") {
            let mut frame = frame.clone();
            let names: Vec<Bound<'_, PyAny>> = frame
                .getattr(intern!(py, "columns"))?
                .call_method0(intern!(py, "tolist"))?
                .extract()?;
            if names.iter().any(|n| n.eq("start").unwrap_or(false)) {
                frame = frame.call_method1(intern!(py, "set_index"), ("start",))?;
            }
            let start = Column::extract(&frame.getattr(intern!(py, "index"))?, Role::Start)
                .map_err(|e| e.in_argument(format!("{what} (start)")))?;
            let ids = frame
                .getattr(intern!(py, "columns"))?
                .call_method0(intern!(py, "tolist"))?
                .try_iter()?
                .map(|c| Ok(c?.str()?.to_string()))
                .collect::<Result<Vec<String>>>()?;
            let (values, by_time) = pandas_matrix(&frame, what)?;
            Ok(Wide {
                start,
                ids,
                values,
                by_time,
            })
        } else if is_arrow(frame) {
            let batches: AnyRecordBatch = frame.extract()?;
            let reader = batches.into_reader()?;
            let schema = reader.schema();
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let Some(at) = names.iter().position(|n| n == "start") else {
                return Err(Error::validation(format!(
                    "{what}: a wide Arrow table needs a start column"
                )));
            };
            let mut columns = vec![Column::default(); names.len()];
            for batch in reader {
                let batch = batch
                    .map_err(|e| Error::validation(format!("cannot read the Arrow stream: {e}")))?;
                for (c, a) in columns.iter_mut().zip(batch.columns()) {
                    c.0.push(a.clone());
                }
            }
            let start = std::mem::take(&mut columns[at]);
            let mut ids = Vec::with_capacity(names.len().saturating_sub(1));
            let mut values = Vec::with_capacity(start.len() * ids.capacity());
            for (i, (name, column)) in names.into_iter().zip(&columns).enumerate() {
                if i != at {
                    values.extend(energies(column, &format!("{what}[{name:?}]"))?);
                    ids.push(name);
                }
            }
            Ok(Wide {
                start,
                ids,
                values,
                by_time: false,
            })
        } else {
            Err(Error::wrong_type(
                frame,
                "a pandas DataFrame or an Arrow table",
            ))
        }
    }
}

/// The values of a pandas frame of integer columns, in the order they
/// are in memory: row by row (`true`) for a C-ordered matrix, else column
/// by column.
fn pandas_matrix(frame: &Bound<'_, PyAny>, what: &str) -> Result<(Vec<i64>, bool)> {
    let py = frame.py();
    let values = frame.call_method0(intern!(py, "to_numpy"))?;
    let arr = values.cast::<PyUntypedArray>()?;
    let kind = arr
        .dtype()
        .getattr(intern!(py, "kind"))?
        .extract::<char>()?;
    let refuse = |m: &str| {
        Err(Error::invalid("invalid_type", format!("{what}: {m}"))
            .with("type", arr.dtype().to_string()))
    };
    match kind {
        'i' | 'u' => {}
        'f' => return refuse("the values are floats (a missing reading makes a pandas column float); energies are whole watt-hours: use integer columns"),
        'b' => return refuse("the values are booleans; energies are whole watt-hours: use integer columns"),
        _ => return refuse("every column must be an integer column of watt-hours"),
    }
    if kind == 'u' && arr.len() > 0 {
        // uint64 above i64::MAX would wrap to a negative number.
        let largest: u64 = values.call_method0(intern!(py, "max"))?.extract()?;
        if i64::try_from(largest).is_err() {
            return Err(Error::invalid(
                "out_of_range",
                format!("{what}: {largest} Wh does not fit a 64-bit integer"),
            )
            .with("value", largest));
        }
    }
    let values = if arr.dtype().is_equiv_to(&numpy::dtype::<i64>(py)) {
        values
    } else {
        values.call_method1(intern!(py, "astype"), ("int64",))?
    };
    let matrix: numpy::PyReadonlyArray2<'_, i64> = values.extract()?;
    if let Ok(rows) = matrix.as_slice() {
        return Ok((rows.to_vec(), true));
    }
    let view = matrix.as_array();
    let mut out = Vec::with_capacity(view.len());
    for column in view.columns() {
        match column.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(column.iter().copied()),
        }
    }
    Ok((out, false))
}

/// Builds the core's columns of two wide frames, prosumer by prosumer.
pub fn wide_columns(
    produced: &Wide,
    consumed: &Wide,
    assume_utc: bool,
    registry: &Registry,
) -> Result<ReadingColumns> {
    let starts =
        seconds(&produced.start, assume_utc).map_err(|e| e.in_argument("produced_wh (start)"))?;
    if seconds(&consumed.start, assume_utc).map_err(|e| e.in_argument("consumed_wh (start)"))?
        != starts
    {
        return Err(Error::invalid(
            "shape_mismatch",
            "produced and consumed have different starts; give both frames the same index",
        ));
    }
    let map = Lookup::new(registry, produced.ids.len());
    let position: HashMap<&str, usize> = consumed
        .ids
        .iter()
        .enumerate()
        .map(|(j, id)| (id.as_str(), j))
        .collect();
    if produced.ids.len() != consumed.ids.len()
        || produced
            .ids
            .iter()
            .any(|id| !position.contains_key(id.as_str()))
    {
        return Err(Error::invalid(
            "shape_mismatch",
            "produced and consumed have different prosumer columns",
        ));
    }
    let n = starts.len();
    let width = produced.ids.len();
    let total = n * width;
    if produced.values.len() != total || consumed.values.len() != total {
        return Err(Error::invalid(
            "shape_mismatch",
            "a wide frame has another number of values than its shape says",
        ));
    }
    // Per produced column: its dense index and its column in consumed.
    let columns = produced
        .ids
        .iter()
        .enumerate()
        .map(|(j, id)| {
            let index = map.get(id.as_str()).ok_or_else(|| unknown(id))?;
            Ok((j, index, position.get(id.as_str()).copied().unwrap_or(j)))
        })
        .collect::<Result<Vec<(usize, u32, usize)>>>()?;
    let mut cols = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    let mut push = |i: usize, &(j, index, k): &(usize, u32, usize)| -> Result<()> {
        let (Some(p), Some(c)) = (produced.at(i, j, n), consumed.at(i, k, n)) else {
            return Err(Error::invalid(
                "shape_mismatch",
                "a wide frame is shorter than its shape",
            ));
        };
        cols.0.push(starts[i]);
        cols.1.push(index);
        cols.2.push(p);
        cols.3.push(c);
        Ok(())
    };
    let indices: Vec<u32> = columns.iter().map(|c| c.1).collect();
    let same_order = columns.iter().all(|&(j, _, k)| j == k);
    if same_order && produced.by_time && consumed.by_time {
        // Both C-ordered matrices with the same columns: whole rows at once.
        for (i, &start) in starts.iter().enumerate() {
            let (Some(p), Some(c)) = (produced.row(i), consumed.row(i)) else {
                return Err(Error::invalid(
                    "shape_mismatch",
                    "a wide frame is shorter than its shape",
                ));
            };
            cols.0.extend(std::iter::repeat_n(start, width));
            cols.1.extend_from_slice(&indices);
            cols.2.extend_from_slice(p);
            cols.3.extend_from_slice(c);
        }
        return Ok(ReadingColumns::new(cols.0, cols.1, cols.2, cols.3)?);
    }
    // In the order the produced values are in memory.
    if produced.by_time {
        for i in 0..n {
            for column in &columns {
                push(i, column)?;
            }
        }
    } else {
        for column in &columns {
            for i in 0..n {
                push(i, column)?;
            }
        }
    }
    Ok(ReadingColumns::new(cols.0, cols.1, cols.2, cols.3)?)
}

//! The one place where Rust errors become Python exceptions.
//!
//! ```text
//! MicrogridError
//! ├── ValidationError   bad input: types, ids, readings, prices, addresses, times
//! ├── ConflictError     a reading that differs from a cleared one, a duplicate id,
//! │                     a period settled or paid otherwise, a paid settlement voided,
//! │                     a write into a month archived (detached) in PostgreSQL,
//! │                     a wallet address another settlement gave out
//! ├── NotFoundError     an unknown prosumer, settlement or period not cleared
//! ├── StorageError      the database failed
//! └── SettlementError   rates, networks, fees, inputs that do not cover a batch,
//!                       a voided settlement paid
//! ```
//!
//! Every exception the package raises is built here and carries two
//! attributes besides its message (`str(e)`):
//!
//! - `kind`: a stable snake-case name of what went wrong. A refusal of the
//!   domain or of a store is the Rust error's own `kind()`
//!   (`"late_reading"`, `"settlement_conflict"`, `"database"`, ...); the
//!   binding's own refusals are `"invalid_type"` (a value of the wrong
//!   type: a float for money, a bool for watt-hours, ...),
//!   `"invalid_value"` (the right type, an unusable value: NaN, an
//!   unreadable column, ...), `"out_of_range"` (a number too large or too
//!   small for what it is), `"naive_datetime"`, `"subsecond_time"`,
//!   `"missing_value"` (None, NaN or NaT in a column) and
//!   `"shape_mismatch"` (columns or frames that do not line up).
//! - `details`: a new `dict` with at least `"message"` (the message) and
//!   the offending values by name, as Python values: the fields of the
//!   Rust error (`{"id": "a", "start": datetime(...)}` for
//!   `late_reading`), and for an input of a call `"argument"` (the
//!   parameter or column it was passed as), `"row"` (its row in a
//!   column), `"value"` (the value itself) and `"type"` (its type's
//!   name), where known.
//!
//! A Python exception raised while reading an input (a `TypeError` of a
//! pandas call, an iterator that fails) becomes a `ValidationError` with the
//! original as its `__cause__` (so does a `PanicException` of another PyO3
//! library, polars say); other exceptions that are not `Exception`s
//! (`KeyboardInterrupt`) and `MemoryError` pass as they are.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::Error as CoreError;
use microgrid_store::error::redact_url;
use microgrid_store::StoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyMemoryError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use rust_decimal::Decimal;

create_exception!(
    microgrid,
    MicrogridError,
    PyException,
    "Base class of every microgrid error; `kind` names what went wrong, `details` holds the values."
);
create_exception!(
    microgrid,
    ValidationError,
    MicrogridError,
    "An input was rejected; nothing was stored."
);
create_exception!(
    microgrid,
    ConflictError,
    MicrogridError,
    "An input conflicts with what is stored."
);
create_exception!(
    microgrid,
    NotFoundError,
    MicrogridError,
    "Something looked up does not exist."
);
create_exception!(
    microgrid,
    StorageError,
    MicrogridError,
    "The database failed."
);
create_exception!(
    microgrid,
    SettlementError,
    MicrogridError,
    "A settlement cannot be made or paid."
);

/// A value of an exception's `details`, held without the GIL.
#[derive(Debug)]
pub enum Detail {
    /// A `str`.
    Str(String),
    /// An `int`.
    Int(i128),
    /// A tz-aware UTC `datetime`.
    Time(DateTime<Utc>),
    /// A `date`.
    Date(NaiveDate),
    /// A `decimal.Decimal`.
    Decimal(Decimal),
    /// A `list` of `str`.
    List(Vec<String>),
    /// A Python object as it was passed.
    Py(Py<PyAny>),
}

impl Detail {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Detail::Str(s) => s.into_pyobject(py)?.into_any(),
            Detail::Int(i) => i.into_pyobject(py)?.into_any(),
            Detail::Time(t) => t.into_pyobject(py)?.into_any(),
            Detail::Date(d) => d.into_pyobject(py)?.into_any(),
            Detail::Decimal(d) => d.into_pyobject(py)?.into_any(),
            Detail::List(l) => l.into_pyobject(py)?.into_any(),
            Detail::Py(o) => o.bind(py).clone(),
        })
    }

    /// As Python, or its text if it does not convert (a time with
    /// nanoseconds, say): details never fail to build.
    fn to_py_or_text<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self.to_py(py) {
            Ok(v) => v,
            Err(_) => {
                let text = match self {
                    Detail::Time(t) => t.to_rfc3339(),
                    other => format!("{other:?}"),
                };
                pyo3::types::PyString::new(py, &text).into_any()
            }
        }
    }
}

impl From<&str> for Detail {
    fn from(v: &str) -> Detail {
        Detail::Str(v.to_owned())
    }
}
impl From<String> for Detail {
    fn from(v: String) -> Detail {
        Detail::Str(v)
    }
}
impl From<Cow<'_, str>> for Detail {
    fn from(v: Cow<'_, str>) -> Detail {
        Detail::Str(v.into_owned())
    }
}
macro_rules! int_detail {
    ($($t:ty),*) => {$(
        impl From<$t> for Detail {
            fn from(v: $t) -> Detail {
                Detail::Int(i128::from(v))
            }
        }
    )*};
}
int_detail!(i64, u64, u32, i32, u8);
impl From<usize> for Detail {
    fn from(v: usize) -> Detail {
        Detail::Int(i128::try_from(v).unwrap_or(i128::MAX))
    }
}
impl From<DateTime<Utc>> for Detail {
    fn from(v: DateTime<Utc>) -> Detail {
        Detail::Time(v)
    }
}
impl From<NaiveDate> for Detail {
    fn from(v: NaiveDate) -> Detail {
        Detail::Date(v)
    }
}
impl From<Decimal> for Detail {
    fn from(v: Decimal) -> Detail {
        Detail::Decimal(v)
    }
}
impl From<Vec<String>> for Detail {
    fn from(v: Vec<String>) -> Detail {
        Detail::List(v)
    }
}
impl From<&Bound<'_, PyAny>> for Detail {
    fn from(v: &Bound<'_, PyAny>) -> Detail {
        Detail::Py(v.clone().unbind())
    }
}

/// Details by name.
pub type Details = Vec<(&'static str, Detail)>;

/// An input the binding itself refuses.
#[derive(Debug)]
pub struct Invalid {
    /// The exception's `kind`.
    pub kind: &'static str,
    /// The message.
    pub message: String,
    /// The exception's `details` besides the message.
    pub details: Details,
}

/// Where in the call an error is: which argument (or column), which row.
#[derive(Debug)]
pub struct Context {
    /// The argument or column.
    pub argument: Option<Cow<'static, str>>,
    /// The row of a column.
    pub row: Option<usize>,
    /// The error.
    pub error: Error,
}

/// Every error of the binding, so that `?` works on domain, store and
/// Python errors alike; it becomes a Python exception in one place,
/// `From<Error> for PyErr`.
#[derive(Debug)]
pub enum Error {
    /// A Python error: a `MicrogridError` or `BaseException` passes as it
    /// is, any other becomes a `ValidationError` caused by it.
    Py(PyErr),
    /// The domain refused something.
    Core(CoreError),
    /// The store failed or refused something.
    Store(StoreError),
    /// An input the binding itself refuses (a wrong type or shape).
    Invalid(Box<Invalid>),
    /// An error about one argument (and row) of the call.
    In(Box<Context>),
}

/// Results of the binding.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name of `value`'s type, `numpy.float32` or `float`.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    let t = value.get_type();
    let name = t.name().map(|n| n.to_string()).unwrap_or_default();
    match t.module() {
        Ok(m) if m.to_string_lossy() != "builtins" => format!("{}.{name}", m.to_string_lossy()),
        _ => name,
    }
}

impl Error {
    /// A `ValidationError` of `kind` with `message`.
    pub fn invalid(kind: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid(Box::new(Invalid {
            kind,
            message: message.into(),
            details: Vec::new(),
        }))
    }

    /// An `"invalid_value"` `ValidationError` with `message`.
    pub fn validation(message: impl Into<String>) -> Error {
        Error::invalid("invalid_value", message)
    }

    /// An `"invalid_type"` `ValidationError`: `value` is not `expected`.
    pub fn wrong_type(value: &Bound<'_, PyAny>, expected: &str) -> Error {
        let shown = crate::conversions::shown(value);
        let ty = type_name(value);
        Error::invalid(
            "invalid_type",
            format!("expected {expected}, got {shown} of type {ty}"),
        )
        .with("value", value)
        .with("type", ty)
    }

    /// The same error with the detail `key`: `value` (binding refusals
    /// only; the domain's errors carry their own fields).
    pub fn with(self, key: &'static str, value: impl Into<Detail>) -> Error {
        match self {
            Error::Invalid(mut i) => {
                i.details.push((key, value.into()));
                Error::Invalid(i)
            }
            Error::In(mut c) => {
                c.error = c.error.with(key, value);
                Error::In(c)
            }
            other => other,
        }
    }

    /// The same error about argument (or column) `name`, unless it already
    /// names one.
    pub fn in_argument(self, name: impl Into<Cow<'static, str>>) -> Error {
        match self {
            Error::In(mut c) => {
                if c.argument.is_none() {
                    c.argument = Some(name.into());
                }
                Error::In(c)
            }
            other => Error::In(Box::new(Context {
                argument: Some(name.into()),
                row: None,
                error: other,
            })),
        }
    }

    /// The same error about row `row`, unless it already names one.
    pub fn at_row(self, row: usize) -> Error {
        match self {
            Error::In(mut c) => {
                if c.row.is_none() {
                    c.row = Some(row);
                }
                Error::In(c)
            }
            other => Error::In(Box::new(Context {
                argument: None,
                row: Some(row),
                error: other,
            })),
        }
    }

    /// The domain error inside, if it is one.
    pub fn core(&self) -> Option<&CoreError> {
        match self {
            Error::Core(e) | Error::Store(StoreError::Domain(e)) => Some(e),
            Error::In(c) => c.error.core(),
            _ => None,
        }
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Error {
        Error::Py(e)
    }
}

impl From<pyo3::CastError<'_, '_>> for Error {
    fn from(e: pyo3::CastError<'_, '_>) -> Error {
        Error::Py(e.into())
    }
}

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Error {
        Error::Core(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::Domain(e) => Error::Core(e),
            other => Error::Store(other),
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| exception(py, e, None, None))
    }
}

/// An exception of `class` with `kind`, `message` and `details`.
fn build(
    py: Python<'_>,
    class: Bound<'_, PyType>,
    kind: &str,
    message: String,
    details: Details,
    context: (Option<&str>, Option<usize>),
) -> PyErr {
    let err = PyErr::from_type(class, message.clone());
    let value = err.value(py);
    let d = PyDict::new(py);
    let _ = d.set_item("message", &message);
    for (key, detail) in &details {
        let _ = d.set_item(*key, detail.to_py_or_text(py));
    }
    if let Some(argument) = context.0 {
        let _ = d.set_item("argument", argument);
    }
    if let Some(row) = context.1 {
        let _ = d.set_item("row", row);
    }
    let _ = value.setattr("kind", kind);
    let _ = value.setattr("details", d);
    err
}

/// `message` with the argument and row in front, unless it names them.
fn in_context(message: String, argument: Option<&str>, row: Option<usize>) -> String {
    let mut prefix = String::new();
    if let Some(a) = argument {
        if !names(&message, a) {
            prefix.push_str(a);
            prefix.push_str(": ");
        }
    }
    if let Some(r) = row {
        let shown = format!("row {r}");
        if !message.contains(&shown) {
            prefix.push_str(&shown);
            prefix.push_str(": ");
        }
    }
    prefix + &message
}

/// Whether `message` has `word` as a word of its own (`start`, not
/// `starting`).
fn names(message: &str, word: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    message.match_indices(word).any(|(i, _)| {
        !part(message[..i].chars().next_back()) && !part(message[i + word.len()..].chars().next())
    })
}

fn exception(py: Python<'_>, e: Error, argument: Option<&str>, row: Option<usize>) -> PyErr {
    let ctx = (argument, row);
    match e {
        Error::In(c) => {
            let argument = c.argument.as_deref().or(argument);
            exception(py, c.error, argument, c.row.or(row))
        }
        Error::Invalid(i) => build(
            py,
            py.get_type::<ValidationError>(),
            i.kind,
            in_context(i.message, argument, row),
            i.details,
            ctx,
        ),
        Error::Core(e) => {
            let (class, details) = core_error(py, &e);
            build(
                py,
                class,
                e.kind(),
                in_context(e.to_string(), argument, row),
                details,
                ctx,
            )
        }
        Error::Store(StoreError::Domain(e)) => exception(py, Error::Core(e), argument, row),
        Error::Store(e) => {
            let (class, details) = store_error(py, &e);
            build(
                py,
                class,
                e.kind(),
                in_context(e.to_string(), argument, row),
                details,
                ctx,
            )
        }
        Error::Py(e) => python_error(py, e, argument, row),
    }
}

/// A Python error: ours and non-`Exception`s as they are, others as a
/// `ValidationError` caused by them.
fn python_error(py: Python<'_>, e: PyErr, argument: Option<&str>, row: Option<usize>) -> PyErr {
    let value = e.value(py);
    if e.is_instance_of::<MicrogridError>(py) {
        // Built here already; one raised elsewhere gets the attributes.
        if !value.hasattr("kind").unwrap_or(true) {
            let _ = value.setattr("kind", "error");
        }
        if !value.hasattr("details").unwrap_or(true) {
            let d = PyDict::new(py);
            let _ = d.set_item("message", value.to_string());
            let _ = value.setattr("details", d);
        }
        return e;
    }
    // A panic of another PyO3 library (polars converting the caller's
    // values, say) is a BaseException; it is about the input all the same.
    let panic = value
        .get_type()
        .name()
        .is_ok_and(|n| n.to_string_lossy() == "PanicException");
    if !panic && (!e.is_instance_of::<PyException>(py) || e.is_instance_of::<PyMemoryError>(py)) {
        return e;
    }
    let kind = if e.is_instance_of::<PyTypeError>(py) {
        "invalid_type"
    } else if e.is_instance_of::<PyOverflowError>(py) {
        "out_of_range"
    } else {
        "invalid_value"
    };
    let name = type_name(value.as_any());
    let message = in_context(format!("{name}: {value}"), argument, row);
    let out = build(
        py,
        py.get_type::<ValidationError>(),
        kind,
        message,
        vec![("error", Detail::Str(name))],
        (argument, row),
    );
    out.set_cause(py, Some(e));
    out
}

fn core_error<'py>(py: Python<'py>, e: &CoreError) -> (Bound<'py, PyType>, Details) {
    use CoreError as E;
    let class = match e {
        E::ConflictingReading { .. }
        | E::LateReading { .. }
        | E::AlreadyPaid { .. }
        | E::SettlementConflict { .. }
        | E::CannotVoidPaid { .. }
        | E::ClearedInOtherCurrency { .. }
        | E::DuplicateProsumer(_)
        | E::DuplicateReading { .. }
        | E::BatteryHistory { .. } => py.get_type::<ConflictError>(),
        E::UnknownProsumer(_) | E::PeriodNotCleared { .. } => py.get_type::<NotFoundError>(),
        E::RateOutOfRange { .. }
        | E::CurrencyMismatch { .. }
        | E::MixedNetworks { .. }
        | E::InsufficientInputs { .. }
        | E::InvalidFeeRate { .. }
        | E::PayoutBelowDustAfterFee { .. }
        | E::TransactionMismatch { .. }
        | E::InvalidPaymentUri { .. }
        | E::InvalidLightningInvoice { .. }
        | E::InvalidTxid(_)
        | E::SettlementVoided { .. }
        | E::InvalidSettlement { .. }
        | E::Psbt(_) => py.get_type::<SettlementError>(),
        _ => py.get_type::<ValidationError>(),
    };
    (class, core_details(e))
}

/// The fields of a domain error, by name.
fn core_details(e: &CoreError) -> Details {
    use CoreError as E;
    fn d(v: impl Into<Detail>) -> Detail {
        v.into()
    }
    match e {
        E::InvalidProsumerId { id, reason } => vec![("id", d(id.as_str())), ("reason", d(*reason))],
        E::InvalidName { id, reason } => vec![("id", d(id.as_str())), ("reason", d(*reason))],
        E::InvalidText { what, reason } => vec![("what", d(*what)), ("reason", d(*reason))],
        E::InvalidSettlement { id, reason } => {
            vec![("id", d(id.as_str())), ("reason", d(reason.as_str()))]
        }
        E::UnknownProsumerKind(v) | E::UnknownNetwork(v) | E::InvalidCurrency(v) => {
            vec![("value", d(v.as_str()))]
        }
        E::LeftBeforeJoined { id, joined, left } => vec![
            ("id", d(id.as_str())),
            ("joined", d(*joined)),
            ("left", d(*left)),
        ],
        E::DuplicateProsumer(id) | E::UnknownProsumer(id) => vec![("id", d(id.as_str()))],
        E::InactiveProsumer { id, start }
        | E::DuplicateReading { id, start }
        | E::ConflictingReading { id, start }
        | E::LateReading { id, start } => vec![("id", d(id.as_str())), ("start", d(*start))],
        E::InvalidAddress { address, reason } => {
            vec![
                ("address", d(address.as_str())),
                ("reason", d(reason.as_str())),
            ]
        }
        E::WrongNetwork { address, network } => vec![
            ("address", d(address.as_str())),
            ("network", d(network.as_str())),
        ],
        E::InvalidTimeframeLength { minutes } => vec![("minutes", d(*minutes))],
        E::MisalignedTimeframe { start, minutes } => {
            vec![("start", d(*start)), ("minutes", d(*minutes))]
        }
        E::InvalidRange { start, end, reason } => vec![
            ("start", d(*start)),
            ("end", d(*end)),
            ("reason", d(*reason)),
        ],
        E::NegativeEnergy {
            id,
            start,
            what,
            value,
        } => vec![
            ("id", d(id.as_str())),
            ("start", d(*start)),
            ("what", d(*what)),
            ("value", d(*value)),
        ],
        E::ImplausibleEnergy {
            id,
            start,
            what,
            value,
            limit,
        } => vec![
            ("id", d(id.as_str())),
            ("start", d(*start)),
            ("what", d(*what)),
            ("value", d(*value)),
            ("limit", d(*limit)),
        ],
        E::TimeframeNotEnded { start, now } => vec![("start", d(*start)), ("now", d(*now))],
        E::AlreadyPaid { id, paid, txid } => vec![
            ("id", d(id.as_str())),
            ("paid", d(paid.as_str())),
            ("txid", d(txid.as_str())),
        ],
        E::SettlementConflict {
            start,
            end,
            existing,
            differs,
        } => vec![
            ("start", d(*start)),
            ("end", d(*end)),
            ("existing", d(existing.as_str())),
            ("differs", d(differs.clone())),
        ],
        E::CannotVoidPaid { id, txid } => {
            vec![("id", d(id.as_str())), ("txid", d(txid.as_str()))]
        }
        E::SettlementVoided { id, reason } => {
            vec![("id", d(id.as_str())), ("reason", d(reason.as_str()))]
        }
        E::ClearedInOtherCurrency {
            start,
            cleared,
            billed,
        } => vec![
            ("start", d(*start)),
            ("cleared", d(cleared.as_str())),
            ("billed", d(billed.as_str())),
        ],
        E::MixedTimeframeLength {
            id,
            start,
            expected,
            found,
        } => vec![
            ("id", d(id.as_str())),
            ("start", d(*start)),
            ("expected", d(*expected)),
            ("found", d(*found)),
        ],
        E::InvalidPrice {
            what,
            value,
            reason,
        }
        | E::InvalidAmount {
            what,
            value,
            reason,
        } => vec![
            ("what", d(*what)),
            ("value", d(*value)),
            ("reason", d(*reason)),
        ],
        E::TooLarge { what, found, max } => {
            vec![("what", d(*what)), ("found", d(*found)), ("max", d(*max))]
        }
        E::Overflow(what) => vec![("what", d(*what))],
        E::ShapeMismatch(reason) | E::Psbt(reason) => vec![("reason", d(reason.as_str()))],
        E::PeriodNotCleared { start }
        | E::MixedMechanisms { start }
        | E::DuplicateClearing { start } => vec![("start", d(*start))],
        E::RateOutOfRange { rate, currency } => {
            vec![("rate", d(*rate)), ("currency", d(currency.as_str()))]
        }
        E::CurrencyMismatch { bills, rate } => {
            vec![("bills", d(bills.as_str())), ("rate", d(rate.as_str()))]
        }
        E::MixedNetworks {
            id,
            expected,
            found,
        } => vec![
            ("id", d(id.as_str())),
            ("expected", d(expected.as_str())),
            ("found", d(found.as_str())),
        ],
        E::InsufficientInputs { needed, available } => {
            vec![("needed", d(*needed)), ("available", d(*available))]
        }
        E::InvalidFeeRate { sat_per_vb } => vec![("sat_per_vb", d(*sat_per_vb))],
        E::InvalidTxid(txid) => vec![("txid", d(txid.as_str()))],
        E::PayoutBelowDustAfterFee {
            address,
            payout,
            fee_share,
            dust_limit,
        } => vec![
            ("address", d(address.as_str())),
            ("payout", d(*payout)),
            ("fee_share", d(*fee_share)),
            ("dust_limit", d(*dust_limit)),
        ],
        E::TransactionMismatch { txid, reason } => {
            vec![("txid", d(txid.as_str())), ("reason", d(reason.as_str()))]
        }
        E::InvalidPaymentUri { uri, reason } => {
            vec![("uri", d(uri.as_str())), ("reason", d(reason.as_str()))]
        }
        E::InvalidOffer { offer, reason } => {
            vec![("offer", d(offer.as_str())), ("reason", d(reason.as_str()))]
        }
        E::InvalidLightningInvoice { invoice, reason } => {
            vec![
                ("invoice", d(invoice.as_str())),
                ("reason", d(reason.as_str())),
            ]
        }
        E::InvalidDescriptor { descriptor, reason } => vec![
            ("descriptor", d(descriptor.as_str())),
            ("reason", d(reason.as_str())),
        ],
        E::Parse { what, input } => vec![("what", d(*what)), ("input", d(input.as_str()))],
        E::UnknownTimeZone(name) => vec![("value", d(name.as_str()))],
        E::InvalidTimeOfUse { window, reason } => {
            vec![("window", d(window.as_str())), ("reason", d(*reason))]
        }
        E::TariffNotAligned { what, minutes } => {
            vec![("what", d(what.as_str())), ("minutes", d(*minutes))]
        }
        E::InvalidBattery { id, input, reason } => vec![
            ("id", d(id.as_str())),
            ("input", d(*input)),
            ("reason", d(reason.as_str())),
        ],
        E::BatteryHistory { id, start, reason } => vec![
            ("id", d(id.as_str())),
            ("start", d(*start)),
            ("reason", d(reason.as_str())),
        ],
        _ => Vec::new(),
    }
}

fn store_error<'py>(py: Python<'py>, e: &StoreError) -> (Bound<'py, PyType>, Details) {
    match e {
        StoreError::Domain(e) => core_error(py, e),
        StoreError::NotFound { what, key } => (
            py.get_type::<NotFoundError>(),
            vec![("what", (*what).into()), ("key", key.as_str().into())],
        ),
        StoreError::Url { url, reason } => (
            py.get_type::<ValidationError>(),
            vec![
                ("url", redact_url(url).into()),
                ("reason", reason.as_str().into()),
            ],
        ),
        StoreError::Database { operation, message } => (
            py.get_type::<StorageError>(),
            vec![
                ("operation", (*operation).into()),
                ("reason", message.as_str().into()),
            ],
        ),
        StoreError::Corrupt { what, value } => (
            py.get_type::<StorageError>(),
            vec![("what", (*what).into()), ("value", value.as_str().into())],
        ),
        // A write into a month an operator archived, or a detach refused:
        // the store's state forbids it, like a conflicting settlement.
        StoreError::MonthArchived { month } => (
            py.get_type::<ConflictError>(),
            vec![("month", month.as_str().into())],
        ),
        StoreError::MonthNotDetachable { month, reason } => (
            py.get_type::<ConflictError>(),
            vec![
                ("month", month.as_str().into()),
                ("reason", reason.as_str().into()),
            ],
        ),
        // An address of the operator's wallet that another settlement gave
        // out (another process kept settling with the wallet meanwhile).
        StoreError::WalletAddressTaken {
            settlement,
            wallet,
            keychain,
            index,
            address,
            holder,
        } => {
            let mut details: Details = vec![
                ("settlement", settlement.as_str().into()),
                ("wallet", wallet.as_str().into()),
                ("keychain", (*keychain).into()),
                ("index", (*index).into()),
                ("holder", holder.as_str().into()),
            ];
            if let Some(a) = address {
                details.push(("address", a.as_str().into()));
            }
            (py.get_type::<ConflictError>(), details)
        }
        _ => (py.get_type::<StorageError>(), Vec::new()),
    }
}

/// `_refused(argument, error)`: the `MicrogridError` that `error`, raised
/// while reading `argument`, becomes (for the package's Python helpers,
/// so that their errors are built here too).
#[pyfunction]
fn _refused(py: Python<'_>, argument: String, error: Bound<'_, PyAny>) -> Py<PyAny> {
    let e = Error::Py(PyErr::from_value(error)).in_argument(argument);
    PyErr::from(e).into_value(py).into_any()
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MicrogridError", py.get_type::<MicrogridError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("SettlementError", py.get_type::<SettlementError>())?;
    m.add_function(wrap_pyfunction!(_refused, m)?)?;
    Ok(())
}

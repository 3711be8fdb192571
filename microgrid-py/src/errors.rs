//! The one place where Rust errors become Python exceptions.
//!
//! ```text
//! MicrogridError
//! ├── ValidationError   bad input: ids, readings, prices, addresses, times
//! ├── ConflictError     a reading that differs from a cleared one, a duplicate id
//! ├── NotFoundError     an unknown prosumer, settlement or period not cleared
//! ├── StorageError      the database failed
//! └── SettlementError   rates, networks, inputs that do not cover a batch
//! ```

use microgrid_core::Error as CoreError;
use microgrid_store::StoreError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    microgrid,
    MicrogridError,
    PyException,
    "Base class of every microgrid error."
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

/// Every error of the binding, so that `?` works on domain, store and
/// Python errors alike; it becomes a Python exception in one place,
/// `From<Error> for PyErr`.
#[derive(Debug)]
pub enum Error {
    /// A Python error, passed through as it is.
    Py(PyErr),
    /// The domain refused something.
    Core(CoreError),
    /// The store failed or refused something.
    Store(StoreError),
    /// An input the binding itself refuses (a wrong type or shape).
    Validation(String),
}

/// Results of the binding.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`ValidationError`] with `message`.
    pub fn validation(message: impl Into<String>) -> Error {
        Error::Validation(message.into())
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
        match e {
            Error::Py(e) => e,
            Error::Core(e) => core_error(e),
            Error::Store(e) => store_error(e),
            Error::Validation(message) => ValidationError::new_err(message),
        }
    }
}

fn core_error(e: CoreError) -> PyErr {
    let message = e.to_string();
    match e {
        CoreError::ConflictingReading { .. }
        | CoreError::LateReading { .. }
        | CoreError::AlreadyPaid { .. }
        | CoreError::SettlementConflict { .. }
        | CoreError::DuplicateProsumer(_)
        | CoreError::DuplicateReading { .. } => ConflictError::new_err(message),
        CoreError::UnknownProsumer(_) | CoreError::PeriodNotCleared { .. } => {
            NotFoundError::new_err(message)
        }
        CoreError::RateOutOfRange { .. }
        | CoreError::CurrencyMismatch { .. }
        | CoreError::MixedNetworks { .. }
        | CoreError::InsufficientInputs { .. }
        | CoreError::InvalidFeeRate(_)
        | CoreError::InvalidTxid(_)
        | CoreError::Psbt(_) => SettlementError::new_err(message),
        _ => ValidationError::new_err(message),
    }
}

fn store_error(e: StoreError) -> PyErr {
    match e {
        StoreError::Domain(e) => core_error(e),
        StoreError::NotFound { .. } => NotFoundError::new_err(e.to_string()),
        StoreError::Url { .. } => ValidationError::new_err(e.to_string()),
        other => StorageError::new_err(other.to_string()),
    }
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
    Ok(())
}

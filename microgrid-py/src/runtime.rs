//! One private tokio runtime for the binding; database calls run on it
//! with the GIL released.

use std::future::Future;
use std::sync::OnceLock;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{Error, Result, StorageError};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

fn runtime() -> PyResult<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| StorageError::new_err(format!("cannot start the async runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `future` to completion with the GIL released. Ctrl-C in Python
/// is seen as soon as the call returns.
pub fn block_on<F, T>(py: Python<'_>, future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    let out = py.detach(|| rt.block_on(future));
    py.check_signals().map_err(Error::from)?;
    out
}

//! One private tokio runtime for the binding; database calls run on it
//! with the GIL released.

use std::future::Future;
use std::sync::OnceLock;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{Error, Result};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

fn runtime() -> Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            Error::Store(microgrid_store::StoreError::Database {
                operation: "starting the async runtime",
                message: e.to_string(),
            })
        })?;
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

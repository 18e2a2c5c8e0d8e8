//! `rustybt compare RUN_A RUN_B [...]`: results folders side by side, and with `--match` each
//! run's decisions and fills matched against the first (live or paper against the backtest).
//!
//! Thin on purpose: the comparison is `rustybt_api.report.compare`, run in the embedded
//! interpreter like the report.

use std::io::Write;
use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::CompareArgs;
use super::doctor::start_python;
use super::report::call_driver;
use crate::error::{Error, ExitCode};

pub fn compare(explicit_python: Option<&Path>, args: CompareArgs) -> Result<ExitCode, Error> {
    if let Some(missing) = args.runs.iter().find(|dir| !dir.is_dir()) {
        return Err(Error::usage_with_hint(
            format!("results folder `{}` does not exist", missing.display()),
            "give the folders runs wrote (`rustybt run --out DIR`, `rustybt live --out DIR`)",
        ));
    }
    start_python(explicit_python, &[])?;
    let text = Python::attach(|py| -> Result<String, Error> {
        let runs: Vec<String> = args.runs.iter().map(|p| p.display().to_string()).collect();
        let kwargs = PyDict::new(py);
        let html = args.html.as_ref().map(|p| p.display().to_string());
        (|| -> PyResult<()> {
            kwargs.set_item("html", html)?;
            kwargs.set_item("match_fills", args.match_fills)
        })()
        .map_err(|e| Error::Internal(format!("calling the compare driver: {e}")))?;
        call_driver(py, "rustybt_api.report.compare", (runs,), &kwargs)?
            .extract::<String>()
            .map_err(|e| Error::Internal(format!("the compare driver returned no text: {e}")))
    })?;
    // stdout may be a closed pipe (`| head`).
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{text}");
    let _ = stdout.flush();
    Ok(ExitCode::Success)
}

//! `rustybt report RUN_DIR` and `rustybt run --report`: the HTML (and PDF) report of a results
//! folder.
//!
//! Thin on purpose: the report (reading the folder, reducing series, the plotly charts, the
//! page, printing through Chromium) is the Python module `rustybt_api.report`, run in the
//! embedded interpreter; it works the same from a notebook (`results.load(dir).report()`).

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ReportArgs;
use super::doctor::start_python;
use crate::error::{Error, ExitCode};

pub fn report(explicit_python: Option<&Path>, args: ReportArgs) -> Result<ExitCode, Error> {
    if !args.run_dir.is_dir() {
        return Err(Error::usage_with_hint(
            format!("results folder `{}` does not exist", args.run_dir.display()),
            "give the folder a run wrote (`rustybt run --out DIR`, default runs/<date>-<time>)",
        ));
    }
    if args.window < 2 {
        return Err(Error::usage("`--window` must be at least 2 days"));
    }
    start_python(explicit_python, &[])?;
    let written = Python::attach(|py| write(py, &args))?;
    for path in written {
        outln!("{}", path.display());
    }
    Ok(ExitCode::Success)
}

/// After `rustybt run --report`: the report of the folder just written, in the interpreter
/// the run already started.
pub(super) fn after_run(py: Python<'_>, run_dir: &Path) -> Result<(), Error> {
    let args = ReportArgs {
        run_dir: run_dir.to_path_buf(),
        ..ReportArgs::default()
    };
    for path in write(py, &args)? {
        errln!("report: {}", path.display());
    }
    Ok(())
}

fn write(py: Python<'_>, args: &ReportArgs) -> Result<Vec<PathBuf>, Error> {
    let kwargs = PyDict::new(py);
    (|| -> PyResult<()> {
        kwargs.set_item("out", args.out.as_ref().map(|p| p.display().to_string()))?;
        kwargs.set_item("pdf", args.pdf)?;
        kwargs.set_item("benchmark", args.benchmark.clone())?;
        kwargs.set_item("window", args.window)?;
        Ok(())
    })()
    .map_err(|err| driver_error(py, err))?;
    let run_dir = args.run_dir.display().to_string();
    call_driver(py, "rustybt_api.report", (run_dir,), &kwargs)?
        .extract::<Vec<PathBuf>>()
        .map_err(|err| driver_error(py, err))
}

/// Calls `main` of the Python driver `module`. A `ReportError` it raises is a usage error
/// (exit 2) with its hint; any other exception is a bug, reported with its traceback.
pub(super) fn call_driver<'py>(
    py: Python<'py>,
    module: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    kwargs: &Bound<'py, PyDict>,
) -> Result<Bound<'py, PyAny>, Error> {
    py.import(module)
        .and_then(|m| m.getattr("main"))
        .and_then(|main| main.call(args, Some(kwargs)))
        .map_err(|err| driver_error(py, err))
}

pub(super) fn driver_error(py: Python<'_>, err: PyErr) -> Error {
    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        return Error::Interrupted;
    }
    let value = err.value(py);
    // A ReportError is the user's to fix (a folder that is not a results folder, no Chromium
    // for --pdf); anything else is a bug, with its traceback.
    let user_errors = [
        ("rustybt_api.report", "ReportError"),
        ("rustybt_api.results", "ResultsError"),
        ("rustybt_api.study", "StudyError"),
        ("rustybt_api.study.montecarlo", "MonteCarloError"),
    ];
    let is_user_error = user_errors.iter().any(|(module, name)| {
        py.import(*module)
            .and_then(|m| m.getattr(*name))
            .is_ok_and(|cls| value.is_instance(&cls).unwrap_or(false))
    });
    if is_user_error {
        let hint = crate::python::errors::hint_of(value);
        return Error::Usage {
            message: value.to_string(),
            hint,
        };
    }
    let traceback = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", (value,)))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| err.to_string());
    Error::Internal(format!("the report failed:\n{traceback}"))
}

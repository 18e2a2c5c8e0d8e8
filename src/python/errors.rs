//! Python exceptions raised by the engine, and Python errors turned into engine errors that
//! keep the traceback and point at the user's file and line.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyType};

use crate::error::{AlgorithmError, SourceLocation};
use crate::model::TimestampNs;

static ORDER_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UNKNOWN_SYMBOL_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ENGINE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INDICATOR_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The exception classes live in `rustybt_api.errors` so user code can import and catch them
/// with or without the host; the engine raises those same classes.
fn raise(py: Python<'_>, cell: &PyOnceLock<Py<PyType>>, name: &str, message: String) -> PyErr {
    match cell.import(py, "rustybt_api.errors", name) {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(import_error) => import_error,
    }
}

pub fn order_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &ORDER_ERROR, "OrderError", message.into())
}

pub fn unknown_symbol_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(
        py,
        &UNKNOWN_SYMBOL_ERROR,
        "UnknownSymbolError",
        message.into(),
    )
}

pub fn indicator_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &INDICATOR_ERROR, "IndicatorError", message.into())
}

pub fn engine_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &ENGINE_ERROR, "EngineError", message.into())
}

/// The `hint` attribute of a rustybt_api exception (`ParameterError`, `ReportError`, ...).
pub fn hint_of(value: &Bound<'_, PyAny>) -> Option<String> {
    value
        .getattr("hint")
        .ok()
        .and_then(|h| h.extract::<Option<String>>().ok())
        .flatten()
}

pub fn is_keyboard_interrupt(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
}

/// Converts a Python exception into an [`AlgorithmError`]: type, message, the full traceback
/// (chained causes included) and the innermost frame inside `user_root` as the location.
pub fn algorithm_error(
    py: Python<'_>,
    err: &PyErr,
    phase: &str,
    sim_time: Option<TimestampNs>,
    user_root: &Path,
) -> AlgorithmError {
    let value = err.value(py);
    let exception = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    let traceback = format_traceback(py, err).unwrap_or_else(|_| format!("{exception}: {message}"));
    let is_syntax_error = err.is_instance_of::<pyo3::exceptions::PySyntaxError>(py);
    let location = if is_syntax_error {
        syntax_error_location(value)
    } else {
        user_frame(py, err, user_root).ok().flatten()
    };
    let hint = hint_for(py, err, &exception, value);
    let message = if is_syntax_error {
        value
            .getattr("msg")
            .and_then(|m| m.extract::<String>())
            .unwrap_or(message)
    } else {
        message
    };
    AlgorithmError {
        phase: phase.to_string(),
        sim_time,
        exception,
        message,
        location,
        traceback,
        hint,
    }
}

fn format_traceback(py: Python<'_>, err: &PyErr) -> PyResult<String> {
    // Pass the traceback explicitly: on 3.11 a fetched exception's `__traceback__` may be unset.
    let lines = py.import("traceback")?.call_method1(
        "format_exception",
        (err.get_type(py), err.value(py), err.traceback(py)),
    )?;
    let lines = lines.cast::<PyList>()?;
    let mut text = String::new();
    for line in lines.iter() {
        text.push_str(&line.extract::<String>()?);
    }
    Ok(text)
}

fn syntax_error_location(
    value: &Bound<'_, pyo3::exceptions::PyBaseException>,
) -> Option<SourceLocation> {
    let file: String = value.getattr("filename").ok()?.extract().ok()?;
    let line: u32 = value.getattr("lineno").ok()?.extract().ok()?;
    let column: Option<u32> = value.getattr("offset").ok()?.extract().ok();
    Some(SourceLocation { file, line, column })
}

/// The innermost traceback frame in the user's folder, else the innermost frame.
fn user_frame(py: Python<'_>, err: &PyErr, user_root: &Path) -> PyResult<Option<SourceLocation>> {
    let Some(tb) = err.traceback(py) else {
        return Ok(None);
    };
    let frames = py.import("traceback")?.call_method1("extract_tb", (tb,))?;
    let root = user_root.to_string_lossy().to_string();
    let mut innermost = None;
    let mut innermost_user = None;
    for frame in frames.try_iter()? {
        let frame = frame?;
        let file: String = frame.getattr("filename")?.extract()?;
        let line: u32 = frame.getattr("lineno")?.extract().unwrap_or(0);
        let location = SourceLocation {
            file: file.clone(),
            line,
            column: None,
        };
        if file.starts_with(&root) {
            innermost_user = Some(location.clone());
        }
        innermost = Some(location);
    }
    Ok(innermost_user.or(innermost))
}

fn hint_for(
    py: Python<'_>,
    err: &PyErr,
    exception: &str,
    value: &Bound<'_, pyo3::exceptions::PyBaseException>,
) -> Option<String> {
    if err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
        let module: String = value.getattr("name").ok()?.extract().ok()?;
        let top = module.split('.').next().unwrap_or(&module).to_string();
        let package = match top.as_str() {
            "talib" => "TA-Lib",
            "sklearn" => "scikit-learn",
            "yaml" => "PyYAML",
            other => other,
        };
        return Some(format!(
            "the module `{module}` is not installed in the project virtualenv; install it with \
             `.venv/bin/pip install {package}`"
        ));
    }
    if exception == "UnknownSymbolError" {
        return Some("load the symbol with `--data FILE` (or a `symbol` column)".into());
    }
    None
}
